"""The contract between the trainer and a model: named parameter groups and named scalar losses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from f1.model import PARAMETER_GROUPS

#: The parameter groups a model may report; stage configs freeze groups and set learning rates by name.
PARAMETER_GROUP_NAMES: tuple[str, ...] = PARAMETER_GROUPS

#: One training batch: tensors (and possibly lists of strings, e.g. task text) keyed by name.
Batch = Mapping[str, Any]


@runtime_checkable
class TrainableModel(Protocol):
    """What the trainer needs from a model (an ``nn.Module``, e.g. :class:`f1.model.F1Model`) and no more.

    The trainer (and DDP/FSDP around it) calls the module itself: ``model(batch, generation_scales=...)``.
    Randomness inside it (flow noise, flow time) should come from the global torch RNG, which the trainer
    seeds per process and stores in every checkpoint, so that resumed training is exact.
    """

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """Every parameter of the model, each in exactly one group; keys among ``PARAMETER_GROUP_NAMES``."""
        ...

    def __call__(self, batch: Batch, *, generation_scales: int | None) -> dict[str, torch.Tensor]:
        """Scalar (0-dim) losses by name, e.g. ``{"flow": ..., "generation": ...}`` (``forward``).

        Each loss is a mean over the batch, so data-parallel gradient averaging equals one process on the
        combined batch. ``generation_scales`` is the number of VAR scales to teacher-force (``None``: all).
        The trainer weights and sums the losses named in the stage config; other losses are only logged.
        """
        ...
