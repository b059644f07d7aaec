"""build_training_dataset: the factory that `f1 train` run files name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from f1.data import (
    LeRobotDatasetWriter,
    WeightedMixtureView,
    WindowedDataset,
    build_training_dataset,
    standard_features,
)


def _write_narrow_robot(root: Path) -> None:
    """A second robot: state 2, action 5, one 32x32 camera named like the first robot's."""
    rng = np.random.default_rng(9)
    features = standard_features({"front": (32, 32)}, state_dim=2, action_dim=5)
    with LeRobotDatasetWriter(root, fps=10, features=features, robot_type="gripper") as writer:
        for length in (6, 5):
            writer.add_episode(
                {
                    "observation.images.front": rng.integers(0, 256, (length, 32, 32, 3), dtype=np.uint8),
                    "observation.state": rng.normal(size=(length, 2)).astype(np.float32),
                    "action": rng.normal(size=(length, 5)).astype(np.float32),
                },
                task="grip",
            )


def test_one_dataset(write_dataset) -> None:
    root, _, _ = write_dataset(lengths=(5, 6))
    config = {"root": str(root), "history_offsets": [-2, 0], "future_offset": 1, "action_horizon": 4}
    dataset = build_training_dataset(config)
    assert isinstance(dataset, WindowedDataset)
    assert len(dataset) == 11
    batch = torch.utils.data.default_collate([dataset[i] for i in range(3)])
    assert batch["history"].shape == (3, 2, 3, 32, 32)
    assert batch["action"].shape == (3, 4, 3)
    assert batch["embodiment"] == ["sim_arm"] * 3


def test_weighted_mixture_of_robots_with_different_widths(write_dataset, tmp_path: Path) -> None:
    root_a, _, _ = write_dataset(lengths=(5, 6))
    _write_narrow_robot(tmp_path / "narrow")
    config = {
        "datasets": [
            {"root": str(root_a), "weight": 1.0, "embodiment": "arm"},
            {"root": str(tmp_path / "narrow"), "weight": 3.0},
        ],
        "history_offsets": [-1, 0],
        "action_horizon": 3,
        "num_samples": 2000,
        "seed": 4,
    }
    view = build_training_dataset(config)
    assert isinstance(view, WeightedMixtureView)
    assert view.embodiments == ["arm", "gripper"]
    members = np.array([view.mixture.locate(int(i))[0] for i in view.indices])
    assert abs((members == 1).mean() - 0.75) < 0.04  # weights, not dataset sizes (11 frames each)
    batch = torch.utils.data.default_collate([view[i] for i in range(8)])  # widths padded to the widest
    assert batch["observation.state"].shape == (8, 4)
    assert batch["action"].shape == (8, 3, 5)
    for i, name in enumerate(batch["embodiment"]):
        if name == "arm":
            assert torch.all(batch["action"][i, :, 3:] == 0)
        else:
            assert torch.all(batch["observation.state"][i, 2:] == 0)


def test_config_errors_are_named(write_dataset) -> None:
    root, _, _ = write_dataset()
    with pytest.raises(ValueError, match=r"data config: unknown keys \['horizon'\] \(did you mean"):
        build_training_dataset({"root": str(root), "horizon": 3})
    with pytest.raises(ValueError, match="exactly one of 'root'"):
        build_training_dataset({"root": str(root), "datasets": [{"root": str(root)}]})
    with pytest.raises(ValueError, match=r"datasets\[0\]: unknown keys \['wieght'\] \(did you mean 'weight'"):
        build_training_dataset({"datasets": [{"root": str(root), "wieght": 2.0}]})
    with pytest.raises(ValueError, match=r"members\[0\]: expected a positive finite weight"):
        build_training_dataset({"datasets": [{"root": str(root), "weight": -1.0}]})
