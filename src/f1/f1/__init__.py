"""f1: a vision-language-action policy that imagines the next frame, then acts toward it.

The policy and its configuration live in :mod:`f1.model` (re-exported here, imported on first use so that
``import f1`` and the command line stay fast); data, training, environments and evaluation in
:mod:`f1.data`, :mod:`f1.train`, :mod:`f1.envs` and :mod:`f1.eval`.

>>> from f1 import F1Policy, preset            # doctest: +SKIP
>>> policy = F1Policy(preset("tiny"))           # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from f1.model import (
        Embodiment,
        F1Config,
        F1Policy,
        Plan,
        convert_checkpoint,
        count_parameters,
        import_weights,
        inference_flops,
        preset,
    )

__version__ = "0.1.0"

__all__ = [
    "Embodiment",
    "F1Config",
    "F1Policy",
    "Plan",
    "convert_checkpoint",
    "count_parameters",
    "import_weights",
    "inference_flops",
    "preset",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("f1.model"), name)
    raise AttributeError(f"module 'f1' has no attribute {name!r}")
