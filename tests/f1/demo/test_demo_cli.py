"""`f1 demo --quick` end to end (slow), and `f1 eval` from the command line."""

from __future__ import annotations

import json
import time

import pytest

from f1.cli import main
from f1.demo import DEMO_BUDGETS, task_record
from f1.eval import read_report

POLICIES = {"f1", "no_gen", "history_no_foresight", "expert", "random"}
CELLS = {(e, v) for e in ("gripper", "arm") for v in ("static", "dynamic")}


@pytest.mark.slow
def test_quick_demo_writes_the_report_contract_and_its_files(tmp_path, capsys):
    out = tmp_path / "demo"
    started = time.perf_counter()
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    elapsed = time.perf_counter() - started
    assert elapsed < 120, f"f1 demo --quick took {elapsed:.0f}s, more than the 2 minutes it may take"
    report = read_report(out / "report.json")  # validates the contract
    assert report["quick"] is True
    assert report["pretrained"] is None  # --quick runs from scratch unless given checkpoints
    assert 0 < report["wall_time_s"] <= elapsed
    cells = report["cells"]
    assert {(c["policy"], c["embodiment"], c["variant"]) for c in cells} == {
        (p, e, v) for p in POLICIES for e, v in CELLS
    }
    for cell in cells:
        assert cell["episodes"] >= 1
        assert cell["ci95"][0] <= cell["success_rate"] <= cell["ci95"][1]
    expert = [c for c in cells if c["policy"] == "expert"]
    assert all(c["success_rate"] == 1.0 for c in expert)
    references = {(c["policy"], c["embodiment"], c["variant"]) for c in report["references"]}
    for clone in ("state_clone_no_velocity", "state_clone_velocity"):  # reference rows on every cell
        assert {(clone, e, v) for e, v in CELLS} <= references
    assert len(report["state_clones"]["clones"]) == 2 * len(CELLS)
    assert 0 <= report["foresight"]["token_accuracy_imagined_finest"] <= 1
    counterfactual = report["counterfactual"]
    assert (counterfactual["embodiment"], counterfactual["variant"]) == ("gripper", "dynamic")
    assert counterfactual["own_matches_success_table"] is True
    assert {"drop_copy", "drop_other_episode"} <= set(counterfactual["success"])
    assert {"state_clones", "counterfactual"} <= set(report["phases_s"])
    for name in ("report.md", "success.png", "training_curves.png", "foresight.png"):
        assert (out / name).stat().st_size > 0, name
    markdown = (out / "report.md").read_text()
    assert "| F1 |" in markdown
    assert "foresight.png" in markdown
    assert "## Does the foresight carry the future?" in markdown
    assert "## Is the foresight used?" in markdown
    assert "| F1 |" in capsys.readouterr().out


def test_eval_command_prints_one_json_line(tmp_path, capsys):
    out = tmp_path / "cell.json"
    code = main(
        [
            "eval", "--policy", "expert", "--embodiment", "gripper", "--variant", "dynamic",
            "--episodes", "5", "--resolution", "32", "--out", str(out), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip())
    assert printed["policy"] == "expert"
    assert printed["episodes"] == 5
    assert printed["success_rate"] == 1.0
    assert printed["task"] == task_record(DEMO_BUDGETS["full"].task) | {"resolution": 32}
    assert json.loads(out.read_text()) == printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--policy", "/no/such/policy"], "does not exist"),
        (["--policy", "expert", "--episodes", "0"], "--episodes"),
        (["--policy", "expert", "--objects", "9"], "num_objects"),
        (["--policy", "expert", "--grasp-radius", "0.5"], "grasp_radius"),
        (["--policy", "expert", "--belt-speed", "0.1", "0.05"], "conveyor_speed_range"),
    ],
)
def test_eval_command_bad_arguments_exit_2_with_a_message(arguments, message, capsys):
    code = main(["eval", "--embodiment", "arm", "--variant", "static", "--no-progress", *arguments])
    assert code == 2
    assert message in capsys.readouterr().err


def test_demo_command_rejects_a_file_as_out(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["demo", "--quick", "--out", str(target)]) == 2
    assert "--out" in capsys.readouterr().err


def test_demo_command_rejects_a_non_positive_training_budget(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--train-minutes", "0"]) == 2
    assert "--train-minutes" in capsys.readouterr().err


def test_demo_command_rejects_no_workers(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
