"""The error of var_foresight beyond the built-in ones.

Bad arguments raise the built-in classes with the argument named (``TypeError`` for a wrong type or dtype,
``ValueError`` for a wrong shape or value, ``KeyError`` for an unknown or missing key); a file that cannot be
read as what it claims to be raises `CheckpointError` (a ``ValueError``) naming the file.
"""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the model: foreign, incomplete, or of another shape."""
