"""Scale schedules of the next-scale token pyramid and the Phi-sharing table.

A schedule lists the token-map sizes ``(h, w)`` from the coarsest to the finest scale; the finest equals the
latent map of the VQ-VAE. Everything the quantizer and the predictor need to know about the token layout
(tokens per scale, offsets, the level id of every token) is a pure function of the schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from var_foresight.validation import check_int, type_name

#: The 256 px schedule of the released VAR tokenizer (latent 16 x 16, 680 tokens).
VAR_SCALES_256: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
#: The 512 px schedule served by the same VQ-VAE (latent 32 x 32).
VAR_SCALES_512: tuple[int, ...] = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)

#: Phi conv used at each of the 10 scales of the released tokenizer (4 shared convs). VAR derives it from an
#: argmin with two exact ties decided by float rounding; it is hard-coded here and `phi_table` reproduces it.
RELEASED_PHI_TABLE: tuple[int, ...] = (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)

ScaleSize = tuple[int, int]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_size(side: int | Sequence[int], position: int) -> ScaleSize:
    if _is_int(side):
        size = (side, side)
    elif isinstance(side, Sequence) and len(side) == 2 and all(_is_int(s) for s in side):
        size = (int(side[0]), int(side[1]))
    else:
        raise TypeError(f"scales[{position}]: expected an int or an (h, w) pair of ints, got {side!r}")
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"scales[{position}]: sides must be >= 1, got {size}")
    return size


@dataclass(frozen=True)
class ScaleSchedule:
    """Token-map sizes ``(h, w)`` from coarse to fine; sides never shrink from one scale to the next."""

    sizes: tuple[ScaleSize, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.sizes, Sequence) or isinstance(self.sizes, str | bytes):
            raise TypeError(f"scales: expected a sequence of (h, w) pairs, got {type_name(self.sizes)}")
        if len(self.sizes) == 0:
            raise ValueError("scales: expected at least one scale, got an empty schedule")
        for i, size in enumerate(self.sizes):
            if not (isinstance(size, tuple) and len(size) == 2 and all(_is_int(s) for s in size)):
                raise TypeError(f"scales[{i}]: expected an (h, w) tuple of ints, got {size!r}")
            if min(size) < 1:
                raise ValueError(f"scales[{i}]: sides must be >= 1, got {size}")
        object.__setattr__(self, "sizes", tuple(self.sizes))
        for k in range(1, len(self.sizes)):
            prev, cur = self.sizes[k - 1], self.sizes[k]
            if cur[0] < prev[0] or cur[1] < prev[1]:
                raise ValueError(f"scales: sides must not shrink, got {prev} before {cur} at position {k}")

    @classmethod
    def from_sides(cls, sides: Sequence[int | Sequence[int]]) -> ScaleSchedule:
        """Build from ``[1, 2, 3, ...]`` (square maps) or ``[(1, 1), (2, 3), ...]`` (rectangular maps)."""
        if isinstance(sides, ScaleSchedule):
            return sides
        if not isinstance(sides, Sequence) or isinstance(sides, str | bytes):
            raise TypeError(f"scales: expected a sequence of sides or (h, w) pairs, got {type_name(sides)}")
        return cls(tuple(_as_size(s, i) for i, s in enumerate(sides)))

    @property
    def num_scales(self) -> int:
        return len(self.sizes)

    @property
    def latent_size(self) -> ScaleSize:
        """``(H, W)`` of the finest map, which is the VQ-VAE latent map."""
        return self.sizes[-1]

    @cached_property
    def tokens_per_scale(self) -> tuple[int, ...]:
        return tuple(h * w for h, w in self.sizes)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens_per_scale)

    @cached_property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        """``(begin, end)`` of every scale in the flattened token sequence."""
        out, cur = [], 0
        for n in self.tokens_per_scale:
            out.append((cur, cur + n))
            cur += n
        return tuple(out)

    def level_ids(self, num_scales: int | None = None) -> torch.Tensor:
        """Scale index of every token of the first ``num_scales`` scales, shape ``(L,)`` int64."""
        k = self.num_scales if num_scales is None else check_int("num_scales", num_scales, 1, self.num_scales)
        return torch.cat(
            [torch.full((n,), i, dtype=torch.long) for i, n in enumerate(self.tokens_per_scale[:k])]
        )

    def prefix(self, num_scales: int) -> ScaleSchedule:
        """The first ``num_scales`` scales (token layout of a foresight that stops early)."""
        if isinstance(num_scales, bool) or not isinstance(num_scales, int):
            raise TypeError(f"num_scales: expected an int, got {type_name(num_scales)} {num_scales!r}")
        if not 1 <= num_scales <= self.num_scales:
            raise ValueError(f"num_scales: expected 1..{self.num_scales}, got {num_scales}")
        return ScaleSchedule(self.sizes[:num_scales])

    def as_list(self) -> list[list[int]]:
        return [list(s) for s in self.sizes]


def phi_table(num_scales: int, num_phi: int = 4) -> tuple[int, ...]:
    """Which of ``num_phi`` shared Phi convs serves each scale, by VAR's rule.

    VAR picks ``argmin_j |tick_j - k / (S - 1)|`` with ticks from ``numpy.linspace``; exact ties are
    decided by float64 rounding, so the ticks are computed with the same float operations
    (``i * step + start``, last tick equal to ``stop``) and the first minimum wins. The released
    10-scale table is hard-coded and checked.
    """
    check_int("num_scales", num_scales, 1)
    check_int("num_phi", num_phi, 1)
    if num_scales == 10 and num_phi == 4:
        return RELEASED_PHI_TABLE
    if num_phi == 1:
        return (0,) * num_scales
    # VAR's ticks: linspace(1/3/K, 1-1/3/K, K) for K == 4, else linspace(1/2/K, 1-1/2/K, K)
    start = 1 / 3 / num_phi if num_phi == 4 else 1 / 2 / num_phi
    stop = 1 - start
    step = (stop - start) / (num_phi - 1)
    ticks = [i * step + start for i in range(num_phi)]
    ticks[-1] = stop
    table = []
    for k in range(num_scales):
        at = k / (num_scales - 1) if num_scales > 1 else 0.0
        distances = [abs(t - at) for t in ticks]
        table.append(distances.index(min(distances)))
    return tuple(table)
