"""Errors raised at the public boundary of :mod:`f1.model`.

Each names the argument, the expected and the received value, and subclasses the built-in exception a
caller would catch anyway (``ValueError``/``KeyError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "InputError", "UnknownEmbodimentError"]


class ConfigError(ValueError):
    """A configuration value or key is invalid (raised once, when the config is built)."""


class InputError(ValueError):
    """A batch or observation handed to the policy has a wrong key, shape, dtype or range."""


class UnknownEmbodimentError(KeyError):
    """An embodiment name that the policy's registry does not hold."""

    def __init__(self, name: object, known: list[str] | tuple[str, ...]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown embodiment {name!r}; registered embodiments: {sorted(self.known)}")

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, foreign, or its keys/shapes do not match the model."""
