"""A bounded box of real vectors: the action and state spaces of the embodiments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class BoxSpace:
    """The vectors ``x`` with ``low <= x <= high`` element-wise, with one name per dimension.

    Same meaning as gymnasium's ``Box`` for a 1-D float32 space, without depending on gymnasium.

    Attributes:
        low: lower bounds, float32 of shape (D,).
        high: upper bounds, float32 of shape (D,).
        names: name of each dimension, length D.
    """

    low: np.ndarray
    high: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float32).reshape(-1)
        high = np.asarray(self.high, dtype=np.float32).reshape(-1)
        if low.shape != high.shape or low.shape[0] != len(self.names):
            raise ValueError(
                f"BoxSpace: expected low, high and names of one length, received {low.shape[0]}, "
                f"{high.shape[0]} and {len(self.names)}"
            )
        if not np.all(low <= high):
            raise ValueError(f"BoxSpace: expected low <= high, received low={low}, high={high}")
        low.flags.writeable = False
        high.flags.writeable = False
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        # Python floats for the per-step clipping hot path.
        object.__setattr__(self, "_low64", low.astype(np.float64))
        object.__setattr__(self, "_high64", high.astype(np.float64))

    @property
    def shape(self) -> tuple[int]:
        """(D,)."""
        return (self.low.shape[0],)

    @property
    def dim(self) -> int:
        """Number of dimensions D."""
        return self.low.shape[0]

    def contains(self, x: np.ndarray) -> bool:
        """Whether ``x`` has shape (D,) and lies within the bounds."""
        x = np.asarray(x)
        return x.shape == self.shape and bool(np.all((x >= self.low) & (x <= self.high)))

    def clip(self, x: np.ndarray) -> np.ndarray:
        """``x`` of shape (D,) clipped into the box, float64."""
        return np.minimum(np.maximum(x, self._low64), self._high64)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A uniform sample, float32 of shape (D,)."""
        return rng.uniform(self.low, self.high).astype(np.float32)
