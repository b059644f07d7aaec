"""Shared fixtures of the f1.train tests: a tiny policy, its data and a fast stage config."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from f1.train import StageConfig, load_stage_config

# The tests run with --import-mode=importlib, which puts no test folder on sys.path; the helper module is also
# imported by the run-file factories and by worker subprocesses, so it must be importable by its own name.
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from tiny_training_policy import TinyEpisodes, TinyPolicy  # noqa: E402


@pytest.fixture
def tiny_stage() -> StageConfig:
    """Stage III with a few steps of a small batch, fp32, no progress noise."""
    return load_stage_config(
        3,
        {
            "steps": 6,
            "batch_size": 8,
            "log_interval": 1,
            "checkpoint_interval": 3,
            "schedule": {"warmup_steps": 2},
            "optimizer": {"lr": 1e-2, "group_lr": {"vision": 5e-3}},
            "precision": "fp32",
        },
    )


@pytest.fixture
def tiny_policy() -> TinyPolicy:
    torch.manual_seed(0)
    return TinyPolicy()


@pytest.fixture
def tiny_dataset() -> TinyEpisodes:
    return TinyEpisodes(size=40)
