"""``FlowMatchingHead``: encoder + standalone backbone + decoder, with ``loss`` and ``sample``.

This is the complete head for users without a backbone of their own; with one (a MoT action expert), use
:class:`~flowmatch.ActionEncoder` / :class:`~flowmatch.ActionDecoder` around it and the same functions
(:func:`~flowmatch.interpolate`, :func:`~flowmatch.flow_matching_loss`, :func:`~flowmatch.sample`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from flowmatch._validation import (
    require_finite,
    require_finite_number,
    require_floating,
    require_generator,
    require_shape,
)
from flowmatch.action_tokens import ActionDecoder, ActionEncoder, StateEncoder
from flowmatch.masked_loss import flow_matching_loss, valid_entry_mask
from flowmatch.ode_sampling import SampleResult, check_sample_options, gaussian_noise, sample
from flowmatch.ode_solvers import FixedStepSolver
from flowmatch.probability_path import VelocityFn, interpolate, target_velocity
from flowmatch.realtime_chunking import RealTimeChunking
from flowmatch.standalone_backbone import BackboneConfig, TransformerBackbone
from flowmatch.time_sampling import make_time_sampler

TimeSamplerName = Literal["uniform", "beta", "logit_normal"]


@dataclass(frozen=True)
class FlowMatchingHeadConfig:
    """Shape and training choices of :class:`FlowMatchingHead`.

    Attributes:
        action_dim: ``D``, action dimensions per step (padded to the largest robot's).
        horizon: ``H``, steps per action chunk.
        context_dim: ``C``, feature size of the conditioning vector ``(B, C)`` or tokens ``(B, N, C)``.
        state_dim: ``S`` for an optional state token, or None for no state token.
        width: token width ``w``.
        depth: backbone blocks.
        heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``width``.
        time_sampler: training time distribution: ``"beta"`` (pi0's), ``"uniform"`` or ``"logit_normal"``.
        time_min_period: shortest period of the sinusoidal time embedding (pi0: 4e-3). A longer one gives
            a velocity field smoother in ``tau``, which adaptive solvers integrate with fewer evaluations.
        time_max_period: longest period of the sinusoidal time embedding (pi0: 4.0).
    """

    action_dim: int
    horizon: int
    context_dim: int
    state_dim: int | None = None
    width: int = 128
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    time_sampler: TimeSamplerName = "beta"
    time_min_period: float = 4e-3
    time_max_period: float = 4.0

    def __post_init__(self) -> None:
        for name in ("action_dim", "horizon", "context_dim", "width", "depth", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, received {value!r}")
        if self.state_dim is not None and (
            isinstance(self.state_dim, bool) or not isinstance(self.state_dim, int) or self.state_dim <= 0
        ):
            raise ValueError(f"state_dim must be a positive int or None, received {self.state_dim!r}")
        if self.width % 2:
            raise ValueError(f"width must be even, received {self.width}")
        if self.time_sampler not in ("uniform", "beta", "logit_normal"):
            raise ValueError(
                f"time_sampler must be 'uniform', 'beta' or 'logit_normal', received {self.time_sampler!r}"
            )
        require_finite_number("time_min_period", self.time_min_period)
        require_finite_number("time_max_period", self.time_max_period)
        if not 0 < self.time_min_period < self.time_max_period:
            raise ValueError(
                "need 0 < time_min_period < time_max_period, "
                f"received {self.time_min_period} and {self.time_max_period}"
            )
        self.backbone_config()  # validates heads/width/mlp_ratio once, here

    def backbone_config(self) -> BackboneConfig:
        """The :class:`BackboneConfig` this head builds (state token + chunk as query tokens)."""
        return BackboneConfig(
            width=self.width,
            context_dim=self.context_dim,
            depth=self.depth,
            heads=self.heads,
            mlp_ratio=self.mlp_ratio,
            max_query_tokens=self.horizon + (1 if self.state_dim is not None else 0),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON/YAML."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlowMatchingHeadConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``KeyError`` naming them."""
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping of config keys, received {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise KeyError(
                f"unknown FlowMatchingHeadConfig keys {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**data)


class FlowMatchingHead(nn.Module):
    """Flow-matching policy head: context (+ state) -> distribution over action chunks ``(B, H, D)``.

    :meth:`loss`, :meth:`sample` and :meth:`velocity_fn` check their tensors once, NaN/inf included, before
    they draw from a generator; :meth:`velocity` checks only types and shapes, because a sampler calls it
    at every step (a NaN check there would synchronize the device per step).
    """

    def __init__(self, config: FlowMatchingHeadConfig):
        super().__init__()
        if not isinstance(config, FlowMatchingHeadConfig):
            raise TypeError(f"config must be a FlowMatchingHeadConfig, received {type(config).__name__}")
        self.config = config
        self.action_encoder = ActionEncoder(
            config.action_dim,
            config.width,
            min_period=config.time_min_period,
            max_period=config.time_max_period,
        )
        self.state_encoder = StateEncoder(config.state_dim, config.width) if config.state_dim else None
        self.backbone = TransformerBackbone(config.backbone_config())
        self.action_decoder = ActionDecoder(config.width, config.action_dim)
        self.time_sampler = make_time_sampler(config.time_sampler)

    def velocity(
        self,
        noisy_actions: torch.Tensor,
        tau: torch.Tensor,
        context: torch.Tensor,
        *,
        state: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        step_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted velocity ``(B, H, D)`` at ``noisy_actions`` (B, H, D) and times ``tau`` (B,) or scalar.

        ``context`` is ``(B, C)`` or ``(B, N, C)`` with optional bool ``context_mask`` (B, N); ``state`` is
        ``(B, S)``, required exactly when the config has ``state_dim``. Chunk steps that ``step_mask`` (B, H)
        marks False are hidden from the other steps' attention.
        """
        cfg = self.config
        require_shape("noisy_actions", noisy_actions, (None, cfg.horizon, cfg.action_dim))
        tokens = self.action_encoder(noisy_actions, tau)
        query_mask = step_mask
        if self.state_encoder is not None:
            if state is None:
                raise ValueError(f"state of shape (B, {cfg.state_dim}) is required: the config has state_dim")
            require_floating("state", state)
            require_shape("state", state, (noisy_actions.shape[0], cfg.state_dim))
            tokens = torch.cat([self.state_encoder(state), tokens], dim=1)
            if step_mask is not None:
                require_shape("step_mask", step_mask, (noisy_actions.shape[0], cfg.horizon))
                state_valid = torch.ones_like(step_mask[:, :1])
                query_mask = torch.cat([state_valid, step_mask], dim=1)
        elif state is not None:
            raise ValueError("state was given but the config has state_dim=None")
        tokens = self.backbone(tokens, context, context_mask=context_mask, query_mask=query_mask)
        return self.action_decoder(tokens[:, -cfg.horizon :])

    def velocity_fn(
        self,
        context: torch.Tensor,
        *,
        state: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> VelocityFn:
        """The field ``v(x, tau)`` for fixed conditioning, ready for :func:`flowmatch.sample`.

        The conditioning is checked here, once (shapes, dtype, device, NaN/inf), not at every step.
        """
        self._check_conditioning(context, None, state, context_mask)

        def velocity(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
            return self.velocity(x, tau, context, state=state, context_mask=context_mask)

        return velocity

    def loss(
        self,
        actions: torch.Tensor,
        context: torch.Tensor,
        *,
        state: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        action_dim_mask: torch.Tensor | None = None,
        step_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Masked flow-matching loss (scalar) on a batch of demonstration chunks ``actions`` (B, H, D).

        Draws ``tau`` from the configured time sampler and ``eps ~ N(0, I)`` from ``generator``, forms
        ``a_tau = (1 - tau) eps + tau a`` and regresses the velocity on ``a - eps`` over valid entries only
        (``action_dim_mask`` (D,) or (B, D), ``step_mask`` (B, H); see :func:`flowmatch.flow_matching_loss`).
        Padded action entries are zeroed before they are noised and padded steps are hidden from attention,
        so whatever values padding holds, the loss is the same; NaN/inf in a real entry of ``actions``, in
        ``context`` or in ``state`` is a ``ValueError`` raised before ``generator`` is drawn from.
        """
        cfg = self.config
        require_floating("actions", actions)
        require_shape("actions", actions, (None, cfg.horizon, cfg.action_dim))
        self._require_like_parameters("actions", actions)
        batch = actions.shape[0]
        valid = valid_entry_mask(
            actions.shape, action_dim_mask=action_dim_mask, step_mask=step_mask, device=actions.device
        )
        require_finite("actions", actions, where=valid)
        self._check_conditioning(context, batch, state, context_mask)
        require_generator("generator", generator)
        actions = torch.where(valid, actions, 0.0)
        tau = self.time_sampler(batch, generator=generator, device=actions.device, dtype=actions.dtype)
        noise = gaussian_noise(actions.shape, generator=generator, dtype=actions.dtype, device=actions.device)
        noisy_actions = interpolate(noise, actions, tau)
        predicted = self.velocity(
            noisy_actions, tau, context, state=state, context_mask=context_mask, step_mask=step_mask
        )
        return flow_matching_loss(
            predicted,
            target_velocity(noise, actions),
            action_dim_mask=action_dim_mask,
            step_mask=step_mask,
        )

    @torch.no_grad()
    def sample(
        self,
        context: torch.Tensor,
        *,
        state: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        solver: str | FixedStepSolver = "euler",
        steps: int | None = None,
        time_grid: torch.Tensor | None = None,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        guidance: RealTimeChunking | None = None,
    ) -> SampleResult:
        """Draw action chunks ``(B, H, D)`` for a batch of contexts by integrating from noise to data.

        ``noise`` (B, H, D) is drawn from ``generator`` unless given. The defaults are pi0's 10 Euler steps;
        see :func:`flowmatch.sample` for ``solver``, ``steps``, ``time_grid``, ``rtol``, ``atol`` and
        ``guidance`` (real-time chunking toward a previous chunk, in this head's action space). Every
        argument is checked (NaN/inf in ``context``, ``state``, ``noise``, ``time_grid`` and the guidance
        target included) before ``generator`` is drawn from.
        """
        cfg = self.config
        field = self.velocity_fn(context, state=state, context_mask=context_mask)
        batch = context.shape[0]
        check_sample_options(
            solver=solver, steps=steps, time_grid=time_grid, rtol=rtol, atol=atol, guidance=guidance
        )
        require_generator("generator", generator)
        param = next(self.parameters())
        if guidance is not None:
            guidance.check_against((batch, cfg.horizon, cfg.action_dim), param.device)
        if noise is not None:
            require_floating("noise", noise)
            require_shape("noise", noise, (batch, cfg.horizon, cfg.action_dim))
            self._require_like_parameters("noise", noise)
        else:
            noise = gaussian_noise(
                (batch, cfg.horizon, cfg.action_dim),
                generator=generator,
                dtype=param.dtype,
                device=param.device,
            )
        return sample(
            field,
            noise,
            solver=solver,
            steps=steps,
            time_grid=time_grid,
            rtol=rtol,
            atol=atol,
            guidance=guidance,
        )

    def _check_conditioning(
        self,
        context: torch.Tensor,
        batch: int | None,
        state: torch.Tensor | None,
        context_mask: torch.Tensor | None,
    ) -> None:
        """Check what conditions a call: ``context`` (batch, C) or (batch, N, C) (any batch for None), its
        mask and ``state``."""
        cfg = self.config
        self.backbone.check_context(context, batch, context_mask=context_mask)
        batch = context.shape[0]
        self._require_like_parameters("context", context)
        require_finite("context", context)
        if self.state_encoder is None:
            if state is not None:
                raise ValueError("state was given but the config has state_dim=None")
            return
        if state is None:
            raise ValueError(f"state of shape (B, {cfg.state_dim}) is required: the config has state_dim")
        require_floating("state", state)
        require_shape("state", state, (batch, cfg.state_dim))
        self._require_like_parameters("state", state)
        require_finite("state", state)

    def _require_like_parameters(self, name: str, value: torch.Tensor) -> None:
        """A tensor the layers consume must be on the parameters' device with their dtype (under autocast,
        any floating dtype: autocast casts it)."""
        param = next(self.parameters())
        if value.device != param.device:
            raise ValueError(f"{name} must be on the head's device {param.device}, received {value.device}")
        if value.dtype != param.dtype and not torch.is_autocast_enabled(param.device.type):
            raise TypeError(f"{name} must have the head's dtype {param.dtype}, received {value.dtype}")
