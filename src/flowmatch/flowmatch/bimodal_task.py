"""A synthetic action task whose chunks are bimodal given the context, with its exact distribution.

Regression to the mean fails on it by construction: the two modes are mirror images around their mean, so
an MSE regressor predicts a chunk that no demonstration ever contains. Used by the tests, the benchmark
and the docs to show what a flow-matching head learns that regression cannot.

Given a context ``c`` (C,) drawn uniformly from [-1, 1]^C, a chunk (H, D) is

    a = base(c) + m * offset(c) + noise_std * z,      m = +-1 with probability 1/2, z ~ N(0, I),

where ``base`` is a smooth context-dependent trajectory and ``offset`` a context-dependent direction whose
root-mean-square over the chunk is ``mode_offset``; the two mode centres are ``base +- offset``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from flowmatch._validation import (
    require_finite,
    require_finite_number,
    require_floating,
    require_generator,
    require_positive_int,
    require_shape,
)
from flowmatch.flow_head import FlowMatchingHead, FlowMatchingHeadConfig


@dataclass(frozen=True)
class BimodalChunkTask:
    """The task's shape and its two parameters of difficulty.

    Attributes:
        horizon: ``H``, chunk steps.
        action_dim: ``D``, action dimensions.
        context_dim: ``C``, context features.
        mode_offset: RMS distance (over the chunk's entries) from each mode centre to their mean.
        noise_std: standard deviation of the Gaussian spread around each mode centre.
    """

    horizon: int = 4
    action_dim: int = 2
    context_dim: int = 2
    mode_offset: float = 0.5
    noise_std: float = 0.05

    def __post_init__(self) -> None:
        for name in ("horizon", "action_dim", "context_dim"):
            require_positive_int(name, getattr(self, name))
        require_finite_number("mode_offset", self.mode_offset)
        require_finite_number("noise_std", self.noise_std)
        if self.mode_offset <= 0:
            raise ValueError(f"mode_offset must be > 0, received {self.mode_offset}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, received {self.noise_std}")

    def sample_context(self, batch_size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Contexts ``(B, C)`` uniform in [-1, 1]."""
        require_positive_int("batch_size", batch_size)
        require_generator("generator", generator)
        return 2 * torch.rand(batch_size, self.context_dim, generator=generator) - 1

    def mode_centers(self, context: torch.Tensor) -> torch.Tensor:
        """Mode centres ``(B, 2, H, D)`` for contexts ``(B, C)``; index 0 is ``m = +1``, 1 is ``m = -1``."""
        require_floating("context", context)
        require_shape("context", context, (None, self.context_dim))
        require_finite("context", context)
        steps = torch.arange(1, self.horizon + 1, dtype=context.dtype) / self.horizon  # (H,)
        dims = torch.arange(self.action_dim, dtype=context.dtype)  # (D,)
        first = context[:, 0]
        mean_feature = context.mean(dim=1)
        # base: a trajectory that drifts with the context along the chunk.
        base = 0.5 * torch.sin(math.pi / 2 * (first[:, None, None] + dims[None, None, :] / self.action_dim))
        base = base * steps[None, :, None] + 0.3 * mean_feature[:, None, None]
        # offset: a context-dependent direction over the action dimensions, the same at every step.
        angle = math.pi / 2 * first[:, None] + math.pi * dims[None, :] / max(self.action_dim, 2)
        direction = torch.cos(angle) + 0.5  # (B, D), never all zero
        direction = direction / direction.pow(2).mean(dim=1, keepdim=True).sqrt()
        offset = self.mode_offset * direction[:, None, :].expand(-1, self.horizon, -1)
        return torch.stack([base + offset, base - offset], dim=1)

    def sample_actions(
        self, context: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one chunk per context: ``(actions (B, H, D), mode (B,) in {0, 1})``."""
        require_generator("generator", generator)
        centers = self.mode_centers(context)
        batch = context.shape[0]
        mode = (torch.rand(batch, generator=generator) < 0.5).long()
        chosen = centers[torch.arange(batch), mode]
        spread = torch.randn(chosen.shape, generator=generator, dtype=chosen.dtype)
        return chosen + self.noise_std * spread, mode

    def sample(
        self, batch_size: int, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch: ``(context (B, C), actions (B, H, D))``."""
        context = self.sample_context(batch_size, generator=generator)
        actions, _ = self.sample_actions(context, generator=generator)
        return context, actions

    def nearest_mode(self, actions: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For chunks ``(B, H, D)`` and contexts ``(B, C)``: ``(nearest mode (B,), RMS distance (B,))``."""
        require_floating("context", context)
        require_shape("context", context, (None, self.context_dim))
        require_floating("actions", actions)
        require_shape("actions", actions, (context.shape[0], self.horizon, self.action_dim))
        require_finite("actions", actions)
        centers = self.mode_centers(context)
        rms = (actions[:, None] - centers).pow(2).mean(dim=(2, 3)).sqrt()  # (B, 2)
        distance, mode = rms.min(dim=1)
        return mode, distance


class MSERegressor(nn.Module):
    """The regression baseline: the same modules as a :class:`FlowMatchingHead`, trained with MSE.

    It predicts a chunk as ``head.velocity(0, tau=0, context)``, so it has exactly the parameters of a
    flow head of the same config, and nothing but the training objective differs.
    """

    def __init__(self, config: FlowMatchingHeadConfig):
        super().__init__()
        self.network = FlowMatchingHead(config)
        self.config = config

    def predict(self, context: torch.Tensor, *, state: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted chunk ``(B, H, D)`` for contexts ``(B, C)``; NaN/inf in ``context`` is refused."""
        self.network.velocity_fn(context, state=state)  # checks the conditioning once
        batch = context.shape[0]
        zeros = torch.zeros(batch, self.config.horizon, self.config.action_dim, dtype=context.dtype)
        tau = torch.zeros(batch, dtype=context.dtype)
        return self.network.velocity(zeros, tau, context, state=state)

    def loss(
        self, actions: torch.Tensor, context: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Mean squared error of :meth:`predict` (``generator`` is unused; it keeps the head's signature)."""
        del generator
        cfg = self.config
        require_floating("actions", actions)
        require_shape("actions", actions, (None, cfg.horizon, cfg.action_dim))
        require_finite("actions", actions)
        predicted = self.predict(context)
        require_shape("actions", actions, tuple(predicted.shape))
        return (predicted - actions).pow(2).mean()


def fit(
    model: FlowMatchingHead | MSERegressor,
    task: BimodalChunkTask,
    *,
    steps: int,
    batch_size: int = 128,
    learning_rate: float = 5e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``model`` on fresh batches of ``task`` with AdamW and a one-cycle schedule; returns the losses.

    Data, times and noise all come from one generator seeded with ``seed``, so a run is reproducible.
    Every argument is checked before the model is touched.
    """
    if not isinstance(model, (FlowMatchingHead, MSERegressor)):
        raise TypeError(f"model must be a FlowMatchingHead or MSERegressor, received {type(model).__name__}")
    if not isinstance(task, BimodalChunkTask):
        raise TypeError(f"task must be a BimodalChunkTask, received {type(task).__name__}")
    cfg = model.config
    if (cfg.horizon, cfg.action_dim, cfg.context_dim) != (task.horizon, task.action_dim, task.context_dim):
        raise ValueError(
            "task must have the model's (horizon, action_dim, context_dim) "
            f"{(cfg.horizon, cfg.action_dim, cfg.context_dim)}, "
            f"received {(task.horizon, task.action_dim, task.context_dim)}"
        )
    if cfg.state_dim is not None:
        raise ValueError(f"model must have state_dim=None (the task has no state), received {cfg.state_dim}")
    require_positive_int("steps", steps)
    require_positive_int("batch_size", batch_size)
    require_finite_number("learning_rate", learning_rate)
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, received {learning_rate}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, received {type(seed).__name__}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1
    )
    model.train()
    losses = []
    for _ in range(steps):
        context, actions = task.sample(batch_size, generator=generator)
        loss = model.loss(actions, context, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses
