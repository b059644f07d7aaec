"""Distances between sample sets, to measure how well sampled actions match a target distribution."""

from __future__ import annotations

import torch

from flowmatch._validation import (
    require_finite,
    require_floating,
    require_generator,
    require_ndim,
    require_positive_int,
)


def wasserstein_1d(x: torch.Tensor, y: torch.Tensor, *, p: int = 2) -> torch.Tensor:
    """Exact p-Wasserstein distance between equal-size empirical distributions along the last axis.

    Args:
        x: ``(..., N)`` samples; the leading axes are independent problems.
        y: ``(..., N)`` samples to compare with ``x``.
        p: the order (1 or 2).

    Returns:
        ``(...)`` distances: ``(mean |sort(x) - sort(y)|^p)^(1/p)`` (optimal transport in 1-D pairs order
        statistics).
    """
    require_floating("x", x)
    require_floating("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, received {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"x must have shape (..., N) with N >= 1, received {tuple(x.shape)}")
    require_finite("x", x)
    require_finite("y", y)
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, received {p}")
    gaps = (x.sort(dim=-1).values - y.sort(dim=-1).values).abs()
    return gaps.pow(p).mean(dim=-1).pow(1.0 / p)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_projections: int = 128,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sliced 2-Wasserstein distance between two equal-size sample sets ``(N, K)``.

    Projects both sets on ``num_projections`` random unit directions (drawn from ``generator``, so a fixed
    seed gives a fixed metric) and averages the squared exact 1-D distances:
    ``sqrt(mean_k W2(x.u_k, y.u_k)^2)``.
    Returns a scalar tensor.
    """
    require_floating("x", x)
    require_ndim("x", x, (2,), "(N, K)")
    require_floating("y", y)
    if x.shape != y.shape:
        raise ValueError(f"y must have the shape of x {tuple(x.shape)}, received {tuple(y.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (N, K) with N, K >= 1, received {tuple(x.shape)}")
    require_finite("x", x)
    require_finite("y", y)
    require_positive_int("num_projections", num_projections)
    require_generator("generator", generator)
    directions = torch.randn(x.shape[1], num_projections, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)
    projected_x = (x.to(torch.float64) @ directions.to(x.device)).T  # (P, N)
    projected_y = (y.to(torch.float64) @ directions.to(y.device)).T
    return wasserstein_1d(projected_x, projected_y, p=2).pow(2).mean().sqrt()
