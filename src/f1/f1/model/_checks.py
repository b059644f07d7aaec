"""Small validation helpers shared by the config dataclasses (one message format everywhere)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from f1.errors import ConfigError


def positive_int(where: str, value: object) -> int:
    """``value`` as an int >= 1, or :class:`ConfigError` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a positive int, received {value!r}")
    return value


def optional_positive_int(where: str, value: object) -> int | None:
    return None if value is None else positive_int(where, value)


def finite_float(where: str, value: object, *, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float inside ``[low, high]``, or :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, received {value!r}")
    if low is not None and value < low:
        raise ConfigError(f"{where}: expected a number >= {low}, received {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: expected a number <= {high}, received {value!r}")
    return float(value)


def one_of(where: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: expected one of {list(choices)}, received {value!r}")
    return str(value)


def float_tuple(where: str, value: object, length: int | None = None) -> tuple[float, ...]:
    """A tuple of finite floats (of ``length`` if given)."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{where}: expected a sequence of numbers, received {value!r}")
    out = tuple(finite_float(f"{where}[{i}]", v) for i, v in enumerate(value))  # type: ignore[union-attr]
    if length is not None and len(out) != length:
        raise ConfigError(f"{where}: expected {length} numbers, received {len(out)}")
    return out


def reject_unknown_keys(where: str, data: Mapping[str, Any], cls: type) -> None:
    """Raise :class:`ConfigError` if ``data`` has keys that are not fields of dataclass ``cls``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, received {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}, expected a subset of {sorted(known)}")


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
