"""Where batches come from, in an order that a checkpoint can restore exactly.

``SeededBatchStream`` is the one to use for training: an endless stream of batches from a map-style dataset,
reshuffled each epoch from ``(seed, epoch)``, split across data-parallel processes, and resumable from the
number of batches the trainer has consumed. ``ReplayedBatches`` adapts any re-iterable (a list, a
``DataLoader``) by replaying it; it resumes exactly only if each pass yields the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from .protocol import Batch


@runtime_checkable
class ResumableBatches(Protocol):
    """An endless iterable of batches whose position is a small dict of ints."""

    def __iter__(self) -> Iterator[Batch]: ...

    def state_dict(self) -> dict[str, int]: ...

    def load_state_dict(self, state: Mapping[str, int]) -> None: ...


class _ShardedBatchOrder(Sampler[list[int]]):
    """Index lists of one epoch for one process.

    Global batch ``b`` is ``perm[b*G:(b+1)*G]`` with ``G = B * W``; process ``r`` takes its ``r``-th slice of
    ``B`` indices. Batches before ``start_batch`` are skipped.
    """

    def __init__(
        self, order: torch.Tensor, batch_size: int, rank: int, world_size: int, start_batch: int
    ) -> None:
        self.order = order
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch
        self.batches_per_epoch = len(order) // (batch_size * world_size)

    def __iter__(self) -> Iterator[list[int]]:
        global_batch = self.batch_size * self.world_size
        for b in range(self.start_batch, self.batches_per_epoch):
            first = b * global_batch + self.rank * self.batch_size
            yield self.order[first : first + self.batch_size].tolist()

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch


class SeededBatchStream:
    """Endless batches of ``batch_size`` samples (per process) from ``dataset``, resumable.

    Every epoch visits a permutation of the dataset drawn from ``(seed, epoch)`` (the identity order when
    ``shuffle`` is False); the last incomplete global batch is dropped. With ``world_size`` processes,
    process ``rank`` gets its slice of each global batch, so ``W`` processes with ``batch_size`` see exactly
    the samples of one process with ``W * batch_size``, in the same order. Worker seeds derive from
    ``(seed, epoch, rank)`` and never touch the global torch RNG.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Batch] = default_collate,
        pin_memory: bool = False,
    ) -> None:
        if not isinstance(dataset, Sized):
            raise TypeError(f"dataset must be map-style (have __len__), received {type(dataset).__name__}")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need batch_size >= 1 and 0 <= rank < world_size, received batch_size={batch_size}, "
                f"rank={rank}, world_size={world_size}"
            )
        if len(dataset) < batch_size * world_size:
            raise ValueError(
                f"dataset has {len(dataset)} samples, fewer than one global batch "
                f"(batch_size {batch_size} x world_size {world_size} = {batch_size * world_size})"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.epoch = 0
        self.batch_in_epoch = 0

    @property
    def batches_per_epoch(self) -> int:
        """Number of (global) batches in one epoch."""
        return len(self.dataset) // (self.batch_size * self.world_size)  # type: ignore[arg-type]

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch``, shape ``(len(dataset),)``, identical on every process."""
        n = len(self.dataset)  # type: ignore[arg-type]
        if not self.shuffle:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(n, generator=generator)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            order = _ShardedBatchOrder(
                self.epoch_order(self.epoch), self.batch_size, self.rank, self.world_size, self.batch_in_epoch
            )
            worker_seed = (self.seed * 100_003 + self.epoch) * 1_009 + self.rank
            loader = DataLoader(
                self.dataset,
                batch_sampler=order,
                num_workers=self.num_workers,
                collate_fn=self.collate_fn,
                pin_memory=self.pin_memory,
                generator=torch.Generator().manual_seed(worker_seed),
            )
            for batch in loader:
                # Count before handing the batch over: the state then says "this many batches consumed",
                # whatever the loader has prefetched.
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def state_dict(self) -> dict[str, int]:
        """Position in the stream: ``{"epoch", "batch_in_epoch"}``."""
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from ``state``; takes effect at the next ``iter()``."""
        epoch, batch = int(state["epoch"]), int(state["batch_in_epoch"])
        if epoch < 0 or not 0 <= batch <= self.batches_per_epoch:
            raise ValueError(
                "batch stream state must have epoch >= 0 and "
                f"0 <= batch_in_epoch <= {self.batches_per_epoch}, received {dict(state)}"
            )
        self.epoch, self.batch_in_epoch = epoch, batch


class ReplayedBatches:
    """Any re-iterable of batches as an endless, resumable stream: each pass is one epoch.

    Resuming replays the current pass and skips the batches already consumed, which is exact only when every
    pass yields the same batches (a list; a ``DataLoader`` without shuffling).
    """

    def __init__(self, batches: Iterable[Batch]) -> None:
        self.batches = batches
        self.epoch = 0
        self.batch_in_epoch = 0

    def __iter__(self) -> Iterator[Batch]:
        while True:
            produced = 0
            for index, batch in enumerate(self.batches):
                produced += 1
                if index < self.batch_in_epoch:
                    continue
                self.batch_in_epoch += 1
                yield batch
            if produced == 0:
                raise RuntimeError(
                    f"the batches ran out after epoch {self.epoch} (an empty or one-shot iterable); "
                    "pass a list, a DataLoader or a SeededBatchStream"
                )
            self.epoch += 1
            self.batch_in_epoch = 0

    def state_dict(self) -> dict[str, int]:
        """Position in the replay: ``{"epoch", "batch_in_epoch"}``."""
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from ``state``; takes effect at the next ``iter()``."""
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])


def as_resumable(batches: Iterable[Batch]) -> ResumableBatches:
    """``batches`` itself when it is resumable, else a ``ReplayedBatches`` around it."""
    if isinstance(batches, ResumableBatches):
        return batches
    return ReplayedBatches(batches)
