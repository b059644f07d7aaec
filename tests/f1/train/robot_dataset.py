"""A tiny LeRobot dataset of "your own robot" for the bring-your-own-robot tests (importable by name: the
f1.train tests' conftest and the CLI tests put this folder on sys.path).

Frames are 64x64 PNGs of a fixed two-tone table with one coloured square that moves (the foreground the
tokenizer stage weights); state has 4 named entries, actions 3, at 15 fps, robot_type "my arm".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from f1.data import LeRobotDatasetWriter, standard_features

STATE_DIM, ACTION_DIM, FPS, SIZE = 4, 3, 15, 64
STATE_NAMES = ["x", "y", "z", "gripper"]
TASK = "put the square in the corner"


def scene(length: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 64, 64, 3) uint8: a static background and a 12-pixel square moving across it."""
    frames = np.empty((length, SIZE, SIZE, 3), dtype=np.uint8)
    frames[:, :, : SIZE // 2] = (90, 110, 130)
    frames[:, :, SIZE // 2 :] = (150, 140, 120)
    start = rng.integers(4, 20, size=2)
    for t in range(length):
        y, x = start + 3 * t
        frames[t, y : y + 12, x : x + 12] = (230, 40, 40)
    return frames


def write_robot_dataset(root: Path, *, episodes: int = 2, length: int = 12, seed: int = 0) -> Path:
    """Write the dataset at ``root`` (v3.0, PNG frames); returns ``root``."""
    rng = np.random.default_rng(seed)
    features = standard_features({"front": (SIZE, SIZE)}, STATE_DIM, ACTION_DIM, image_storage="image")
    features["observation.state"]["names"] = STATE_NAMES
    with LeRobotDatasetWriter(root, fps=FPS, features=features, robot_type="my arm") as writer:
        for _ in range(episodes):
            writer.add_episode(
                {
                    "observation.images.front": scene(length, rng),
                    "observation.state": (rng.normal(size=(length, STATE_DIM)) * 3 + 1).astype(np.float32),
                    "action": rng.normal(size=(length, ACTION_DIM)).astype(np.float32),
                },
                task=TASK,
            )
    return root
