"""Real-time chunking for F1: the previous chunk a new one is inpainted toward, from raw actions to the
flow's guidance.

The policy holds raw actions; the flow samples normalized ones. :class:`PreviousChunk` carries the raw
remaining actions and the inference delay from the policy to :meth:`f1.model.F1Model.sample`, which
turns them, with the embodiment's normalization and the ``action.rtc`` settings, into a
:class:`flowmatch.RealTimeChunking` (:meth:`PreviousChunk.guidance`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from f1.errors import InputError
from f1.model.config import ActionConfig
from f1.model.embodiment import Embodiment
from f1.model.inputs import check_finite_float
from flowmatch import RealTimeChunking

__all__ = ["PreviousChunk"]


@dataclass(frozen=True, eq=False)
class PreviousChunk:
    """The previous chunk's actions not yet executed when a new chunk's inference starts.

    Attributes:
        actions: raw actions ``(B, H', A)`` (or ``(H', A)``, shared by the batch), ``1 <= H' <= H``,
            aligned so ``actions[:, i]`` is what the previous chunk planned for the new chunk's step ``i``;
            the new chunk's steps ``H'`` and later have no counterpart (zero weight).
        inference_delay: ``d``, actions that execute while the new chunk is computed: steps ``[0, d)`` of
            the new chunk are frozen to ``actions[:, :d]``; ``0 <= d <= H'`` and ``d < H``.

    Types, dtype, NaN/inf and the delay's range are checked here (:class:`~f1.errors.InputError` naming
    the argument); :meth:`check` checks the shapes against a call.
    """

    actions: torch.Tensor
    inference_delay: int

    def __post_init__(self) -> None:
        actions = self.actions
        if not isinstance(actions, torch.Tensor):
            raise InputError(
                f"previous_chunk: expected a tensor (B, H', A) or (H', A), received {type(actions).__name__}"
            )
        if actions.ndim not in (2, 3) or actions.shape[-2] == 0:
            raise InputError(
                f"previous_chunk: expected a tensor (B, H', A) or (H', A) with H' >= 1, received shape "
                f"{tuple(actions.shape)}"
            )
        check_finite_float("previous_chunk", actions)
        delay = self.inference_delay
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise InputError(f"inference_delay: expected an int >= 0, received {delay!r}")
        if delay > actions.shape[-2]:
            raise InputError(
                f"inference_delay: expected at most the previous chunk's {actions.shape[-2]} steps (the "
                f"frozen actions must be known), received {delay}"
            )

    @property
    def steps(self) -> int:
        """``H'``, steps the previous chunk covers."""
        return self.actions.shape[-2]

    def check(self, batch: int, horizon: int, action_dim: int) -> None:
        """Raise :class:`~f1.errors.InputError` unless the actions fit ``batch`` chunks of ``horizon``
        steps of ``action_dim`` raw actions."""
        shape = tuple(self.actions.shape)
        fits = shape[-1] == action_dim and shape[-2] <= horizon and (len(shape) == 2 or shape[0] == batch)
        if not fits:
            raise InputError(
                f"previous_chunk: expected shape ({batch}, H', {action_dim}) or (H', {action_dim}) with "
                f"H' <= {horizon}, received {shape}"
            )
        if self.inference_delay >= horizon:
            delay = self.inference_delay
            raise InputError(
                f"inference_delay: expected less than the chunk's {horizon} steps, received {delay}"
            )

    def guidance(
        self, embodiment: Embodiment, action: ActionConfig, *, batch: int, device: torch.device
    ) -> RealTimeChunking:
        """The flow's guidance: the actions normalized by ``embodiment``, padded to ``action.chunk_size``
        steps, with the ``action.rtc`` settings; the weights end where the previous chunk does (or earlier,
        with a larger ``action.rtc.execution_horizon``)."""
        horizon = action.chunk_size
        self.check(batch, horizon, embodiment.action_dim)
        normalized = embodiment.normalize_action(self.actions.to(device=device, dtype=torch.float32))
        if normalized.ndim == 2:
            normalized = normalized.expand(batch, -1, -1)
        padding = normalized.new_zeros(batch, horizon - self.steps, embodiment.action_dim)
        target = torch.cat([normalized, padding], dim=1)
        covered = horizon - self.steps
        settings = action.rtc
        execution_horizon = (
            covered if settings.execution_horizon is None else max(covered, settings.execution_horizon)
        )
        execution_horizon = min(execution_horizon, horizon - self.inference_delay)
        return RealTimeChunking(
            target,
            inference_delay=self.inference_delay,
            execution_horizon=execution_horizon,
            max_guidance=settings.max_guidance,
            schedule=settings.schedule,  # type: ignore[arg-type]
        )
