"""Real-time chunking (Black, Galliker and Levine 2025): training-free guided inpainting of an action chunk.

While a robot executes chunk ``k``, the next chunk is sampled from a newer observation. Its first ``d``
actions (``d``: the inference delay in control steps) execute before it is ready, so they are frozen to
what chunk ``k`` will execute; the overlap after them is steered softly toward chunk ``k``'s remaining
actions, with weights that decay to zero where chunk ``k`` runs out (``H - s``, ``s``: the execution
horizon, the steps executed between the starts of two inferences). The steering is pseudo-inverse
guidance (PiGDM) of the flow: at state ``A`` and time ``tau`` (this library's convention, 0 noise, 1 data)

    A1_hat = A + (1 - tau) v(A, tau)                       (the field's guess of the final chunk)
    g      = [(Y - A1_hat) * W]^T dA1_hat/dA               (a vector-Jacobian product, by autograd)
    v_rtc  = v + min(beta, (1 - tau) / (tau r2(tau))) g,   r2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2)

with ``Y`` the target chunk and ``W`` the per-step weights of :func:`rtc_weights`. Nothing is trained:
any velocity field that is differentiable in its input works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch

from flowmatch._validation import (
    require_finite,
    require_finite_number,
    require_floating,
    require_name,
    require_tensor,
)
from flowmatch.probability_path import VelocityFn

__all__ = ["RTC_SCHEDULES", "RTCSchedule", "RealTimeChunking", "guided_velocity_fn", "rtc_weights"]

RTCSchedule = Literal["exp", "linear", "ones", "zeros"]
RTC_SCHEDULES: tuple[str, ...] = get_args(RTCSchedule)
"""Weight schedules of the soft-masked overlap ``[d, H - s)``: ``"exp"`` (the paper's), ``"linear"``,
``"ones"`` (hard mask over the whole overlap) and ``"zeros"`` (only the frozen prefix is guided)."""


def _require_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, received {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, received {value}")
    return value


def _check_layout(horizon: int, inference_delay: int, execution_horizon: int) -> None:
    if isinstance(horizon, bool) or not isinstance(horizon, int):
        raise TypeError(f"horizon must be an int, received {type(horizon).__name__}")
    if horizon <= 0:
        raise ValueError(f"horizon must be > 0, received {horizon}")
    _require_count("inference_delay", inference_delay)
    _require_count("execution_horizon", execution_horizon)
    if inference_delay >= horizon:
        raise ValueError(
            f"inference_delay must be < the chunk's horizon {horizon}, received {inference_delay}"
        )
    if inference_delay + execution_horizon > horizon:
        raise ValueError(
            f"execution_horizon must be <= horizon - inference_delay = {horizon - inference_delay} (the "
            f"previous chunk covers steps [0, horizon - execution_horizon), which must hold the "
            f"{inference_delay} frozen ones), received {execution_horizon}"
        )


def rtc_weights(
    horizon: int,
    inference_delay: int,
    execution_horizon: int,
    schedule: RTCSchedule = "exp",
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Per-step guidance weights ``W`` ``(H,)`` of real-time chunking, in [0, 1] and non-increasing.

    ``W_i = 1`` for ``i < d`` (frozen: these actions execute while the chunk is computed); for
    ``d <= i < H - s`` the schedule applied to ``c_i = (H - s - i) / (H - s - d + 1)``: ``"exp"``
    ``c_i (e^{c_i} - 1) / (e - 1)``, ``"linear"`` ``c_i``, ``"ones"`` 1, ``"zeros"`` 0; ``W_i = 0`` for
    ``i >= H - s`` (the previous chunk has no action there).

    Args:
        horizon: ``H``, steps per chunk.
        inference_delay: ``d``, ``0 <= d < H``.
        execution_horizon: ``s``, ``0 <= s <= H - d``.
        schedule: one of :data:`RTC_SCHEDULES`.
        dtype, device: of the result.
    """
    _check_layout(horizon, inference_delay, execution_horizon)
    require_name("schedule", schedule, RTC_SCHEDULES, "real-time chunking schedule")
    d, end = inference_delay, horizon - execution_horizon
    i = torch.arange(horizon, dtype=torch.float64)
    c = ((end - i) / (end - d + 1)).clamp(0.0, 1.0)
    soft = {
        "exp": c * torch.expm1(c) / torch.expm1(torch.ones((), dtype=torch.float64)),
        "linear": c,
        "ones": torch.ones_like(c),
        "zeros": torch.zeros_like(c),
    }[schedule]
    weights = torch.where(i < d, 1.0, torch.where(i < end, soft, 0.0))
    return weights.to(device=device, dtype=dtype)


@dataclass(frozen=True, eq=False)
class RealTimeChunking:
    """Guide :func:`flowmatch.sample` toward a previous chunk's remaining actions (real-time chunking).

    Attributes:
        target: ``Y``, ``(B, H, D)`` or ``(H, D)`` (shared by the batch): the previous chunk's actions
            not yet executed, aligned so ``target[:, i]`` is what it planned for the new chunk's step
            ``i``, in the space the field samples (e.g. normalized actions); steps it does not cover
            are padding (give them zero weight with ``execution_horizon`` or ``valid``).
        inference_delay: ``d``, actions that execute while the chunk is computed (weight 1), ``0 <= d < H``.
        execution_horizon: ``s``, the guidance weight is 0 from step ``H - s``; ``0 <= s <= H - d``.
        max_guidance: ``beta >= 0``, the cap on the guidance weight (the paper's 5). 0 gives the plain
            sample. A cap above the largest weight the grid reaches (about ``steps`` for Euler) makes the
            guidance exact in the limit of many steps, and stiff: a learned field is safer capped.
        schedule: the overlap's decay (:data:`RTC_SCHEDULES`).
        valid: optional bool ``(H,)`` or ``(B, H)``: steps where ``target`` holds an action; the others
            get weight 0 (per-sample padding).

    Every field is checked here; :func:`flowmatch.sample` checks ``target`` against its noise.
    """

    target: torch.Tensor
    inference_delay: int
    execution_horizon: int
    max_guidance: float = 5.0
    schedule: RTCSchedule = "exp"
    valid: torch.Tensor | None = None

    def __post_init__(self) -> None:
        require_floating("target", self.target)
        if self.target.ndim not in (2, 3):
            shape = tuple(self.target.shape)
            raise ValueError(f"target must have shape (B, H, D) or (H, D), received {shape}")
        if 0 in self.target.shape:
            raise ValueError(f"target must not be empty, received shape {tuple(self.target.shape)}")
        _check_layout(self.horizon, self.inference_delay, self.execution_horizon)
        require_finite_number("max_guidance", self.max_guidance)
        if self.max_guidance < 0:
            raise ValueError(f"max_guidance must be >= 0, received {self.max_guidance}")
        require_name("schedule", self.schedule, RTC_SCHEDULES, "real-time chunking schedule")
        if self.valid is not None:
            require_tensor("valid", self.valid)
            if self.valid.dtype != torch.bool:
                raise TypeError(f"valid must be a bool tensor, received {self.valid.dtype}")
            batch = self.target.shape[0] if self.target.ndim == 3 else None
            shapes = [(self.horizon,)] + ([(batch, self.horizon)] if batch is not None else [])
            if self.valid.ndim == 2 and batch is None:
                shapes.append((self.valid.shape[0], self.horizon))
            if tuple(self.valid.shape) not in shapes:
                layout = f"({self.horizon},)" + (f" or ({batch}, {self.horizon})" if batch else " or (B, H)")
                raise ValueError(f"valid must have shape {layout}, received {tuple(self.valid.shape)}")
        require_finite("target", self.target)

    @property
    def horizon(self) -> int:
        """``H``, steps of the target chunk."""
        return self.target.shape[-2]

    def weights(self) -> torch.Tensor:
        """``W`` ``(H,)``, or ``(B, H)`` with ``valid`` ``(B, H)``, float32 on ``target``'s device."""
        weights = rtc_weights(
            self.horizon,
            self.inference_delay,
            self.execution_horizon,
            self.schedule,
            device=self.target.device,
        )
        if self.valid is not None:
            weights = weights * self.valid.to(device=weights.device, dtype=weights.dtype)
        return weights

    def check_against(self, shape: tuple[int, ...], device: torch.device) -> None:
        """Raise ``ValueError`` unless ``target`` (and ``valid``) fit a sample of ``shape`` ``(B, H, D)``
        on ``device`` (the noise's)."""
        if len(shape) != 3:
            raise ValueError(
                "guidance: real-time chunking samples chunks (B, H, D), received noise of shape "
                f"{tuple(shape)}"
            )
        batch, horizon, dim = shape
        if tuple(self.target.shape) not in [(horizon, dim), (batch, horizon, dim)]:
            raise ValueError(
                f"guidance.target must have shape ({horizon}, {dim}) or ({batch}, {horizon}, {dim}) to match "
                f"the noise, received {tuple(self.target.shape)}"
            )
        if self.valid is not None and self.valid.ndim == 2 and self.valid.shape[0] != batch:
            raise ValueError(
                f"guidance.valid must have shape ({horizon},) or ({batch}, {horizon}) to match the noise, "
                f"received {tuple(self.valid.shape)}"
            )
        if self.target.device != torch.device(device):
            raise ValueError(
                f"guidance.target must be on the noise's device {device}, received {self.target.device}"
            )


def guidance_weight(tau: torch.Tensor, max_guidance: float) -> torch.Tensor:
    """``min(beta, (1 - tau) / (tau r2))`` with ``r2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2)``, in ``tau``'s
    dtype: it equals ``(tau^2 + (1 - tau)^2) / (tau (1 - tau))``, which is unbounded at both ends, so
    ``tau = 0`` and ``tau = 1`` get ``beta``."""
    one_minus = 1 - tau
    denominator = tau * one_minus
    inside = denominator > 0
    ratio = (tau**2 + one_minus**2) / torch.where(inside, denominator, torch.ones_like(denominator))
    return torch.where(inside, ratio.clamp(max=max_guidance), torch.full_like(tau, max_guidance))


def guided_velocity_fn(velocity_fn: VelocityFn, guidance: RealTimeChunking, like: torch.Tensor) -> VelocityFn:
    """``velocity_fn`` with real-time-chunking guidance, for states shaped, typed and placed like ``like``
    ``(B, H, D)`` (check ``guidance`` with
    :meth:`RealTimeChunking.check_against` first).

    Each call evaluates ``velocity_fn`` once, under ``torch.enable_grad()`` on a detached copy of ``x``
    that requires grad (so it works inside ``torch.no_grad()``), back-propagates the weighted error to
    ``x`` only, and returns a detached velocity. ``velocity_fn`` must be differentiable in ``x``.
    """
    target = guidance.target.to(like.dtype)
    target = target if target.ndim == 3 else target.expand(like.shape)
    weights = guidance.weights().to(like.dtype)
    weights = weights[None, :, None] if weights.ndim == 1 else weights[:, :, None]
    beta = guidance.max_guidance

    def velocity(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            state = x.detach().requires_grad_(True)
            v = velocity_fn(state, tau)
            if not isinstance(v, torch.Tensor) or v.shape != x.shape:
                got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise ValueError(f"velocity_fn must return the shape of x {tuple(x.shape)}, returned {got}")
            remaining = (1 - tau).to(v.dtype).reshape(-1, 1, 1)
            final_guess = state + remaining * v
            error = (target - final_guess.detach()) * weights
            (correction,) = torch.autograd.grad(final_guess, state, grad_outputs=error)
        scale = guidance_weight(tau, beta).to(v.dtype).reshape(-1, 1, 1)
        return v.detach() + scale * correction

    return velocity
