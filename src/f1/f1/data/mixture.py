"""Weighted mixtures of datasets, each tagged with its embodiment."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch


class DatasetMixture(torch.utils.data.Dataset):
    """Several datasets behind one index, drawn by weight with :meth:`sampler`.

    Index i runs through the members one after the other; each item gets ``"embodiment"`` (the member's
    embodiment name) and ``"dataset_index"`` (its position in the mixture).

    Args:
        members: ``[(dataset, weight), ...]``; weights are relative (normalized to sum 1). A member's
            embodiment is its ``embodiment`` attribute (as :class:`~f1.data.windows.WindowedDataset` has).
        embodiments: names overriding (or supplying) each member's embodiment.
    """

    def __init__(
        self,
        members: Sequence[tuple[torch.utils.data.Dataset, float]],
        embodiments: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("members: expected at least one (dataset, weight) pair")
        for i, member in enumerate(members):
            if not isinstance(member, tuple | list) or len(member) != 2:
                raise ValueError(f"members[{i}]: expected a (dataset, weight) pair, got {member!r}")
            dataset, weight = member
            if not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
                raise ValueError(f"members[{i}]: expected a positive finite weight, got {weight!r}")
            if len(dataset) == 0:  # type: ignore[arg-type]
                raise ValueError(f"members[{i}]: the dataset is empty")
        if embodiments is not None and len(embodiments) != len(members):
            raise ValueError(f"embodiments: expected {len(members)} names, got {len(embodiments)}")
        self.datasets = [d for d, _ in members]
        weights = np.array([w for _, w in members], dtype=np.float64)
        self.weights = weights / weights.sum()
        names = []
        for i, dataset in enumerate(self.datasets):
            name = embodiments[i] if embodiments is not None else getattr(dataset, "embodiment", None)
            if not isinstance(name, str) or not name:
                raise ValueError(f"embodiments: no embodiment name for members[{i}] (got {name!r})")
            names.append(name)
        self.embodiments = names
        lengths = np.array([len(d) for d in self.datasets], dtype=np.int64)  # type: ignore[arg-type]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(member position, index inside that member) of mixture index ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index: expected 0 <= index < {len(self)}, got {index}")
        member = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return member, index - int(self.offsets[member])

    def __getitem__(self, index: int) -> dict[str, Any]:
        member, local = self.locate(int(index))
        item = dict(self.datasets[member][local])
        item["embodiment"] = self.embodiments[member]
        item["dataset_index"] = member
        return item

    def sampler(
        self, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> WeightedMixtureSampler:
        """A sampler drawing members by weight, then a uniform item of the member (see the class)."""
        return WeightedMixtureSampler(self, num_samples, seed, rank, world_size)


class WeightedMixtureSampler(torch.utils.data.Sampler[int]):
    """Draws ``num_samples`` mixture indices per epoch: member ~ weights, item ~ uniform in the member.

    Deterministic given (seed, epoch); call :meth:`set_epoch` each epoch. With ``world_size`` > 1 every
    rank draws the same global sequence and keeps every ``world_size``-th index from ``rank``, so ranks
    see disjoint draws (``num_samples`` is the per-rank count).
    """

    def __init__(
        self, mixture: DatasetMixture, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
        if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank/world_size: expected 0 <= rank < world_size, got {rank}/{world_size}")
        self.mixture = mixture
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        indices = weighted_draws(self.mixture, self.num_samples * self.world_size, generator)
        return iter(indices[self.rank :: self.world_size].tolist())


def weighted_draws(mixture: DatasetMixture, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` mixture indices: member ~ weights, then a uniform item of the member. Shape (count,)."""
    members = torch.multinomial(
        torch.as_tensor(mixture.weights), count, replacement=True, generator=generator
    )
    lengths = torch.as_tensor(np.diff(mixture.offsets))
    offsets = torch.as_tensor(mixture.offsets[:-1])
    local = (torch.rand(count, generator=generator, dtype=torch.float64) * lengths[members]).long()
    return offsets[members] + local


class WeightedMixtureView(torch.utils.data.Dataset):
    """A fixed set of weighted draws from a mixture, as a plain map-style dataset.

    A trainer that shuffles uniformly over any map-style dataset (as ``f1.train``'s batch stream does)
    then samples the members by their weights without knowing about mixtures.

    Args:
        mixture: the members and weights.
        num_samples: number of draws (the view's length).
        seed: the draws are a function of the seed only.
    """

    def __init__(self, mixture: DatasetMixture, num_samples: int, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
        self.mixture = mixture
        self.indices = weighted_draws(mixture, num_samples, torch.Generator().manual_seed(seed))

    @property
    def embodiments(self) -> list[str]:
        return self.mixture.embodiments

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.mixture[int(self.indices[index])]
