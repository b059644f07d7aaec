"""`f1 train`: a new user's path through --help, a run, an interruption, --resume and the usual mistakes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from f1.cli import build_parser, main
from f1.train import read_checkpoint, read_metrics

HERE = Path(__file__).resolve().parent
RUN = {
    "model": {"factory": "tiny"},
    "data": {"factory": "tiny", "size": 24},
    "train": {
        "steps": 4,
        "batch_size": 4,
        "log_interval": 1,
        "checkpoint_interval": 2,
        "schedule": {"warmup_steps": 1},
        "precision": "fp32",
    },
}


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**RUN, "output_dir": str(tmp_path / "out")}))
    return path


def test_help_lists_the_commands_and_explains_train(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for needle in ("--config", "--stage", "--resume", "output_dir:", "torchrun", "examples:"):
        assert needle in text


def test_every_command_registers_its_own_handler() -> None:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"demo", "train"} <= set(subparsers.choices)
    for name, parser in subparsers.choices.items():
        assert callable(parser.get_default("handler")), name


def test_print_config_shows_the_shipped_recipe_without_a_run_file(capsys) -> None:
    assert main(["train", "--stage", "1", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["loss_weights"] == {"generation": 1.0}


def test_train_stop_and_resume_from_the_command_line(run_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    start = ["train", "--config", str(run_file), "--stage", "3", "--no-progress"]
    assert main([*start, "--stop-at-step", "3"]) == 0
    assert read_checkpoint(out).step == 3
    # A second start without --resume must not overwrite the run.
    assert main(start) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main([*start, "--resume"]) == 0
    assert read_checkpoint(out).step == 4
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4]
    assert yaml.safe_load((out / "stage.yaml").read_text())["steps"] == 4
    assert yaml.safe_load((out / "run.yaml").read_text())["data"]["size"] == 24
    assert read_checkpoint(out).metadata["run"]["model"] == RUN["model"]


def test_set_changes_one_value_and_typos_get_a_suggestion(run_file: Path, capsys) -> None:
    argv = ["train", "--config", str(run_file), "--stage", "3", "--print-config"]
    assert main([*argv, "--set", "train.optimizer.lr=1e-4"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["stage"]["optimizer"]["lr"] == 1e-4
    assert main([*argv, "--set", "train.optimizer.learning_rat=1e-4"]) == 2
    assert "stage config.optimizer: unknown keys ['learning_rat']" in capsys.readouterr().err
    assert main([*argv, "--set", "outptu_dir=x"]) == 2
    assert "did you mean 'output_dir'" in capsys.readouterr().err
    assert main([*argv, "--set", "train.steps"]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", "missing.yaml", "--stage", "3"], "run config file not found: missing.yaml"),
        (["--stage", "3"], "--config RUN.yaml is required"),
        (["--config", "{run}", "--stage", "7"], "or a stage YAML file, received 7"),
        (["--config", "{run}", "--stage", "nope.yaml"], "stage config file not found: nope.yaml"),
        (
            ["--config", "{run}", "--stage", "3", "--set", "model.factory=no_such_module:build"],
            "model.factory: 'no_such_module:build' is an import path",
        ),
        (
            ["--config", "{run}", "--stage", "3", "--set", "data.factory=nothing"],
            "data.factory: unknown factory 'nothing'",
        ),
        (
            ["--config", "{run}", "--stage", "3", "--set", "init_from=nowhere"],
            "init_from: path not found: nowhere",
        ),
    ],
)
def test_bad_paths_and_configs_exit_2_with_a_message(run_file: Path, capsys, argv: list, message: str):
    argv = [a.replace("{run}", str(run_file)) for a in argv]
    assert main(["train", *argv, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_init_from_starts_a_stage_from_the_previous_stage_weights(run_file: Path, tmp_path: Path) -> None:
    first = ["train", "--config", str(run_file), "--stage", "1", "--no-progress"]
    assert main([*first, "--set", "train.steps=2"]) == 0
    stage1 = read_checkpoint(tmp_path / "out")
    second = ["train", "--config", str(run_file), "--stage", "3", "--no-progress", "--set", "train.steps=1"]
    extra = ["--set", f"init_from={tmp_path / 'out'}", "--set", f"output_dir={tmp_path / 'out3'}"]
    assert main([*second, *extra, "--stop-at-step", "0"]) == 0  # zero steps: the weights as loaded
    stage3 = read_checkpoint(tmp_path / "out3")
    for name, value in stage1.weights.items():
        assert (stage3.weights[name] == value).all(), name


@pytest.mark.slow
def test_sigterm_stops_after_the_current_step_with_a_checkpoint_to_resume_from(tmp_path: Path) -> None:
    out = tmp_path / "out"
    endless = {**RUN["train"], "steps": 100_000, "checkpoint_interval": 10_000}
    run = {**RUN, "output_dir": str(out), "train": endless}
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(run))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "f1.cli", "train", "--config", str(run_file), "--stage", "3"]
    argv.append("--no-progress")
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(read_metrics(out)) < 3:
            assert child.poll() is None, child.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "training never got going"
            time.sleep(0.1)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr
    stopped_at = read_metrics(out)[-1]["step"]
    assert read_checkpoint(out).step == stopped_at  # the last step is logged and checkpointed
    resume = ["train", "--config", str(run_file), "--stage", "3", "--resume", "--no-progress"]
    assert main([*resume, "--stop-at-step", str(stopped_at + 1)]) == 0
    assert read_checkpoint(out).step == stopped_at + 1


def test_resume_from_a_corrupt_checkpoint_names_the_file_and_exits_2(run_file: Path, tmp_path: Path, capsys):
    start = ["train", "--config", str(run_file), "--stage", "3", "--no-progress"]
    assert main([*start, "--stop-at-step", "2"]) == 0
    weights = tmp_path / "out" / "checkpoints" / "step_00000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main([*start, "--resume"]) == 2
    assert f"{weights} is corrupt" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_stopped_and_resumed_in_new_processes_repeats_the_straight_run_bitwise(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}

    def f1_train(output_dir: str, *extra: str) -> None:
        run = {**RUN, "output_dir": str(tmp_path / output_dir), "threads": 1}
        run_file = tmp_path / f"{output_dir}.yaml"
        run_file.write_text(yaml.safe_dump(run))
        argv = [sys.executable, "-m", "f1.cli", "train", "--config", str(run_file), "--stage", "3", *extra]
        done = subprocess.run([*argv, "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    f1_train("straight")
    f1_train("resumed", "--stop-at-step", "1")  # the tiny policy draws flow noise from the global RNG
    f1_train("resumed", "--resume")
    straight_losses = [r["loss"] for r in read_metrics(tmp_path / "straight")]
    assert [r["loss"] for r in read_metrics(tmp_path / "resumed")] == straight_losses  # bitwise
    straight, resumed = read_checkpoint(tmp_path / "straight"), read_checkpoint(tmp_path / "resumed")
    for name, value in straight.weights.items():
        assert (resumed.weights[name] == value).all(), name


@pytest.mark.parametrize("resume", [False, True])
def test_metrics_of_a_run_without_a_checkpoint_are_never_replaced(
    run_file: Path, tmp_path: Path, capsys, resume: bool
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    before = sorted(p.name for p in out.iterdir())
    argv = ["train", "--config", str(run_file), "--stage", "3", *(["--resume"] if resume else [])]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "holds metrics.jsonl of an earlier run but no checkpoint" in error
    assert error.count("\n") == 1
    assert (out / "metrics.jsonl").read_text() == '{"step": 1, "loss": 0.5}\n'
    assert sorted(p.name for p in out.iterdir()) == before


def test_resume_with_another_model_or_data_config_is_refused_naming_every_difference(
    run_file: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    start = ["train", "--config", str(run_file), "--stage", "3", "--no-progress"]
    assert main([*start, "--stop-at-step", "2"]) == 0
    run_yaml = (out / "run.yaml").read_text()
    changed = [*start, "--resume", "--set", "model.hidden=8", "--set", "data.size=30"]
    assert main(changed) == 2
    error = capsys.readouterr().err
    assert "was written by a run with another configuration" in error
    assert "data.size: checkpoint 24, now 30" in error
    assert "model.hidden: checkpoint None, now 8" in error
    assert (out / "run.yaml").read_text() == run_yaml  # nothing rewritten
    assert read_checkpoint(out).step == 2
    # what may change on resume (threads, workers) does not block it
    assert main([*start, "--resume", "--set", "threads=1"]) == 0
    assert read_checkpoint(out).step == 4
