"""Weighted mixtures: sampling frequencies follow the weights, items carry their embodiment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from f1.data import DatasetMixture, LeRobotDataset, WindowConfig, WindowedDataset


class _Numbers(torch.utils.data.Dataset):
    def __init__(self, n: int, tag: str, embodiment: str | None = None) -> None:
        self.n, self.tag = n, tag
        if embodiment is not None:
            self.embodiment = embodiment

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"tag": self.tag, "i": i}


def test_sampling_follows_weights_not_sizes() -> None:
    mixture = DatasetMixture([(_Numbers(10, "a", "franka"), 3.0), (_Numbers(1000, "b", "aloha"), 1.0)])
    assert len(mixture) == 1010
    draws = list(mixture.sampler(num_samples=20_000, seed=0))
    members = np.array([mixture.locate(i)[0] for i in draws])
    share_a = (members == 0).mean()
    assert abs(share_a - 0.75) < 0.015  # 4 standard deviations at n = 20000
    local_b = [mixture.locate(i)[1] for i, m in zip(draws, members) if m == 1]
    assert min(local_b) < 50
    assert max(local_b) > 950


def test_items_are_tagged_with_embodiment() -> None:
    mixture = DatasetMixture(
        [(_Numbers(2, "a"), 1.0), (_Numbers(3, "b"), 1.0)], embodiments=["franka", "widowx"]
    )
    assert mixture[1] == {"tag": "a", "i": 1, "embodiment": "franka", "dataset_index": 0}
    assert mixture[4] == {"tag": "b", "i": 2, "embodiment": "widowx", "dataset_index": 1}
    with pytest.raises(IndexError):
        mixture[5]


def test_sampler_is_deterministic_and_shards_by_rank() -> None:
    mixture = DatasetMixture([(_Numbers(50, "a", "x"), 1.0), (_Numbers(70, "b", "y"), 2.0)])
    sampler = mixture.sampler(num_samples=40, seed=7)
    first = list(sampler)
    assert first == list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    ranks = [list(mixture.sampler(num_samples=20, seed=7, rank=r, world_size=2)) for r in range(2)]
    merged = [ranks[i % 2][i // 2] for i in range(40)]
    assert merged == first  # the ranks split one global draw
    assert len(ranks[0]) == 20


def test_bad_members_are_named() -> None:
    with pytest.raises(ValueError, match="members: expected at least one"):
        DatasetMixture([])
    with pytest.raises(ValueError, match=r"members\[1\]: expected a positive finite weight"):
        DatasetMixture([(_Numbers(1, "a", "x"), 1.0), (_Numbers(1, "b", "y"), 0.0)])
    with pytest.raises(ValueError, match=r"no embodiment name for members\[0\]"):
        DatasetMixture([(_Numbers(1, "a"), 1.0)])
    with pytest.raises(ValueError, match="embodiments: expected 1 names"):
        DatasetMixture([(_Numbers(1, "a"), 1.0)], embodiments=["x", "y"])
    mixture = DatasetMixture([(_Numbers(1, "a", "x"), 1.0)])
    with pytest.raises(ValueError, match="rank/world_size"):
        mixture.sampler(num_samples=4, rank=2, world_size=2)


def test_mixture_of_lerobot_windows_with_different_action_spaces(write_dataset) -> None:
    root_a, _, _ = write_dataset(lengths=(4,), robot_type="franka")
    root_b, _, _ = write_dataset(lengths=(5,), robot_type="aloha")
    config = WindowConfig((-1, 0), future_offset=1, action_horizon=2)
    mixture = DatasetMixture(
        [
            (WindowedDataset(LeRobotDataset(root_a), config), 1.0),
            (WindowedDataset(LeRobotDataset(root_b), config), 1.0),
        ]
    )
    assert mixture.embodiments == ["franka", "aloha"]
    loader = torch.utils.data.DataLoader(
        mixture, batch_size=3, sampler=mixture.sampler(num_samples=6, seed=1)
    )
    seen = set()
    for batch in loader:
        seen.update(batch["embodiment"])
        assert batch["history"].shape[1:] == (2, 3, 32, 32)
    assert seen == {"franka", "aloha"}
