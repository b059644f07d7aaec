"""Sinusoidal embedding of the flow time, as pi0 embeds its time before fusing it with the actions."""

from __future__ import annotations

import functools
import math

import torch

from flowmatch._validation import (
    require_finite,
    require_finite_number,
    require_floating,
    require_positive_int,
)


def sinusoidal_time_embedding(
    tau: torch.Tensor, dim: int, *, min_period: float = 4e-3, max_period: float = 4.0
) -> torch.Tensor:
    """Embed times ``tau`` (B,) as ``(B, dim)``: ``[sin(2 pi tau / p_k), cos(2 pi tau / p_k)]``.

    The ``dim / 2`` periods ``p_k`` are spaced geometrically from ``min_period`` to ``max_period`` (pi0 uses
    4e-3 .. 4.0), so both the coarse position in [0, 1] and fine differences between nearby times are visible.
    NaN/inf in ``tau`` is a ``ValueError``.
    """
    require_floating("tau", tau)
    require_positive_int("dim", dim)
    if tau.ndim != 1:
        raise ValueError(f"tau must have shape (B,), received {tuple(tau.shape)}")
    if dim % 2:
        raise ValueError(f"dim must be even (sin and cos halves), received {dim}")
    check_periods(min_period, max_period)
    require_finite("tau", tau)
    return embed_time(tau, dim, min_period=min_period, max_period=max_period)


def check_periods(min_period: float, max_period: float) -> None:
    """Raise unless ``0 < min_period < max_period``, both finite real numbers."""
    require_finite_number("min_period", min_period)
    require_finite_number("max_period", max_period)
    if not 0 < min_period < max_period:
        raise ValueError(f"need 0 < min_period < max_period, received {min_period}, {max_period}")


def embed_time(tau: torch.Tensor, dim: int, *, min_period: float, max_period: float) -> torch.Tensor:
    """:func:`sinusoidal_time_embedding` without its checks, for a caller that has made them (an encoder
    inside a sampler's loop, where a NaN check would synchronize the device at every step)."""
    # a compiled region traces the periods into its graph (dynamo would warn about the lru_cache)
    periods = _periods.__wrapped__ if torch.compiler.is_compiling() else _periods
    period = periods(dim, float(min_period), float(max_period), tau.device)
    angle = (2 * math.pi) * tau.to(torch.float64)[:, None] / period[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1).to(tau.dtype)


@functools.lru_cache(maxsize=32)
def _periods(dim: int, min_period: float, max_period: float, device: torch.device) -> torch.Tensor:
    """The ``dim / 2`` geometric periods in float64 (made once per size and device: a sampler embeds its
    time at every step), outside inference mode so that autograd may use it later. Read only."""
    with torch.inference_mode(False):
        fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=device)
        return min_period * (max_period / min_period) ** fraction
