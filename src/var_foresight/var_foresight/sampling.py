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
from var_foresight.validation import check_generator, check_int, check_number, check_tensor, type_name


class NextScaleLogitsFn(Protocol):
    """``(scale k, inputs (B', l_k, Cz) or None for k = 0) -> logits (B', l_k, V)``.

    With guidance ``B' = 2B``: rows ``[:B]`` conditional, ``[B:]`` unconditional (inputs are duplicated by
    the sampler). Each call continues the previous one (scale ``k`` follows scale ``k - 1``).
    """

    def __call__(self, scale: int, inputs: torch.Tensor | None) -> torch.Tensor: ...


def check_sampling_arguments(temperature: float, top_k: int, top_p: float) -> None:
    check_number("temperature", temperature, 0.0)
    check_int("top_k", top_k, 0)
    check_number("top_p", top_p, 0.0, 1.0, low_open=True)


def check_ramp(ramp: str) -> None:
    if ramp not in ("linear", "constant"):
        raise ValueError(f"cfg_ramp: expected 'linear' or 'constant', got {ramp!r}")


def check_logits(name: str, logits: torch.Tensor) -> None:
    """Floating ``(..., V >= 1)``, no NaN or +inf, at least one finite logit per row (-inf marks a
    filtered-out token)."""
    check_tensor(name, logits, kind="float")
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"{name}: expected shape (..., V) with V >= 1, got {tuple(logits.shape)}")
    if logits.device.type == "meta" or logits.numel() == 0:
        return
    if bool(torch.isnan(logits).any()) or bool((logits == float("inf")).any()):
        raise ValueError(f"{name}: expected no NaN or +inf (-inf marks a removed token), got some")
    if not bool(torch.isfinite(logits).any(dim=-1).all()):
        raise ValueError(f"{name}: expected at least one finite logit per row, got a row of -inf only")


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
        check_sampling_arguments(self.temperature, self.top_k, self.top_p)
        check_number("cfg", self.cfg, 0.0)
        check_ramp(self.cfg_ramp)
        if self.num_scales is not None:
            check_int("num_scales", self.num_scales, 1)

    @property
    def guided(self) -> bool:
        return self.cfg > 0


def guidance_weight(scale: int, num_scales_total: int, cfg: float, ramp: str = "linear") -> float:
    """``t_k`` of scale ``scale``; ``num_scales_total`` is the length of the full schedule."""
    check_int("num_scales_total", num_scales_total, 1)
    check_int("scale", scale, 0, num_scales_total - 1)
    check_number("cfg", cfg, 0.0)
    check_ramp(ramp)
    if ramp == "constant" or num_scales_total == 1:
        return cfg
    return cfg * scale / (num_scales_total - 1)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Keep the ``top_k`` largest logits, then the smallest set of them whose probability reaches
    ``top_p``; the others become ``-inf``. ``(..., V) -> (..., V)``; the most likely token always stays."""
    check_logits("logits", logits)
    check_int("top_k", top_k, 0)
    check_number("top_p", top_p, 0.0, 1.0, low_open=True)
    return _filter_logits(logits, top_k, top_p)


def _filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
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
    """``(B, n, V)`` logits -> ``(B, n)`` int64 tokens (argmax when ``temperature == 0``). The logits are
    checked (no NaN or +inf); `sample_next_scales` calls the unchecked `_sample_tokens` per scale."""
    check_logits("logits", logits)
    if logits.ndim < 2:
        raise ValueError(f"logits: expected shape (..., n, V), got {tuple(logits.shape)}")
    check_sampling_arguments(temperature, top_k, top_p)
    check_generator("generator", generator)
    return _sample_tokens(logits, temperature, top_k, top_p, generator)


def _sample_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(dim=-1)
    filtered = _filter_logits(logits.float() / temperature, top_k, top_p)
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
    """Sample the first ``config.num_scales`` scales one at a time (see the module docstring).

    The arguments are checked here; inside the loop each scale's logits are checked for their shape and
    dtype only, not for NaN (an ``isfinite`` per scale would sync the device once per scale). Logits with
    NaN therefore sample arbitrary tokens (greedy) or fail in ``torch.multinomial``.
    """
    if not callable(logits_fn):
        raise TypeError(
            f"logits_fn: expected a callable (scale, inputs) -> logits, got {type_name(logits_fn)}"
        )
    if not isinstance(quantizer, MultiScaleResidualQuantizer):
        raise TypeError(f"quantizer: expected a MultiScaleResidualQuantizer, got {type_name(quantizer)}")
    check_int("batch", batch, 1)
    if config is not None and not isinstance(config, SamplingConfig):
        raise TypeError(f"config: expected a SamplingConfig or None, got {type_name(config)}")
    check_generator("generator", generator)
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
        if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
            got = logits.dtype if isinstance(logits, torch.Tensor) else type_name(logits)
            raise TypeError(f"logits_fn: expected a floating tensor of logits at scale {scale}, got {got}")
        rows = 2 * batch if config.guided else batch
        expected = (rows, quantizer.schedule.tokens_per_scale[scale], quantizer.vocab_size)
        if tuple(logits.shape) != expected:
            raise ValueError(
                f"logits_fn: expected logits of shape {expected} at scale {scale}, got {tuple(logits.shape)}"
            )
        if config.guided:
            t = guidance_weight(scale, total, config.cfg, config.cfg_ramp)
            logits = (1 + t) * logits[:batch] - t * logits[batch:]
        tokens = _sample_tokens(logits, config.temperature, config.top_k, config.top_p, generator)
        indices.append(tokens)
        f_hat, inputs = quantizer.next_scale_input(scale, f_hat, tokens)
    return SampledScales(indices=indices, f_hat=f_hat)
