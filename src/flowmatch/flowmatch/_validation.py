"""Argument checks shared by the public entry points.

Every check raises at the public boundary with a message that names the argument, the expected value and
the received value, so a caller can fix the call without reading the library.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

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
    """Raise ``ValueError`` unless every entry of ``value`` lies in [0, 1] (NaN does not: it is refused)."""
    require_floating(name, value)
    require_finite(name, value)
    if value.numel() and not bool(((value >= 0) & (value <= 1)).all()):
        raise ValueError(
            f"{name} must lie in [0, 1], "
            f"received values in [{value.min().item():.4g}, {value.max().item():.4g}]"
        )
    return value


def require_finite(name: str, value: torch.Tensor, *, where: torch.Tensor | None = None) -> torch.Tensor:
    """Raise ``ValueError`` if ``value`` holds NaN or inf (only entries where the bool ``where`` is True
    count).

    One reduction and one host read: on a GPU this is a device synchronization, so it belongs at the
    entry of a call, never inside a solver's loop.
    """
    finite = torch.isfinite(value)
    if where is not None:
        finite = finite | ~where
    if not bool(finite.all()):
        bad = value[~finite]
        nans = int(torch.isnan(bad).sum())
        raise ValueError(
            f"{name} must be finite, received {nans} NaN and {bad.numel() - nans} inf entries "
            f"(of {value.numel()}, shape {tuple(value.shape)})"
        )
    return value


def require_finite_number(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite real number (not ``bool``), else raise naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, received {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, received {value}")
    return float(value)


def require_bool(name: str, value: object) -> bool:
    """Raise ``TypeError`` unless ``value`` is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, received {type(value).__name__}")
    return value


def require_floating_dtype(name: str, value: object) -> torch.dtype:
    """Raise ``TypeError`` unless ``value`` is a floating-point ``torch.dtype``."""
    if not (isinstance(value, torch.dtype) and value.is_floating_point):
        raise TypeError(f"{name} must be a floating-point dtype, received {value!r}")
    return value


def require_generator(name: str, value: object) -> torch.Generator | None:
    """Raise ``TypeError`` unless ``value`` is a ``torch.Generator`` or None."""
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, received {type(value).__name__}")
    return value


def require_name(name: str, value: object, known: Iterable[str], what: str) -> str:
    """Raise ``TypeError`` unless ``value`` is a str, ``KeyError`` unless it is one of ``known``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str naming a {what}, received {type(value).__name__}")
    known = list(known)
    if value not in known:
        raise KeyError(f"unknown {what} {value!r}; expected one of {sorted(known)}")
    return value
