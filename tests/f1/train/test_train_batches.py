"""Batch order: seeded per epoch, split across processes exactly, resumable from a count of batches."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_training_policy import TinyEpisodes

from f1.train.batches import ReplayedBatches, SeededBatchStream, as_resumable


class Indices(torch.utils.data.Dataset):
    """Sample i is the tensor i: batches show exactly which samples they hold."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(index)


def _take(stream, n: int) -> list[list[int]]:
    return [b.tolist() for b in itertools.islice(iter(stream), n)]


def test_each_epoch_is_a_fresh_permutation_without_repeats() -> None:
    stream = SeededBatchStream(Indices(12), 4, seed=3)
    first, second = _take(stream, 3), _take(stream, 3)
    assert sorted(itertools.chain.from_iterable(first)) == list(range(12))
    assert sorted(itertools.chain.from_iterable(second)) == list(range(12))
    assert first != second
    assert stream.state_dict() == {"epoch": 1, "batch_in_epoch": 3}  # 3 of the 3 batches of epoch 1 consumed


def test_the_last_incomplete_batch_is_dropped() -> None:
    stream = SeededBatchStream(Indices(10), 4, seed=0, shuffle=False)
    assert _take(stream, 3) == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]


@settings(max_examples=25, deadline=None)
@given(
    world_size=st.integers(1, 4),
    batch_size=st.integers(1, 3),
    size=st.integers(12, 30),
    seed=st.integers(0, 100),
    steps=st.integers(1, 8),
)
def test_processes_together_see_exactly_the_combined_batches(world_size, batch_size, size, seed, steps):
    combined = _take(SeededBatchStream(Indices(size), batch_size * world_size, seed=seed), steps)
    shards = [
        _take(SeededBatchStream(Indices(size), batch_size, seed=seed, rank=r, world_size=world_size), steps)
        for r in range(world_size)
    ]
    for step in range(steps):
        assert list(itertools.chain.from_iterable(shard[step] for shard in shards)) == combined[step]


@settings(max_examples=25, deadline=None)
@given(split=st.integers(0, 11), seed=st.integers(0, 100))
def test_a_resumed_stream_continues_with_the_same_batches(split: int, seed: int) -> None:
    straight = _take(SeededBatchStream(Indices(10), 3, seed=seed), 11)
    first = SeededBatchStream(Indices(10), 3, seed=seed)
    head = _take(first, split)
    second = SeededBatchStream(Indices(10), 3, seed=seed)
    second.load_state_dict(first.state_dict())
    assert head + _take(second, 11 - split) == straight


def test_the_state_counts_consumed_batches_not_prefetched_ones() -> None:
    stream = SeededBatchStream(TinyEpisodes(size=16), 2, seed=0, num_workers=2)
    iterator = iter(stream)
    next(iterator)
    next(iterator)
    assert stream.state_dict() == {"epoch": 0, "batch_in_epoch": 2}


def test_the_stream_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _take(SeededBatchStream(Indices(12), 4, seed=1), 5)
    assert torch.equal(torch.rand(3), expected)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"fewer than one global batch \(batch_size 4 x world_size 2 = 8\)"):
        SeededBatchStream(Indices(7), 4, seed=0, world_size=2)
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        SeededBatchStream(Indices(8), 2, seed=0, rank=2, world_size=2)
    stream = SeededBatchStream(Indices(8), 2, seed=0)
    with pytest.raises(ValueError, match="0 <= batch_in_epoch <= 4"):
        stream.load_state_dict({"epoch": 0, "batch_in_epoch": 9})


def test_replayed_batches_resume_by_skipping_within_the_pass() -> None:
    data = [torch.tensor([i]) for i in range(5)]
    first = ReplayedBatches(data)
    head = _take(first, 7)  # one pass and two batches
    second = as_resumable(data)
    second.load_state_dict(first.state_dict())
    assert head + _take(second, 3) == [[i % 5] for i in range(10)]


def test_a_one_shot_iterator_that_runs_out_is_a_clear_error() -> None:
    stream = ReplayedBatches(iter([torch.tensor([0])]))
    with pytest.raises(RuntimeError, match="batches ran out after epoch 1"):
        _take(stream, 3)
