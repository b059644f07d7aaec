"""Validation helpers shared by every configuration of ``f1`` (one message format everywhere).

The model's, the stages', the run file's, the data factory's and the embedded tasks' configs all check
unknown keys with :func:`reject_unknown_keys` and merge overrides with :func:`merge_overrides`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping
from dataclasses import fields, is_dataclass
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


def reject_unknown_keys(where: str, data: object, allowed: Collection[str] | type) -> None:
    """Raise :class:`ConfigError` if ``data`` has keys outside ``allowed`` (names, or a dataclass whose field
    names they are), naming them, the closest allowed key and every allowed one."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, received {type(data).__name__}")
    names = [f.name for f in fields(allowed)] if is_dataclass(allowed) else list(allowed)
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {unknown}{did_you_mean(unknown[0], names)}, "
            f"expected a subset of {sorted(names)}"
        )


def merge_overrides(
    base: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    where: str,
    open_sections: frozenset[str] = frozenset(),
    strict: bool = True,
    replaced_whole: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: nested mappings merge key by key, other values replace.

    Keys of ``overrides`` may be dotted (``"optimizer.lr"``). With ``strict``, a key that ``base`` lacks
    raises :class:`ConfigError` (see :func:`reject_unknown_keys`), so a typo never passes silently; inside
    the top-level keys named in ``open_sections`` (free-form sections validated later by their owner) new
    keys are accepted. Mappings under the keys in ``replaced_whole`` (open-ended ones, e.g. loss names) are
    replaced, not merged, so that an override can drop an entry.
    """
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{where}: expected a mapping of overrides, received {type(overrides).__name__}")
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for raw_key, value in overrides.items():
        head, _, rest = str(raw_key).partition(".")
        if head not in merged:
            if strict:
                reject_unknown_keys(where, {head: None}, list(merged))
            merged[head] = None
        if rest:
            value = {rest: value}
        nested = f"{where}.{head}"
        if isinstance(merged[head], Mapping) and isinstance(value, Mapping) and head not in replaced_whole:
            merged[head] = merge_overrides(
                merged[head],
                value,
                where=nested,
                strict=strict and head not in open_sections,
                replaced_whole=replaced_whole,
            )
        elif merged[head] is None and isinstance(value, Mapping):
            merged[head] = merge_overrides(
                {}, value, where=nested, strict=False, replaced_whole=replaced_whole
            )
        else:
            merged[head] = value
    return merged


def did_you_mean(word: str, choices: Collection[str], *, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string when nothing is as close
    as ``cutoff`` (difflib's similarity ratio)."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def config_differences(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    ignore: frozenset[str] = frozenset(),
    compared_whole: frozenset[str] = frozenset(),
    prefix: str = "",
) -> list[str]:
    """Every difference between two nested configs, as ``"key.path: checkpoint X, now Y"``.

    ``ignore``: top-level keys that may differ; ``compared_whole``: mappings compared as one value.
    """
    differences = []
    for key in sorted(set(saved) | set(current)):
        if not prefix and key in ignore:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping) and key not in compared_whole:
            differences += config_differences(a, b, compared_whole=compared_whole, prefix=f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key}: checkpoint {a!r}, now {b!r}")
    return differences
