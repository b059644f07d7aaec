"""`f1 eval --env module:factory`: a gymnasium environment, the policy and baselines in one report, the
commands of docs/evaluation.md, the help text, and one-line exit-2 errors for what does not fit."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

from f1.cli import build_parser, main

pytest.importorskip("gymnasium")
EVAL_TESTS = Path(__file__).parent / "eval"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"


@pytest.fixture(autouse=True)
def _reach_module_and_one_thread(monkeypatch):
    monkeypatch.syspath_prepend(str(EVAL_TESTS))  # `--env reach2d:make_reach_env`
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory with what the docs' commands name: runs/reach-policy, adapter.yaml, stats.json."""
    sys.path.insert(0, str(EVAL_TESTS))
    from reach2d import tiny_reach_policy

    root = tmp_path_factory.mktemp("byo")
    tiny_reach_policy().save(root / "runs" / "reach-policy")
    (root / "adapter.yaml").write_text(_docs_blocks("yaml")[0])
    (root / "stats.json").write_text(json.dumps({"action": {"mean": [0.1, 0.0], "std": [0.2, 0.2]}}))
    return root


def _docs_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.S)


def _docs_commands() -> list[str]:
    return [line for block in _docs_blocks("bash") for line in block.splitlines() if line.startswith("f1 ")]


def test_help_says_95_percent_once_not_doubled(capsys):
    for argv in (["--help"], ["eval", "--help"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        text = capsys.readouterr().out
        assert "95%" in text
        assert "%%" not in text


def test_docs_commands_run(workdir, monkeypatch, capsys):
    commands = _docs_commands()
    assert len(commands) == 3
    monkeypatch.chdir(workdir)
    for command in commands:
        argv = [*shlex.split(command)[1:], "--no-progress"]
        assert main(argv) == 0, command
        assert "| policy | episodes | success % [95% CI] |" in capsys.readouterr().out


def test_docs_python_example_runs(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    (block,) = _docs_blocks("python")
    namespace: dict = {}
    exec(compile(block, str(DOCS), "exec"), namespace)
    assert namespace["result"].episodes == namespace["floor"].episodes == 20


def test_policy_and_baselines_share_one_report(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    argv = [*shlex.split(_docs_commands()[0])[1:], "--no-progress", "--out", "report/eval.json"]
    assert main(argv) == 0
    report = json.loads((workdir / "report" / "eval.json").read_text())
    assert [r["policy"] for r in report["results"]] == ["no_gen", "random", "mean_action"]
    assert report["results"][0]["policy_path"] == "runs/reach-policy"
    assert report["seeds"] == {"count": 8, "first": 2_000_000, "last": 2_000_007}
    assert report["adapter"]["cameras"] == {"front": "pixels"}
    for row in report["results"]:
        assert row["episodes"] == 8
        assert 0 <= row["ci95"][0] <= row["success_rate"] <= row["ci95"][1] <= 1
    table = capsys.readouterr().out
    assert table.count("\n| ") == 3


CASES: list[tuple[list[str], str]] = [
    (["--env", "no_such_sim_xyz:make"], "env: no module named 'no_such_sim_xyz'"),
    (["--env", "reach2d:NOT_CALLABLE"], "is a int, expected a callable"),
    (["--env", "reach2d:missing"], "has no attribute 'missing'"),
    (["--env-arg", "report_success=false"], "info has no 'success'"),
    (["--camera", "front=rgb"], "observation key 'rgb' is missing"),
    (
        ["--env-arg", "size=16"],
        r"'pixels' \(camera 'front'\): expected \(32, 32, 3\) \(HWC\), received \(16, 16, 3\)",
    ),
    (
        ["--state-key", "pixels"],
        r"'pixels' \(state\): expected \(2,\) for embodiment 'reach2d', received \(3072,\)",
    ),
    (["--embodiment", "arm"], r"knows \['reach2d'\], received 'arm'"),
    (["--variant", "static"], "--variant describe the table tasks"),
    (["--baseline", "mean-action"], "give --dataset ROOT or --action-stats FILE"),
    (["--adapter", "{tmp}/missing.yaml"], "does not exist"),
    (["--seeds", "a:b"], "--seeds: expected N, A:B or a,b,c"),
    (["--seeds", "3", "--episodes", "3"], "give --seeds or --episodes, not both"),
    (["--max-steps", "0"], "--max-steps must be >= 1"),
    (["--policy", "expert"], "only for the table tasks"),
    (["--policy", "{tmp}/nowhere"], "does not exist"),
    (["--env-arg", "colour=red"], "unexpected keyword argument 'colour'"),
]


@pytest.mark.parametrize(("extra", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_what_does_not_fit_exits_2_with_one_line_and_writes_nothing(
    workdir, monkeypatch, capsys, extra, message
):
    monkeypatch.chdir(workdir)
    out = workdir / "bad.json"
    base = ["eval", "--env", "reach2d:make_reach_env", "--adapter", "adapter.yaml", "--no-progress"]
    base += ["--policy", "runs/reach-policy", "--seeds", "2", "--out", str(out)]
    extra = [e.replace("{tmp}", str(workdir)) for e in extra]
    for flag in ("--env", "--adapter", "--policy", "--seeds"):
        if flag in extra:
            i = base.index(flag)
            del base[i : i + 2]
    assert main(base + extra) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("f1 eval: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()


def test_env_flags_without_env_and_table_flags_missing_are_one_line_errors(capsys):
    assert (
        main(
            [
                "eval",
                "--policy",
                "random",
                "--embodiment",
                "gripper",
                "--variant",
                "static",
                "--baseline",
                "random",
            ]
        )
        == 2
    )
    assert "--baseline need --env" in capsys.readouterr().err
    assert main(["eval", "--policy", "random", "--embodiment", "gripper"]) == 2
    assert "--variant is required for a table task" in capsys.readouterr().err
    assert main(["eval", "--policy", "random", "--embodiment", "hand", "--variant", "static"]) == 2
    assert "--embodiment: expected one of ['gripper', 'arm'], received 'hand'" in capsys.readouterr().err
