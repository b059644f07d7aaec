"""The errors of the ``mot`` distribution, in one place.

Every error mot raises on bad input is a :class:`MoTError`, and also the built-in exception a caller would
catch anyway, so ``except ValueError`` (or ``TypeError``/``KeyError``) keeps working. Each message names the
argument (or key), the expected and the received value, and is raised before any state changes.
"""

from __future__ import annotations

__all__ = ["ArgumentTypeError", "ConfigError", "MoTError", "SpecError", "WeightImportError"]


class MoTError(Exception):
    """Root of mot's errors: ``except mot.MoTError`` catches every refusal of bad input."""


class ConfigError(MoTError, ValueError):
    """A :class:`~mot.MoTConfig`/:class:`~mot.ExpertConfig` value or key is invalid (raised when built)."""


class SpecError(MoTError, ValueError):
    """An attention spec (or a value checked against it: inputs, valid lengths, masks, a cache) is wrong."""


class ArgumentTypeError(MoTError, TypeError):
    """An argument is not of the expected class at all (e.g. ``spec`` is not an ``AttentionSpec``)."""


class WeightImportError(MoTError, KeyError):
    """A state dict does not fit the expert it is loaded into (missing key, wrong shape, wrong depth)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def describe(value: object) -> str:
    """Short description of a received value for messages: a tensor's shape/dtype/device, else its repr."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        device = getattr(value, "device", None)
        where = f" on {device}" if device is not None else ""
        return f"{type(value).__name__} of shape {tuple(shape)}, dtype {dtype}{where}"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def check_int(name: str, value: object, minimum: int = 1, error: type[MoTError] = SpecError) -> int:
    """``value`` as an int ``>= minimum`` (bools refused), else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise error(f"{name}: expected {kind}, received {describe(value)}")
    return value


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool, else :class:`ArgumentTypeError` naming ``name``."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name}: expected a bool, received {type(value).__name__}")
    return value
