"""The flow-matching regression loss, masked so that padding never counts.

Robots differ in action dimension and demonstrations end before the chunk does, so action chunks are padded
to ``(B, H, D)``. The published F1 averages the squared error over padding as well; here padded action
dimensions and padded chunk steps are excluded from both the sum and the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch

from flowmatch._validation import require_finite, require_floating, require_ndim, require_tensor

Reduction = Literal["mean", "per_sample", "none"]


def valid_entry_mask(
    shape: torch.Size | tuple[int, int, int],
    *,
    action_dim_mask: torch.Tensor | None = None,
    step_mask: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean mask ``(B, H, D)`` of the entries that count, from per-dimension and per-step masks.

    Args:
        shape: ``(B, H, D)``, the shape of the action chunk.
        action_dim_mask: bool ``(D,)`` (shared) or ``(B, D)`` (per sample); True marks a real dimension.
        step_mask: bool ``(B, H)``; True marks a real chunk step.
        device: device of the result.
    """
    batch, horizon, dim = _chunk_shape(shape)
    valid = torch.ones(batch, horizon, dim, dtype=torch.bool, device=device)
    if action_dim_mask is not None:
        require_tensor("action_dim_mask", action_dim_mask)
        if action_dim_mask.dtype != torch.bool:
            raise TypeError(f"action_dim_mask must have dtype torch.bool, received {action_dim_mask.dtype}")
        if action_dim_mask.shape == (dim,):
            valid = valid & action_dim_mask.to(valid.device)[None, None, :]
        elif action_dim_mask.shape == (batch, dim):
            valid = valid & action_dim_mask.to(valid.device)[:, None, :]
        else:
            raise ValueError(
                f"action_dim_mask must have shape ({dim},) or ({batch}, {dim}), "
                f"received {tuple(action_dim_mask.shape)}"
            )
    if step_mask is not None:
        require_tensor("step_mask", step_mask)
        if step_mask.dtype != torch.bool:
            raise TypeError(f"step_mask must have dtype torch.bool, received {step_mask.dtype}")
        if step_mask.shape != (batch, horizon):
            raise ValueError(
                f"step_mask must have shape ({batch}, {horizon}), received {tuple(step_mask.shape)}"
            )
        valid = valid & step_mask.to(valid.device)[:, :, None]
    return valid


def _chunk_shape(shape: object) -> tuple[int, int, int]:
    if (
        not isinstance(shape, Sequence)
        or len(shape) != 3
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise ValueError(f"shape must be (B, H, D), three ints >= 0, received {shape!r}")
    return shape[0], shape[1], shape[2]


def flow_matching_loss(
    predicted_velocity: torch.Tensor,
    target_velocity: torch.Tensor,
    *,
    action_dim_mask: torch.Tensor | None = None,
    step_mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Squared error between predicted and target velocity over valid entries only.

    Args:
        predicted_velocity: ``(B, H, D)`` model output.
        target_velocity: ``(B, H, D)``, usually :func:`flowmatch.target_velocity` ``= actions - noise``.
        action_dim_mask: bool ``(D,)`` or ``(B, D)``; padded action dimensions are False.
        step_mask: bool ``(B, H)``; padded chunk steps are False.
        reduction: ``"mean"``: sum of squared errors over valid entries divided by their number (a scalar;
            0 when nothing is valid); ``"per_sample"``: the same per batch element, ``(B,)``;
            ``"none"``: ``(B, H, D)`` squared errors with padded entries set to 0.

    Padded entries contribute neither to the numerator nor to the count, so their values (even NaN) never
    change the loss or its gradient. NaN/inf in a valid entry of ``target_velocity`` (built from the data)
    is refused with a ``ValueError``; ``predicted_velocity`` is not checked for them: it is a model's
    output, and a non-finite loss is how a trainer (or a ``GradScaler``) sees a diverging step.
    """
    if reduction not in get_args(Reduction):
        raise ValueError(f"reduction must be one of 'mean', 'per_sample', 'none', received {reduction!r}")
    require_floating("predicted_velocity", predicted_velocity)
    require_floating("target_velocity", target_velocity)
    require_ndim("predicted_velocity", predicted_velocity, (3,), "(B, H, D)")
    if target_velocity.shape != predicted_velocity.shape:
        raise ValueError(
            f"target_velocity must have the shape of predicted_velocity {tuple(predicted_velocity.shape)}, "
            f"received {tuple(target_velocity.shape)}"
        )
    valid = valid_entry_mask(
        predicted_velocity.shape,
        action_dim_mask=action_dim_mask,
        step_mask=step_mask,
        device=predicted_velocity.device,
    )
    require_finite("target_velocity", target_velocity, where=valid.to(target_velocity.device))
    # Select before squaring, and with torch.where rather than a multiplication by the mask: NaN or inf in
    # padding then reaches neither the value nor the gradient (0 * nan would be nan in both).
    squared = torch.where(valid, predicted_velocity - target_velocity, 0.0) ** 2
    if reduction == "none":
        return squared
    if reduction == "per_sample":
        counts = valid.sum(dim=(1, 2)).clamp_min(1)
        return squared.sum(dim=(1, 2)) / counts
    return squared.sum() / valid.sum().clamp_min(1)
