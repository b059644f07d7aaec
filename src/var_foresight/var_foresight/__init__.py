"""var_foresight."""

__version__ = "0.1.0"
