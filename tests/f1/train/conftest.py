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

from tiny_training_policy import FAST, TinyEpisodes, TinyPolicy  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors on a busy shared CPU: one intra-op thread is many times faster than the default."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_stage() -> StageConfig:
    """Stage III, made fast."""
    return load_stage_config(3, FAST)


@pytest.fixture
def tiny_policy() -> TinyPolicy:
    torch.manual_seed(0)
    return TinyPolicy()


@pytest.fixture
def tiny_dataset() -> TinyEpisodes:
    return TinyEpisodes(size=40)
