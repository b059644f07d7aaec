"""Codebook health of the shared multi-scale codebook: per-scale usage and perplexity, dead-code restarts.

Small scales see few tokens per image (1 at the 1x1 scale against 256 at 16x16), so a codebook trained on
the pooled tokens drifts towards the large scales and the small ones collapse onto a handful of codes. The
restart here draws replacements from every scale's residuals in equal shares, so the small scales get codes
near their own residuals back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from var_foresight.quantizer import MultiScaleResidualQuantizer
from var_foresight.validation import (
    check_finite,
    check_generator,
    check_int,
    check_number,
    check_tensor,
    type_name,
)


def _check_quantizer(quantizer: object) -> MultiScaleResidualQuantizer:
    if not isinstance(quantizer, MultiScaleResidualQuantizer):
        raise TypeError(f"quantizer: expected a MultiScaleResidualQuantizer, got {type_name(quantizer)}")
    return quantizer


def _check_hits(hits: torch.Tensor, shape: tuple[int, int] | None = None) -> None:
    check_tensor("hits", hits, 2, shape="(S, V)")
    if shape is not None and tuple(hits.shape) != shape:
        raise ValueError(f"hits: expected shape {shape} (scales, vocabulary), got {tuple(hits.shape)}")
    if hits.dtype == torch.bool or hits.is_complex():
        raise TypeError(f"hits: expected real counts, got {hits.dtype}")
    check_finite("hits", hits.float())
    if hits.numel() and hits.device.type != "meta" and bool((hits < 0).any()):
        raise ValueError(f"hits: expected counts >= 0, got a minimum of {float(hits.min())}")


def _check_thresholds(quantizer: MultiScaleResidualQuantizer, thresholds: torch.Tensor) -> None:
    num_scales = quantizer.schedule.num_scales
    check_tensor("thresholds", thresholds, 1, "float", f"({num_scales},)")
    if thresholds.shape[0] != num_scales:
        raise ValueError(f"thresholds: expected shape ({num_scales},), got {tuple(thresholds.shape)}")
    check_finite("thresholds", thresholds)


@dataclass(frozen=True)
class CodebookHealth:
    """Per-scale statistics of code use.

    usage_percent: ``(S,)`` percentage of codes whose hit EMA at that scale is above the dead threshold.
    perplexity: ``(S,)`` ``exp(entropy)`` of the code distribution of that scale in the given hits
        (1 = a single code used, V = uniform use).
    dead_codes: number of codes below the threshold at every scale.
    """

    usage_percent: tuple[float, ...]
    perplexity: tuple[float, ...]
    dead_codes: int


def perplexity_per_scale(hits: torch.Tensor) -> torch.Tensor:
    """``(S, V)`` hit counts (finite, >= 0) -> ``(S,)`` perplexity of each scale's code distribution."""
    _check_hits(hits)
    p = hits.float() / hits.float().sum(dim=1, keepdim=True).clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=1)
    return entropy.exp()


def dead_thresholds(
    quantizer: MultiScaleResidualQuantizer, batch: int, fraction: float = 0.08
) -> torch.Tensor:
    """``(S,)``: ``fraction`` of the hits a code would get at each scale if codes were used uniformly."""
    _check_quantizer(quantizer)
    check_int("batch", batch, 1)
    check_number("fraction", fraction, 0.0, 1.0, low_open=True)
    tokens = torch.tensor(quantizer.schedule.tokens_per_scale, dtype=torch.float32)
    return tokens * batch / quantizer.vocab_size * fraction


def dead_code_mask(quantizer: MultiScaleResidualQuantizer, thresholds: torch.Tensor) -> torch.Tensor:
    """``(V,)`` True for codes whose hit EMA is below the threshold at every scale."""
    ema = quantizer.ema_vocab_hit_SV
    return (ema < thresholds.to(ema.device)[:, None]).all(dim=0)


def codebook_health(
    quantizer: MultiScaleResidualQuantizer, hits: torch.Tensor, thresholds: torch.Tensor
) -> CodebookHealth:
    """Health from the quantizer's hit EMA (usage, dead codes) and one batch's ``(S, V)`` hits
    (perplexity)."""
    _check_quantizer(quantizer)
    _check_hits(hits, (quantizer.schedule.num_scales, quantizer.vocab_size))
    _check_thresholds(quantizer, thresholds)
    ema = quantizer.ema_vocab_hit_SV
    alive = ema >= thresholds.to(ema.device)[:, None]
    return CodebookHealth(
        usage_percent=tuple(float(u) for u in alive.float().mean(dim=1) * 100),
        perplexity=tuple(float(p) for p in perplexity_per_scale(hits)),
        dead_codes=int(dead_code_mask(quantizer, thresholds).sum()),
    )


@torch.no_grad()
def restart_dead_codes(
    quantizer: MultiScaleResidualQuantizer,
    residuals: Sequence[torch.Tensor],
    thresholds: torch.Tensor,
    generator: torch.Generator | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> int:
    """Move every dead code onto a residual vector that the quantizer was asked to encode; return how many.

    residuals: per scale ``(N_k, Cz)`` (from `QuantizerTrainingOutput.residuals`); replacements are drawn
        from every scale in equal shares, uniformly within a scale.
    thresholds: ``(S,)`` dead thresholds (see `dead_thresholds`); restarted codes get their EMA set to it so
        they have time to be picked before they could be restarted again.
    optimizer: if given, its per-parameter state rows (e.g. Adam moments) of the restarted codes are zeroed.

    Every argument is checked before the codebook changes.
    """
    _check_quantizer(quantizer)
    if isinstance(residuals, torch.Tensor) or not isinstance(residuals, Sequence):
        raise TypeError(
            f"residuals: expected a list of per-scale (N_k, Cz) tensors, got {type_name(residuals)}"
        )
    if len(residuals) != quantizer.schedule.num_scales:
        raise ValueError(f"residuals: expected {quantizer.schedule.num_scales} scales, got {len(residuals)}")
    for k, pool in enumerate(residuals):
        check_tensor(f"residuals[{k}]", pool, 2, "float", f"(N_k, {quantizer.channels})")
        if pool.shape[0] < 1 or pool.shape[1] != quantizer.channels:
            raise ValueError(
                f"residuals[{k}]: expected shape (N_k >= 1, {quantizer.channels}), got {tuple(pool.shape)}"
            )
        check_finite(f"residuals[{k}]", pool)
    _check_thresholds(quantizer, thresholds)
    check_generator("generator", generator)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer: expected a torch.optim.Optimizer or None, got {type_name(optimizer)}")
    dead = dead_code_mask(quantizer, thresholds).nonzero().flatten()
    if dead.numel() == 0:
        return 0
    weight = quantizer.embedding.weight
    device = weight.device
    scale_of = torch.randint(0, len(residuals), (dead.numel(),), generator=generator)
    replacements = torch.empty(dead.numel(), weight.shape[1], dtype=weight.dtype, device=device)
    for scale, pool in enumerate(residuals):
        slots = (scale_of == scale).nonzero().flatten()
        if slots.numel():
            rows = torch.randint(0, pool.shape[0], (slots.numel(),), generator=generator)
            replacements[slots.to(device)] = pool[rows.to(pool.device)].to(device=device, dtype=weight.dtype)
    dead = dead.to(device)
    weight[dead] = replacements
    quantizer.ema_vocab_hit_SV[:, dead] = thresholds.to(device)[:, None]
    if optimizer is not None:
        for value in optimizer.state.get(weight, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == weight.shape:
                value[dead] = 0
    return int(dead.numel())
