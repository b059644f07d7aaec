"""Time grids for fixed-step sampling, from ``tau = 0`` (noise) to ``tau = 1`` (data).

A grid is a strictly increasing 1-D tensor ``(steps + 1,)``. Non-uniform grids spend the few steps of a
cheap sampler where the velocity field bends most, which is how few-step sampling is made accurate.
"""

from __future__ import annotations

import math

import torch

from flowmatch._validation import require_floating, require_ndim, require_positive_int


def uniform_time_grid(steps: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``steps`` equal steps: ``tau_i = i / steps``, shape ``(steps + 1,)``; pi0's inference uses 10."""
    require_positive_int("steps", steps)
    return torch.linspace(0.0, 1.0, steps + 1, dtype=dtype)


def power_time_grid(steps: int, exponent: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``tau_i = 1 - (1 - i / steps) ** exponent``: ``exponent > 1`` packs steps near data (tau = 1)."""
    require_positive_int("steps", steps)
    if exponent <= 0:
        raise ValueError(f"exponent must be > 0, received {exponent}")
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    return (1 - (1 - u) ** exponent).to(dtype)


def cosine_time_grid(steps: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``tau_i = (1 - cos(pi * i / steps)) / 2``: small steps at both ends, large ones in the middle."""
    require_positive_int("steps", steps)
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    return ((1 - torch.cos(math.pi * u)) / 2).to(dtype)


def shifted_time_grid(steps: int, shift: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Uniform grid in the noise level ``s = 1 - tau`` remapped by ``s' = shift * s / (1 + (shift - 1) * s)``.

    ``shift > 1`` spends more steps near noise (small tau), ``shift < 1`` near data; ``shift = 1`` is uniform.
    """
    require_positive_int("steps", steps)
    if shift <= 0:
        raise ValueError(f"shift must be > 0, received {shift}")
    s = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    shifted = shift * s / (1 + (shift - 1) * s)
    return (1 - shifted).to(dtype)


def validate_time_grid(time_grid: torch.Tensor) -> torch.Tensor:
    """Check a user grid: floating 1-D ``(T,)`` with ``T >= 2``, strictly increasing, inside [0, 1]."""
    require_floating("time_grid", time_grid)
    require_ndim("time_grid", time_grid, (1,), "(T,) with T >= 2")
    if time_grid.numel() < 2:
        raise ValueError(f"time_grid must have at least 2 points, received {time_grid.numel()}")
    if bool((time_grid[1:] <= time_grid[:-1]).any()):
        raise ValueError(
            "time_grid must be strictly increasing from noise (tau = 0) to data (tau = 1), "
            f"received {time_grid.tolist()}"
        )
    if bool(time_grid[0] < 0) or bool(time_grid[-1] > 1):
        raise ValueError(
            f"time_grid must lie in [0, 1], received [{time_grid[0].item():.4g}, {time_grid[-1].item():.4g}]"
        )
    return time_grid


_GRIDS = {
    "uniform": uniform_time_grid,
    "power": power_time_grid,
    "cosine": cosine_time_grid,
    "shifted": shifted_time_grid,
}


def make_time_grid(name: str, steps: int, **params: float) -> torch.Tensor:
    """A grid by name (``"uniform"``, ``"power"``, ``"cosine"``, ``"shifted"``), shape ``(steps + 1,)``."""
    if name not in _GRIDS:
        raise KeyError(f"unknown time grid {name!r}; expected one of {sorted(_GRIDS)}")
    return _GRIDS[name](steps, **params)
