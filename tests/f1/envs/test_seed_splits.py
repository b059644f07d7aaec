"""Seed splits: training and evaluation seeds never overlap."""

import itertools

import pytest

from f1.envs.seed_splits import SEED_SPLITS, seed_range, split_of_seed


def test_splits_are_pairwise_disjoint():
    for (_, a), (_, b) in itertools.combinations(SEED_SPLITS.items(), 2):
        assert a.stop <= b.start or b.stop <= a.start


def test_every_seed_maps_back_to_its_split():
    for split in SEED_SPLITS:
        seeds = seed_range(split)
        assert split_of_seed(seeds[0]) == split
        assert split_of_seed(seeds[-1]) == split


def test_unknown_split_and_foreign_seed_are_rejected():
    with pytest.raises(
        ValueError, match=r"split: expected one of \['train', 'val', 'test'\], received 'eval'"
    ):
        seed_range("eval")
    with pytest.raises(ValueError, match="seed: expected"):
        split_of_seed(-1)
