"""Per-module wall-clock latency of one inference call, like the paper's breakdown table.

Modules: ``preprocess`` (parsing, normalization, tokenization), ``image_encode`` (vision tower +
projector + language embedding), ``prefix`` (understanding expert over the prefix, filling the KV cache),
``history_encode`` (tokenizer over the history frames + history encoder + generation expert over them),
``foresight`` (next-scale sampling of the predicted scales), ``flow_steps`` (all ODE steps of the action
expert), ``decode_foresight`` (only when the image is requested) and ``total``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["LATENCY_MODULES", "LatencyRecorder"]

LATENCY_MODULES: tuple[str, ...] = (
    "preprocess",
    "image_encode",
    "prefix",
    "history_encode",
    "foresight",
    "flow_steps",
    "decode_foresight",
)


class LatencyRecorder:
    """Accumulates milliseconds per module; synchronizes CUDA around each measured block.

    Args:
        device: the device whose work is timed (CUDA is synchronized before and after each block).
        enabled: False makes :meth:`measure` free (no clock, no synchronization) and the breakdown empty,
            so the default inference path pays nothing for the profiling it does not ask for.
    """

    def __init__(self, device: torch.device | str = "cpu", *, enabled: bool = True) -> None:
        self.device = torch.device(device)
        self.enabled = enabled
        self.ms: dict[str, float] = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def measure(self, module: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``module``."""
        if not self.enabled:
            yield
            return
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.ms[module] = self.ms.get(module, 0.0) + (time.perf_counter() - start) * 1e3

    def breakdown(self) -> dict[str, float]:
        """``{module: ms}`` in the order of :data:`LATENCY_MODULES`, plus ``total`` (empty when disabled)."""
        if not self.enabled:
            return {}
        out = {m: self.ms[m] for m in LATENCY_MODULES if m in self.ms}
        out["total"] = sum(out.values())
        return out
