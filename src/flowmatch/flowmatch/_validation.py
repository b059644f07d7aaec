"""Argument checks shared by the public entry points.

Every check raises at the public boundary with a message that names the argument, the expected value and
the received value, so a caller can fix the call without reading the library.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def require_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, received {type(value).__name__}")
    return value


def require_floating(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise ``TypeError`` unless ``value`` has a floating-point dtype."""
    require_tensor(name, value)
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, received {value.dtype}")
    return value


def require_ndim(name: str, value: torch.Tensor, ndims: Sequence[int], layout: str) -> torch.Tensor:
    """Raise ``ValueError`` unless ``value.ndim`` is one of ``ndims``; ``layout`` describes the shape."""
    require_tensor(name, value)
    if value.ndim not in ndims:
        raise ValueError(f"{name} must have shape {layout}, received shape {tuple(value.shape)}")
    return value


def require_shape(name: str, value: torch.Tensor, expected: Sequence[int | None]) -> torch.Tensor:
    """Raise ``ValueError`` unless ``value`` matches ``expected`` (``None`` matches any size)."""
    require_tensor(name, value)
    matches = value.ndim == len(expected) and all(
        want is None or want == got for want, got in zip(expected, value.shape)
    )
    if not matches:
        shown = ", ".join("*" if want is None else str(want) for want in expected)
        shown = f"({shown},)" if len(expected) == 1 else f"({shown})"
        raise ValueError(f"{name} must have shape {shown}, received shape {tuple(value.shape)}")
    return value


def require_positive_int(name: str, value: object) -> int:
    """Raise unless ``value`` is an ``int`` (not ``bool``) greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, received {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, received {value}")
    return value


def require_in_unit_interval(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` unless every entry of ``value`` lies in [0, 1]."""
    require_floating(name, value)
    if value.numel() and (bool((value < 0).any()) or bool((value > 1).any())):
        raise ValueError(
            f"{name} must lie in [0, 1], "
            f"received values in [{value.min().item():.4g}, {value.max().item():.4g}]"
        )
    return value
