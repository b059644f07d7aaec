"""Time grids for fixed-step sampling, from ``tau = 0`` (noise) to ``tau = 1`` (data).

A grid is a strictly increasing 1-D tensor ``(steps + 1,)``. Non-uniform grids spend the few steps of a
cheap sampler where the velocity field bends most, which is how few-step sampling is made accurate.
Every grid function refuses a parameter that would make times repeat (too many steps for the dtype, or an
extreme exponent or shift), so what it returns is always a grid :func:`flowmatch.sample` accepts.
"""

from __future__ import annotations

import inspect
import math

import torch

from flowmatch._validation import (
    require_finite,
    require_finite_number,
    require_floating,
    require_floating_dtype,
    require_name,
    require_ndim,
    require_positive_int,
)


def uniform_time_grid(steps: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``steps`` equal steps: ``tau_i = i / steps``, shape ``(steps + 1,)``; pi0's inference uses 10."""
    require_positive_int("steps", steps)
    require_floating_dtype("dtype", dtype)
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=dtype)
    return _require_increasing(grid, f"steps={steps}")


def power_time_grid(steps: int, exponent: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``tau_i = 1 - (1 - i / steps) ** exponent``: ``exponent > 1`` packs steps near data (tau = 1)."""
    require_positive_int("steps", steps)
    require_finite_number("exponent", exponent)
    if exponent <= 0:
        raise ValueError(f"exponent must be > 0, received {exponent}")
    require_floating_dtype("dtype", dtype)
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    grid = (1 - (1 - u) ** exponent).to(dtype)
    return _require_increasing(grid, f"exponent={exponent} with steps={steps}")


def cosine_time_grid(steps: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``tau_i = (1 - cos(pi * i / steps)) / 2``: small steps at both ends, large ones in the middle."""
    require_positive_int("steps", steps)
    require_floating_dtype("dtype", dtype)
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    grid = ((1 - torch.cos(math.pi * u)) / 2).to(dtype)
    return _require_increasing(grid, f"steps={steps}")


def shifted_time_grid(steps: int, shift: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Uniform grid in the noise level ``s = 1 - tau`` remapped by ``s' = shift * s / (1 + (shift - 1) * s)``.

    ``shift > 1`` spends more steps near noise (small tau), ``shift < 1`` near data; ``shift = 1`` is uniform.
    """
    require_positive_int("steps", steps)
    require_finite_number("shift", shift)
    if shift <= 0:
        raise ValueError(f"shift must be > 0, received {shift}")
    require_floating_dtype("dtype", dtype)
    s = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    shifted = shift * s / (1 + (shift - 1) * s)
    grid = (1 - shifted).to(dtype)
    return _require_increasing(grid, f"shift={shift} with steps={steps}")


def _require_increasing(grid: torch.Tensor, cause: str) -> torch.Tensor:
    repeats = int((grid[1:] <= grid[:-1]).sum())
    if repeats:
        raise ValueError(
            f"{cause} gives a time grid whose times repeat in {grid.dtype} ({repeats} of {grid.numel() - 1} "
            "steps have zero length); use fewer steps, a wider dtype or a milder parameter"
        )
    return grid


def validate_time_grid(time_grid: torch.Tensor) -> torch.Tensor:
    """Check a user grid: floating ``(T,)``, ``T >= 2``, finite, strictly increasing, inside [0, 1]."""
    require_floating("time_grid", time_grid)
    require_ndim("time_grid", time_grid, (1,), "(T,) with T >= 2")
    if time_grid.numel() < 2:
        raise ValueError(f"time_grid must have at least 2 points, received {time_grid.numel()}")
    # NaN compares False with everything, so it would pass the order and range checks below.
    require_finite("time_grid", time_grid)
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
    """A grid by name (``"uniform"``, ``"power"``, ``"cosine"``, ``"shifted"``), shape ``(steps + 1,)``.

    ``params`` are the named grid's own (``exponent``, ``shift``, ``dtype``); an unknown one is a
    ``KeyError`` and a missing required one a ``TypeError``, both naming the parameters the grid takes.
    """
    require_name("name", name, _GRIDS, "time grid")
    grid_fn = _GRIDS[name]
    signature = inspect.signature(grid_fn).parameters
    accepted = [p for p in signature if p != "steps"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise KeyError(
            f"unknown parameters {unknown} for time grid {name!r}; expected a subset of {accepted}"
        )
    missing = [p for p in accepted if signature[p].default is inspect.Parameter.empty and p not in params]
    if missing:
        raise TypeError(f"time grid {name!r} requires parameters {missing}, received {sorted(params)}")
    return grid_fn(steps, **params)
