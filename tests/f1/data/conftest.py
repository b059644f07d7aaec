"""Tiny LeRobot datasets for the f1.data tests (a few episodes of a few 32x32 frames).

Tests run with --import-mode=importlib, so helpers reach them as fixtures; the test modules repeat the
few constants below (32x32 RGB, state 4, action 3, cameras "front" and "wrist").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from f1.data import LeRobotDatasetWriter, standard_features

STATE_DIM = 4
ACTION_DIM = 3
SIZE = 32
FRONT = "observation.images.front"
WRIST = "observation.images.wrist"


def smooth_frames(rng: np.random.Generator, length: int, size: int = SIZE) -> np.ndarray:
    """(T, size, size, 3) uint8 frames that H.264 keeps close: gradients whose colour changes per frame."""
    ramp = np.linspace(0.0, 1.0, size)
    base = rng.uniform(60, 180, size=(length, 1, 1, 3))
    rows = rng.uniform(-50, 50, size=(length, 1, 1, 3)) * ramp[None, :, None, None]
    cols = rng.uniform(-50, 50, size=(length, 1, 1, 3)) * ramp[None, None, :, None]
    frames = base + rows + cols
    return np.clip(frames, 0, 255).astype(np.uint8)


def make_episode(
    rng: np.random.Generator, length: int, cameras: tuple[str, ...] = (FRONT,)
) -> dict[str, Any]:
    """One episode in the writer's input format."""
    episode: dict[str, Any] = {cam: smooth_frames(rng, length) for cam in cameras}
    episode["observation.state"] = rng.normal(size=(length, STATE_DIM)).astype(np.float32)
    episode["action"] = rng.normal(size=(length, ACTION_DIM)).astype(np.float32)
    return episode


DatasetFactory = Callable[..., tuple[Path, list[dict[str, Any]], list[str]]]


@pytest.fixture
def episode_maker() -> Callable[..., dict[str, Any]]:
    """``make_episode(rng, length, cameras=(FRONT,))``: one episode in the writer's input format."""
    return make_episode


@pytest.fixture
def write_dataset(tmp_path: Path) -> DatasetFactory:
    """Writes a v3.0 dataset; returns (root, episodes written, their tasks)."""
    counter = iter(range(1000))

    def factory(
        lengths: tuple[int, ...] = (5, 7, 6),
        storage: dict[str, str] | None = None,
        seed: int = 0,
        robot_type: str | None = "sim_arm",
        **writer_kwargs: Any,
    ) -> tuple[Path, list[dict[str, Any]], list[str]]:
        storage = storage or {"front": "video"}
        rng = np.random.default_rng(seed)
        features = standard_features({cam: (SIZE, SIZE) for cam in storage}, STATE_DIM, ACTION_DIM)
        for cam, kind in storage.items():
            features[f"observation.images.{cam}"]["dtype"] = kind
        cameras = tuple(f"observation.images.{cam}" for cam in storage)
        root = tmp_path / f"ds{next(counter)}"
        episodes = [make_episode(rng, n, cameras) for n in lengths]
        tasks = [f"task {i % 2}" for i in range(len(lengths))]
        with LeRobotDatasetWriter(
            root, fps=10, features=features, robot_type=robot_type, **writer_kwargs
        ) as w:
            for episode, task in zip(episodes, tasks):
                w.add_episode(episode, task)
        return root, episodes, tasks

    return factory
