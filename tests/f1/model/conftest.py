"""Shared fixtures of the f1.model tests: tiny policies of each mode and batches that fit them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from f1.model import F1Model, F1Policy, preset


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny tensors on a shared 2-core machine: one thread avoids oversubscription (10x faster here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_MODELS: dict[str, F1Model] = {}


def _tiny_model(mode: str = "f1", fresh: bool = False, **overrides: Any) -> F1Model:
    if fresh or overrides or mode not in _MODELS:
        torch.manual_seed(0)
        model = F1Model(preset("tiny", mode=mode, **overrides)).eval()
        if fresh or overrides:
            return model
        _MODELS[mode] = model
    return _MODELS[mode]


@pytest.fixture
def tiny_model() -> Callable[..., F1Model]:
    """``tiny_model(mode="f1", fresh=False)``: a tiny model in eval mode (cached unless ``fresh``)."""
    return _tiny_model


@pytest.fixture
def tiny_policy() -> Callable[..., F1Policy]:
    """``tiny_policy(mode="f1", fresh=False)``: a policy (its own queue and history) around a tiny model
    (the model cached unless ``fresh``)."""

    def build(mode: str = "f1", fresh: bool = False, **overrides: Any) -> F1Policy:
        return F1Policy(_tiny_model(mode, fresh, **overrides))

    return build


def make_batch(batch_size: int = 4, seed: int = 0, *, history_frames: int = 2) -> dict[str, Any]:
    """A training batch for the tiny preset (64 px, state 8, action 7, chunk 8)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "observation.images.front": torch.rand(batch_size, 3, 64, 64, generator=g),
        "observation.state": torch.randn(batch_size, 8, generator=g),
        "action": torch.randn(batch_size, 8, 7, generator=g),
        "action_is_pad": torch.zeros(batch_size, 8, dtype=torch.bool),
        "task": ["put the red cube in the bowl"] * batch_size,
        "embodiment": ["sim_arm"] * batch_size,
        "history": torch.rand(batch_size, history_frames, 3, 64, 64, generator=g),
        "future_image": torch.rand(batch_size, 3, 64, 64, generator=g),
    }


def make_observation(seed: int = 0) -> dict[str, Any]:
    """An inference observation (batch 1) with a history, for :meth:`F1Policy.plan`."""
    batch = make_batch(1, seed)
    return {k: v for k, v in batch.items() if k not in ("action", "action_is_pad", "future_image")}


@pytest.fixture
def batch_factory() -> Callable[..., dict[str, Any]]:
    return make_batch


@pytest.fixture
def observation_factory() -> Callable[..., dict[str, Any]]:
    return make_observation
