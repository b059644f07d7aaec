"""Helpers of the FSDP2 tests: run files, 2-process launches under torchrun, and tiny sharded trainers.

The runs read a small LeRobot dataset whose samples carry their own flow noise and time and have no padded
steps (``lerobot_seeded_flow``, tiny_training_policy.py): the model's losses are means over valid entries,
so equal randomness and equal counts per sample make 2 processes on halves of a batch equal 1 process on
all of it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from robot_dataset import write_robot_dataset
from safetensors.torch import load_file
from tiny_training_policy import TinyEpisodes, TinyPolicy

from f1.model import F1Policy
from f1.train import SeededBatchStream, Trainer, load_stage_config, read_metrics
from f1.train.distributed import DistributedConfig
from f1.train.sharded_checkpoint import SHARDED_DIR, load_sharded_weights

HERE = Path(__file__).resolve().parent
STEPS = 4
TRAIN = {
    "steps": STEPS,
    "batch_size": 8,  # global: 4 per process with 2 processes
    "log_interval": 1,
    "checkpoint_interval": 2,
    "schedule": {"warmup_steps": 1},
    "optimizer": {"lr": 1e-3},
    "precision": "fp32",
}
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}


def write_dataset(folder: Path) -> Path:
    """The runs' LeRobot dataset: 4 episodes of 14 frames (their windows without padding are kept)."""
    return write_robot_dataset(folder / "data", episodes=4, length=14)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_file(folder: Path, name: str, data: Path, distributed: dict, *, draws: int = 1, **extra) -> Path:
    model = {"factory": "f1_seeded_flow", "preset": "tiny", "overrides": {"action": {"noise_draws": draws}}}
    run = {
        "output_dir": str(folder / name),
        "model": model,
        "data": {"factory": "lerobot_seeded_flow", "root": str(data)},
        "train": {**TRAIN, **extra.pop("train", {})},
        "device": "cpu",
        "distributed": distributed,
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def launch(run_file: Path, stage: int | str, processes: int, *flags: str) -> None:
    command = [sys.executable, "-m", "f1.cli", "train", "--config", str(run_file), "--stage", str(stage)]
    if processes > 1:
        command[1:3] = [
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={processes}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            "-m",
            "f1.cli",
        ]
    done = subprocess.run(
        [*command, "--no-progress", *flags], env=ENV, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-4000:]


def weights(policy_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(policy_dir / "model.safetensors"))


def losses(run_dir: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k.startswith("loss")} for r in read_metrics(run_dir)]


def sharded_weights(checkpoint: Path, like: Path) -> dict[str, torch.Tensor]:
    """The model tensors of a sharded checkpoint, read whole in this process (no process group)."""
    policy = F1Policy.load(like)
    load_sharded_weights(checkpoint / SHARDED_DIR, policy.model)
    return {k: v.clone() for k, v in policy.model.state_dict().items()}


def sharded_trainer(tmp_path: Path, **distributed) -> Trainer:
    torch.manual_seed(0)
    stage = load_stage_config(3, {**TRAIN, "steps": 10})
    return Trainer(
        TinyPolicy(),
        [],
        stage,
        output_dir=tmp_path,
        progress=False,
        distributed=DistributedConfig(strategy="fsdp", **distributed),
    )


def one_step(trainer: Trainer) -> None:
    trainer.train_step(next(iter(SeededBatchStream(TinyEpisodes(size=16), 8, seed=0))))
