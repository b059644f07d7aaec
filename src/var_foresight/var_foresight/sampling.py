"""Sampling a token pyramid one scale at a time from any "logits of the next scale" callable.

The loop is independent of the network: a `NextScaleLogitsFn` receives the scale index and that scale's
input tokens and returns its logits, keeping whatever cache it needs between calls. The standalone
`NextScalePredictor` provides one; a larger MoT (F1's generation expert) provides its own.

Per scale: logits -> classifier-free guidance (when the callable returns conditional and unconditional
rows) -> temperature -> top-k -> top-p -> multinomial with the caller's generator -> the quantizer adds the
scale to ``f_hat`` and makes the next scale's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from var_foresight.quantizer import MultiScaleResidualQuantizer


class NextScaleLogitsFn(Protocol):
    """``(scale k, inputs (B', l_k, Cz) or None for k = 0) -> logits (B', l_k, V)``.

    With guidance ``B' = 2B``: rows ``[:B]`` conditional, ``[B:]`` unconditional (inputs are duplicated by
    the sampler). Each call continues the previous one (scale ``k`` follows scale ``k - 1``).
    """

    def __call__(self, scale: int, inputs: torch.Tensor | None) -> torch.Tensor: ...


@dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 means greedy; top_k 0 and top_p 1 disable them; cfg 0 disables guidance.

    cfg_ramp ``"linear"`` uses VAR's ``t_k = cfg * k / (S - 1)`` (S: scales of the full schedule),
    ``"constant"`` uses ``t_k = cfg``; guided logits are ``(1 + t) * cond - t * uncond``.
    num_scales: how many scales to sample (None: all).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    cfg: float = 0.0
    cfg_ramp: Literal["linear", "constant"] = "linear"
    num_scales: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature: expected >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k: expected >= 0 (0 disables), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: expected a value in (0, 1], got {self.top_p}")
        if self.cfg < 0:
            raise ValueError(f"cfg: expected >= 0, got {self.cfg}")
        if self.cfg_ramp not in ("linear", "constant"):
            raise ValueError(f"cfg_ramp: expected 'linear' or 'constant', got {self.cfg_ramp!r}")
        if self.num_scales is not None and self.num_scales < 1:
            raise ValueError(f"num_scales: expected >= 1 or None, got {self.num_scales}")

    @property
    def guided(self) -> bool:
        return self.cfg > 0


def guidance_weight(scale: int, num_scales_total: int, cfg: float, ramp: str = "linear") -> float:
    """``t_k`` of scale ``scale``; ``num_scales_total`` is the length of the full schedule."""
    if ramp == "constant" or num_scales_total == 1:
        return cfg
    return cfg * scale / (num_scales_total - 1)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Keep the ``top_k`` largest logits, then the smallest set of them whose probability reaches
    ``top_p``; the others become ``-inf``. ``(..., V) -> (..., V)``; the most likely token always stays."""
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        drop_sorted = mass_before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_tokens(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(B, n, V)`` logits -> ``(B, n)`` int64 tokens (argmax when ``temperature == 0``)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    filtered = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = filtered.softmax(dim=-1).flatten(0, -2)
    device = generator.device if generator is not None else probs.device
    tokens = torch.multinomial(probs.to(device), 1, generator=generator).to(logits.device)
    return tokens.view(logits.shape[:-1])


@dataclass
class SampledScales:
    """indices: per-scale ``(B, h_k * w_k)`` int64; f_hat: ``(B, Cz, H, W)`` after the sampled scales."""

    indices: list[torch.Tensor]
    f_hat: torch.Tensor


@torch.no_grad()
def sample_next_scales(
    logits_fn: NextScaleLogitsFn,
    quantizer: MultiScaleResidualQuantizer,
    batch: int,
    config: SamplingConfig | None = None,
    generator: torch.Generator | None = None,
) -> SampledScales:
    """Sample the first ``config.num_scales`` scales one at a time (see the module docstring)."""
    config = config or SamplingConfig()
    total = quantizer.schedule.num_scales
    num_scales = config.num_scales or total
    if num_scales > total:
        raise ValueError(f"num_scales: expected <= {total} (the schedule's scales), got {num_scales}")
    f_hat = quantizer.empty_fhat(batch)
    inputs: torch.Tensor | None = None
    indices = []
    for scale in range(num_scales):
        step_inputs = inputs if inputs is None or not config.guided else torch.cat([inputs, inputs])
        logits = logits_fn(scale, step_inputs)
        rows = 2 * batch if config.guided else batch
        expected = (rows, quantizer.schedule.tokens_per_scale[scale], quantizer.vocab_size)
        if tuple(logits.shape) != expected:
            raise ValueError(
                f"logits_fn: expected logits of shape {expected} at scale {scale}, got {tuple(logits.shape)}"
            )
        if config.guided:
            t = guidance_weight(scale, total, config.cfg, config.cfg_ramp)
            logits = (1 + t) * logits[:batch] - t * logits[batch:]
        tokens = sample_tokens(logits, config.temperature, config.top_k, config.top_p, generator)
        indices.append(tokens)
        f_hat, inputs = quantizer.next_scale_input(scale, f_hat, tokens)
    return SampledScales(indices=indices, f_hat=f_hat)
