"""Shared fixtures of the f1.serve tests: one tiny policy, a server around it on 127.0.0.1, and requests.

Requests are built as the in-process policy takes them (torch, CHW) and converted to what a robot client
sends (numpy, uint8 HWC), so that a reply can be checked against the in-process answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from f1.model import F1Policy, preset
from f1.serve import PolicyServer

MAX_MESSAGE_BYTES = 2**20


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny tensors on a shared 2-core machine: one thread avoids oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_policy() -> F1Policy:
    """A tiny random policy of mode ``f1`` (64 px camera ``front``, state 8, action 7, chunk 8, 4 steps)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return F1Policy(preset("tiny")).eval()


@pytest.fixture(scope="module")
def server(tiny_policy: F1Policy) -> Iterator[PolicyServer]:
    """The tiny policy served on a free port of 127.0.0.1 (stopped at the end of the module)."""
    with PolicyServer(tiny_policy, port=0, max_message_bytes=MAX_MESSAGE_BYTES) as running:
        yield running


def make_observation(seed: int, batch: int | None = None, *, history: bool = True) -> dict[str, Any]:
    """An in-process observation (torch, uint8 CHW frames) for the tiny preset; unbatched when ``batch``
    is None."""
    g = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    observation: dict[str, Any] = {
        "observation.images.front": torch.randint(0, 256, (*lead, 3, 64, 64), generator=g, dtype=torch.uint8),
        "observation.state": torch.randn(*lead, 8, generator=g),
        "task": "put the red cube in the bowl",
    }
    if history:
        observation["history"] = torch.randint(0, 256, (*lead, 2, 3, 64, 64), generator=g, dtype=torch.uint8)
    return observation


def to_request(observation: dict[str, Any], **control: Any) -> dict[str, Any]:
    """What a robot client sends for ``observation``: numpy arrays, frames uint8 HWC, plus ``control``."""
    request: dict[str, Any] = {}
    for key, value in observation.items():
        if isinstance(value, torch.Tensor) and value.dtype == torch.uint8:
            request[key] = np.ascontiguousarray(value.movedim(-3, -1).numpy())
        elif isinstance(value, torch.Tensor):
            request[key] = value.numpy()
        else:
            request[key] = value
    return request | control


@pytest.fixture
def observation_factory() -> Callable[..., dict[str, Any]]:
    return make_observation


@pytest.fixture
def request_factory() -> Callable[..., dict[str, Any]]:
    """``request_factory(data_seed, batch=None, history=True, **control)``: the client request of
    ``make_observation(data_seed, ...)`` with control keys (``mode``, ``seed``, ``reset``) added."""

    def build(
        data_seed: int, /, batch: int | None = None, *, history: bool = True, **control: Any
    ) -> dict[str, Any]:
        return to_request(make_observation(data_seed, batch, history=history), **control)

    return build


@pytest.fixture
def as_request() -> Callable[..., dict[str, Any]]:
    """``as_request(observation, **control)``: the client request of an in-process observation."""
    return to_request
