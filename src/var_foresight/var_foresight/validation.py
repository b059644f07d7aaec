"""Checks of arguments at the public entries: each error names the argument, the expected and the received
value.

Value checks (finite, in range) read the data, so they are skipped on the meta device, where there is none.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def type_name(value: Any) -> str:
    return type(value).__name__


def check_compile_options(mode: Any, dynamic: Any) -> None:
    """``torch.compile``'s ``mode`` (a mode name or None) and ``dynamic`` (a bool)."""
    if not isinstance(dynamic, bool):
        raise TypeError(f"dynamic: expected a bool, got {type_name(dynamic)}")
    if mode is not None and not isinstance(mode, str):
        raise TypeError(f"mode: expected a torch.compile mode name or None, got {type_name(mode)}")


def check_int(name: str, value: Any, minimum: int | None = 1, maximum: int | None = None) -> int:
    """An ``int`` (not a bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type_name(value)} {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "-inf" if minimum is None else minimum
        high = "inf" if maximum is None else maximum
        raise ValueError(f"{name}: expected an int in [{low}, {high}], got {value}")
    return value


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number (int or float, not a bool) in the given interval."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}: expected a number, got {type_name(value)} {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        interval = (
            f"{'(' if low_open else '['}{'-inf' if low is None else low}, "
            f"{'inf' if high is None else high}{')' if high_open else ']'}"
        )
        raise ValueError(f"{name}: expected a finite number in {interval}, got {value}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type_name(value)} {value!r}")
    return value


def check_tensor(
    name: str, value: Any, ndim: int | None = None, kind: str | None = None, shape: str = ""
) -> torch.Tensor:
    """A tensor with ``ndim`` dimensions (``shape`` describes them in the message) of ``kind`` ``"float"``
    (a floating dtype), ``"int"`` (int32 or int64) or ``"bool"``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor {shape}".rstrip() + f", got {type_name(value)}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(
            f"{name}: expected {ndim} dimensions {shape}".rstrip() + f", got {tuple(value.shape)}"
        )
    if kind == "float" and not value.is_floating_point():
        raise TypeError(f"{name}: expected a floating dtype, got {value.dtype}")
    if kind == "int" and value.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: expected an integer dtype (int64 or int32), got {value.dtype}")
    if kind == "bool" and value.dtype != torch.bool:
        raise TypeError(f"{name}: expected dtype torch.bool, got {value.dtype}")
    return value


def check_finite(name: str, value: torch.Tensor) -> None:
    """Refuse NaN and +-inf (one ``isfinite`` reduction)."""
    if value.device.type != "meta" and value.numel() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN or inf of {value.numel()}")


def check_range(name: str, value: torch.Tensor, low: float, high: float, what: str = "values") -> None:
    """Every element in ``[low, high]``."""
    if value.device.type == "meta" or value.numel() == 0:
        return
    lo, hi = float(value.min()), float(value.max())
    if lo < low or hi > high:
        raise ValueError(f"{name}: expected {what} in [{low}, {high}], got values in [{lo}, {hi}]")


def check_indices(name: str, value: torch.Tensor, vocab_size: int) -> None:
    """Token indices in ``[0, vocab_size)``."""
    if value.device.type == "meta" or value.numel() == 0:
        return
    lo, hi = int(value.min()), int(value.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"{name}: expected token indices in [0, {vocab_size - 1}] (the vocabulary), got [{lo}, {hi}]"
        )


def check_dtype_matches(name: str, value: torch.Tensor, weight: torch.Tensor, owner: str) -> None:
    """``value`` has the dtype of the parameters it meets (not checked under autocast, which casts)."""
    if value.dtype == weight.dtype or value.device.type == "meta":
        return
    if torch.is_autocast_enabled(value.device.type):
        return
    raise TypeError(f"{name}: expected dtype {weight.dtype} (that of the {owner}), got {value.dtype}")


def check_device_matches(name: str, value: torch.Tensor, weight: torch.Tensor, owner: str) -> None:
    if value.device != weight.device:
        raise ValueError(
            f"{name}: expected a tensor on {weight.device} (where the {owner} is), got {value.device}"
        )


def check_generator(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"{name}: expected a torch.Generator or None, got {type_name(value)}")
