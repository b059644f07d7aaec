"""Errors raised by the dataset layer."""

from __future__ import annotations

from pathlib import Path


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
