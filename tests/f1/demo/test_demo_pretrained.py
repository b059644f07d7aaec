"""The demo's shipped checkpoints: `f1 demo-pretrain` writes them, `f1 demo` starts stage III from them, and
a directory that does not fit the run is refused before anything is trained."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from f1.cli import main
from f1.demo import DEMO_BUDGETS, export_pretrained, load_pretrained, pretrain_demo
from f1.demo.pretrained import MANIFEST, PRETRAINED_FORMAT, pretraining_setup
from f1.errors import CheckpointError
from f1.eval import read_report
from f1.model import F1Policy
from f1.train import read_metrics

QUICK = DEMO_BUDGETS["quick"]
MODES = ("f1", "no_gen", "history_no_foresight")


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory) -> Path:
    """Quick-budget checkpoints, trained once for the module (one process, about 15 s)."""
    root = tmp_path_factory.mktemp("pretrained")
    pretrain_demo(root / "demo", "quick", work_dir=root / "work", progress=False, workers=1)
    return root / "demo"


@pytest.fixture
def copy(pretrained_dir, tmp_path) -> Path:
    """A copy of the checkpoints that a test may break."""
    target = tmp_path / "copy"
    shutil.copytree(pretrained_dir, target)
    return target


def test_pretraining_writes_the_stage_II_policies_their_curves_and_a_manifest(pretrained_dir):
    pretrained = load_pretrained(pretrained_dir, QUICK)
    manifest = json.loads((pretrained_dir / MANIFEST).read_text())
    assert manifest["format"] == PRETRAINED_FORMAT
    assert manifest["setup"] == json.loads(json.dumps(pretraining_setup(QUICK)))
    assert manifest["seed"] == 0
    assert manifest["data"]["gripper"]["episodes"] == 2 * QUICK.gripper_episodes
    assert manifest["wall_time_s"] > 0
    assert pretrained.stage_steps == QUICK.pretrain_steps
    for mode in MODES:
        policy = pretrained.load_policy(mode)
        assert policy.config.mode == mode
        assert [e.name for e in policy.config.embodiments] == ["gripper"]  # the arm comes in stage III
        runs = pretrained.stage_runs(mode)
        assert [r.stage for r in runs] == (["I", "II"] if mode == "f1" else ["II"])
        for run in runs:
            assert len(read_metrics(run.directory)) >= 1
    assert read_metrics(pretrained.tokenizer_metrics)
    # F1's curves continue where stage I stopped
    assert [r.first_step for r in pretrained.stage_runs("f1")] == [0, QUICK.pretrain_steps[0]]
    # only the policies and the metrics are shipped: no optimizer state, no data
    files = [p for p in pretrained_dir.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".json", ".jsonl", ".safetensors"}
    assert sum(p.stat().st_size for p in files) < 20 * 2**20


@pytest.mark.slow
def test_a_demo_run_from_the_checkpoints_trains_stage_III_only(pretrained_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--quick", "--pretrained", str(pretrained_dir), "--out", str(out), "--no-progress"])
    assert code == 0
    report = read_report(out / "report.json")
    assert report["pretrained"]["directory"] == str(pretrained_dir)
    assert report["pretrained"]["format"] == PRETRAINED_FORMAT
    training = report["training"]
    assert training["f1_stage_steps"] == {"I": 2, "II": 7, "III": QUICK.max_steps}
    assert training["control_stage_steps"] == {"II": 7, "III": QUICK.max_steps}
    assert set(training["final_losses"]["f1"]) == {"I", "II", "III"}
    assert set(training["final_losses"]["no_gen"]) == {"II", "III"}
    assert set(report["data"]) == {"arm"}  # the gripper's demonstrations are the checkpoints'
    assert "pretrained" in report["phases_s"]
    assert "tokenizer" not in report["phases_s"]
    assert "were not trained in this run" in (out / "report.md").read_text()
    # stage III started from the shipped policy: every tensor but the arm's new adapter is the shipped one
    shipped = F1Policy.load(pretrained_dir / "policies" / "f1").model.state_dict()
    start = F1Policy.load(out / "work" / "init" / "f1").model.state_dict()
    assert set(shipped) < set(start)
    assert all(torch.equal(shipped[k], start[k]) for k in shipped)
    assert "| F1 |" in capsys.readouterr().out


def test_checkpoints_for_another_budget_are_refused(pretrained_dir):
    with pytest.raises(ValueError, match=r"budget='quick'.*'full'"):
        load_pretrained(pretrained_dir, "full")
    with pytest.raises(ValueError, match=r"approach_margin=0.08.*approach_margin=0.1"):
        load_pretrained(pretrained_dir, replace(QUICK, approach_margin=0.1))
    with pytest.raises(ValueError, match="stage_steps"):
        load_pretrained(pretrained_dir, replace(QUICK, pretrain_steps=(2, 8)))


def test_a_missing_directory_or_manifest_is_refused_with_the_way_out(tmp_path, copy):
    with pytest.raises(ValueError, match=r"not a directory of demo checkpoints.*--from-scratch"):
        load_pretrained(tmp_path / "nothing", QUICK)
    (copy / MANIFEST).unlink()
    with pytest.raises(ValueError, match=r"holds no manifest.json.*f1 demo-pretrain"):
        load_pretrained(copy, QUICK)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format": "f1-demo', "not a JSON manifest"),
        ("\x00\xff", "not a JSON manifest"),
        ('{"format": "safetensors"}', "expected format"),
        ("[1, 2]", "expected format"),
        (json.dumps({"format": PRETRAINED_FORMAT, "setup": 3}), "'setup' mapping"),
    ],
)
def test_a_foreign_or_truncated_manifest_is_refused(copy, text, message):
    (copy / MANIFEST).write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=message):
        load_pretrained(copy, QUICK)


def test_missing_policies_or_metrics_are_refused(copy):
    shutil.rmtree(copy / "policies" / "history_no_foresight")
    with pytest.raises(ValueError, match="no policy of mode 'history_no_foresight'"):
        load_pretrained(copy, QUICK)


def test_missing_stage_metrics_are_refused(copy):
    (copy / "metrics" / "f1" / "stage_I" / "metrics.jsonl").unlink()
    with pytest.raises(ValueError, match=r"stage_I holds no metrics.jsonl"):
        load_pretrained(copy, QUICK)


def test_a_truncated_policy_file_fails_to_load_with_its_path(copy):
    weights = copy / "policies" / "no_gen" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    pretrained = load_pretrained(copy, QUICK)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        pretrained.load_policy("no_gen")


def _export_inputs(pretrained_dir: Path) -> dict:
    pretrained = load_pretrained(pretrained_dir, QUICK)
    return {
        "policies": {mode: pretrained.policy_dir(mode) for mode in MODES},
        "stage_dirs": {mode: {r.stage: r.directory for r in pretrained.stage_runs(mode)} for mode in MODES},
        "tokenizer_dir": pretrained.tokenizer_metrics,
        "details": {"seed": 0},
    }


def test_export_replaces_a_directory_in_one_step(pretrained_dir, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    exported = export_pretrained(target, QUICK, **_export_inputs(pretrained_dir))
    assert not (target / "stale.txt").exists()
    assert load_pretrained(target, QUICK).manifest == exported.manifest
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary or old directory left behind


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"policies": {"f1": Path("x")}}, "missing"),
        ({"stage_dirs": {"f1": {}, "no_gen": {}, "history_no_foresight": {}}}, r"stage_dirs\['f1'\]"),
        ({"tokenizer_dir": Path("/no/such/dir")}, "holds no metrics.jsonl"),
    ],
)
def test_export_refuses_incomplete_inputs_and_leaves_nothing(pretrained_dir, tmp_path, change, message):
    inputs = {**_export_inputs(pretrained_dir), **change}
    with pytest.raises(ValueError, match=message):
        export_pretrained(tmp_path / "out", QUICK, **inputs)
    assert os.listdir(tmp_path) == []


def test_export_refuses_a_file_as_its_directory(pretrained_dir, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        export_pretrained(target, QUICK, **_export_inputs(pretrained_dir))


def test_pretrain_refuses_bad_arguments_before_recording(tmp_path):
    with pytest.raises(ValueError, match="budget"):
        pretrain_demo(tmp_path / "p", "huge", work_dir=tmp_path / "w")
    with pytest.raises(ValueError, match="seed"):
        pretrain_demo(tmp_path / "p", "quick", work_dir=tmp_path / "w", seed=-1)
    with pytest.raises(ValueError, match="work_dir"):
        pretrain_demo(tmp_path / "p", "quick", work_dir=tmp_path / "p")
    assert os.listdir(tmp_path) == []


def test_demo_without_checkpoints_exits_2_naming_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no pretrained/demo here
    assert main(["demo", "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "pretrained/demo" in err
    assert "--from-scratch" in err
    assert not (tmp_path / "d").exists()


def test_demo_refuses_checkpoints_of_another_budget(pretrained_dir, tmp_path, capsys):
    assert main(["demo", "--pretrained", str(pretrained_dir), "--out", str(tmp_path / "d")]) == 2
    assert "budget='quick'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_demo_takes_checkpoints_or_from_scratch_not_both(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--pretrained", str(tmp_path), "--from-scratch"])
    assert exit_.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--workers", "0"], "--workers"),
        (["--threads", "0"], "--threads"),
        (["--seed", "-1"], "--seed"),
        (["--out", "{file}"], "--out"),
        (["--out", "{tmp}/p", "--work", "{tmp}/p"], "--work"),
    ],
)
def test_demo_pretrain_bad_arguments_exit_2_with_one_line(tmp_path, capsys, arguments, message):
    (tmp_path / "file").write_text("x")
    arguments = [a.format(file=tmp_path / "file", tmp=tmp_path) for a in arguments]
    assert main(["demo-pretrain", "--quick", *arguments]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert err.count("\n") == 0
    assert sorted(os.listdir(tmp_path)) == ["file"]
