"""The errors of the ``f1`` distribution, in one place.

Each names the argument (or file, or key), the expected and the received value, and subclasses the built-in
exception a caller would catch anyway (``ValueError``/``KeyError``), so ``except ValueError`` keeps working.
Every part of ``f1`` (model, data, training, evaluation, the command line) raises these.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetFormatError",
    "InputError",
    "ProtocolError",
    "UnknownEmbodimentError",
    "UnsupportedVersionError",
]


class ConfigError(ValueError):
    """A configuration value or key is invalid (raised once, when the config is built)."""


class InputError(ValueError):
    """A batch or observation handed to the model or policy has a wrong key, shape, dtype or range."""


class ProtocolError(InputError):
    """A message to the policy server (``f1 serve``) is malformed: not a msgpack-numpy map, an unknown or
    missing key, a wrong shape, dtype or value; the message names the key, the expected and the received."""


class UnknownEmbodimentError(KeyError):
    """An embodiment name that the policy's registry does not hold."""

    def __init__(self, name: object, known: list[str] | tuple[str, ...]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown embodiment {name!r}; registered embodiments: {sorted(self.known)}")

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class CheckpointError(ValueError):
    """A checkpoint (a model file or a training checkpoint) is missing, corrupt, foreign, or its keys/shapes
    do not match the model; the message names the file."""


class DatasetFormatError(ValueError):
    """A dataset file is missing, corrupt or inconsistent with the rest of the dataset.

    The message always starts with the offending file, so a user can open it and look.

    Attributes:
        path: the file (or directory) at fault.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnsupportedVersionError(DatasetFormatError):
    """The dataset's ``codebase_version`` is not one this reader understands (v3.0 and v2.1)."""
