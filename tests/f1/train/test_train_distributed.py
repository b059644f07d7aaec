"""Data parallelism: 2 processes under torchrun (gloo, CPU) end equal to 1 process on the combined batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny_training_policy import TinyEpisodes, TinyPolicy

from f1.train import (
    RunConfig,
    SeededBatchStream,
    Trainer,
    load_stage_config,
    read_metrics,
    read_weights,
    run_training,
)
from f1.train.distributed import DistributedContext, current_context, wrap_for_data_parallel
from f1.train.rng import seed_everything

HERE = Path(__file__).resolve().parent
STEPS = 4
TRAIN = {
    "steps": STEPS,
    "batch_size": 8,  # global: 4 per process with 2 processes
    "log_interval": 1,
    "checkpoint_interval": 100,
    "schedule": {"warmup_steps": 1},
    "optimizer": {"lr": 1e-2},
    "precision": "fp32",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_file(tmp_path: Path, output_dir: Path, accumulation_steps: int = 1) -> Path:
    # Flow noise and time come with each sample, so both runs draw the same randomness per sample; with
    # noise from each process's own RNG, runs agree in distribution only.
    run = {
        "output_dir": str(output_dir),
        "model": {"factory": "tiny"},
        "data": {"factory": "tiny", "size": 32, "with_flow_noise": True},
        "train": {**TRAIN, "accumulation_steps": accumulation_steps},
        "device": "cpu",
    }
    path = tmp_path / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def test_one_process_does_not_wrap_the_model_whose_forward_is_the_training_pass(tiny_policy) -> None:
    assert wrap_for_data_parallel(tiny_policy, current_context()) is tiny_policy
    batch = next(iter(SeededBatchStream(TinyEpisodes(size=8), 4, seed=0)))
    torch.manual_seed(0)
    through_call = tiny_policy(batch, generation_scales=2)
    torch.manual_seed(0)
    direct = tiny_policy.forward(batch, generation_scales=2)
    assert through_call.keys() == direct.keys()
    assert all(torch.equal(through_call[k], direct[k]) for k in direct)


@pytest.mark.slow
def test_two_processes_under_torchrun_match_one_process_on_the_combined_batch(tmp_path: Path) -> None:
    # The 2-process run also accumulates over 2 micro-batches, so DDP's no_sync path is covered.
    two = tmp_path / "two"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "f1.cli",
        "train",
        "--config",
        str(_run_file(tmp_path, two, accumulation_steps=2)),  # 2 processes x 2 micro-batches of 2
        "--stage",
        "3",
        "--no-progress",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    one = tmp_path / "one"
    run_training(RunConfig.from_yaml(_run_file(tmp_path, one)), 3, progress=False)

    two_weights = read_weights(two / "checkpoints" / "step_00000004" / "model.safetensors")
    one_weights = read_weights(one / "checkpoints" / "step_00000004" / "model.safetensors")
    seed_everything(0)  # what run_training does before building the policy: its initial weights
    initial = TinyPolicy().state_dict()
    for name, value in one_weights.items():
        assert torch.allclose(two_weights[name], value, atol=1e-5, rtol=0), name
        assert torch.equal(value, initial[name]) == (name == "codebook.weight"), name  # all but it trained
    # Both runs logged the same per-step losses (averaged over the processes in the 2-process run).
    two_losses = [r["loss"] for r in read_metrics(two)]
    one_losses = [r["loss"] for r in read_metrics(one)]
    assert two_losses == pytest.approx(one_losses, abs=1e-5)


def test_a_global_batch_that_does_not_split_over_the_processes_is_refused(tiny_policy, tiny_dataset) -> None:
    stage = load_stage_config(3, {**TRAIN, "batch_size": 7})
    context = DistributedContext(rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"divisible by processes x accumulation_steps: 7 % \(2 x 1\) != 0"):
        Trainer(tiny_policy, [], stage, context=context, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["f1", "history_no_foresight"])
def test_two_processes_train_an_f1_policy_without_the_unused_parameter_search(
    tmp_path: Path, mode: str
) -> None:
    # DDP (find_unused_parameters false, the run's default) refuses a step in which a parameter got no
    # gradient: the keys/values-only last layers leave none without one
    from robot_dataset import write_robot_dataset

    run = {
        "output_dir": str(tmp_path / "out"),
        "model": {"preset": "tiny", "overrides": {"mode": mode}},
        "data": {"root": str(write_robot_dataset(tmp_path / "data"))},
        "train": {**TRAIN, "steps": 3},
        "device": "cpu",
        "threads": 1,
    }
    assert "find_unused_parameters" not in run
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    command += [
        f"--master_port={_free_port()}",
        "-m",
        "f1.cli",
        "train",
        "--config",
        str(path),
        "--stage",
        "3",
    ]
    done = subprocess.run([*command, "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["step"] for r in read_metrics(tmp_path / "out")] == [1, 2, 3]
