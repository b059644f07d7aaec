"""A standalone next-scale foresight generator: condition tokens + a `mot` trunk over a blockwise segment.

Layout (``mot.AttentionSpec.next_scale``): a ``cond`` segment of condition tokens (bidirectional), then a
``scales`` segment cut into one block per scale (bidirectional within a scale, causal across scales) that
sees the condition. Training is teacher forcing over the first ``K`` scales; generation appends one scale
at a time to a KV cache (`CachedNextScaleLogits`) and samples with `sample_next_scales`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mot import AttentionSpec, ExpertConfig, KVCache, MixtureOfTransformers, MoTConfig
from var_foresight.config import VQVAEConfig, checked_fields
from var_foresight.next_scale_embedding import NextScaleEmbedding, NextScaleHead, next_scale_cross_entropy
from var_foresight.quantizer import MultiScaleResidualQuantizer
from var_foresight.sampling import SampledScales, SamplingConfig, sample_next_scales
from var_foresight.scales import VAR_SCALES_256, ScaleSchedule
from var_foresight.validation import (
    check_bool,
    check_device_matches,
    check_dtype_matches,
    check_finite,
    check_generator,
    check_int,
    check_number,
    check_tensor,
    type_name,
)
from var_foresight.vqvae import VQVAE

GEN_EXPERT = "gen"


@dataclass(frozen=True)
class NextScalePredictorConfig:
    """Sizes of the generator. ``scales``, ``vocab_size`` and ``z_channels`` must match the tokenizer;
    ``condition_dropout`` is the probability of training a sample on the null condition (for CFG)."""

    width: int = 512
    depth: int = 8
    num_heads: int = 8
    head_dim: int = 64
    mlp_width: int = 2048
    vocab_size: int = 4096
    z_channels: int = 32
    scales: tuple[tuple[int, int], ...] = field(default=ScaleSchedule.from_sides(VAR_SCALES_256).sizes)
    condition_dim: int = 512
    condition_dropout: float = 0.1
    rotary: bool = False  # VAR positions are the learned absolute + level embeddings; rotary is optional

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", ScaleSchedule.from_sides(self.scales).sizes)
        for name in (
            "width",
            "depth",
            "num_heads",
            "head_dim",
            "mlp_width",
            "vocab_size",
            "z_channels",
            "condition_dim",
        ):
            check_int(name, getattr(self, name), 1)
        check_bool("rotary", self.rotary)
        check_number("condition_dropout", self.condition_dropout, 0.0, 1.0, high_open=True)

    @property
    def schedule(self) -> ScaleSchedule:
        return ScaleSchedule(self.scales)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["scales"] = [list(s) for s in self.scales]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NextScalePredictorConfig:
        """The inverse of `to_dict`: every key is required, unknown keys are refused."""
        values = checked_fields(cls, data)
        scales = values["scales"]
        if isinstance(scales, list | tuple):
            values["scales"] = tuple(tuple(s) if isinstance(s, list) else s for s in scales)
        return cls(**values)

    @classmethod
    def tiny(cls, **changes: Any) -> NextScalePredictorConfig:
        """CPU-sized generator for the tiny tokenizer (vocab 512, the 10 VAR scales)."""
        base = dict(
            width=64, depth=2, num_heads=2, head_dim=32, mlp_width=128, vocab_size=512, condition_dim=64
        )
        return cls(**{**base, **changes})


@dataclass
class Foresight:
    """indices: per-scale ``(B, h_k*w_k)``; f_hat: ``(B, Cz, H, W)``; image: ``(B, 3, H*d, W*d)`` or None."""

    indices: list[torch.Tensor]
    f_hat: torch.Tensor
    image: torch.Tensor | None


class NextScalePredictor(nn.Module):
    """Embedding, a one-expert `mot` trunk, and the head. Condition tokens ``(B, T_c, condition_dim)``."""

    def __init__(self, config: NextScalePredictorConfig | None = None) -> None:
        super().__init__()
        if config is not None and not isinstance(config, NextScalePredictorConfig):
            raise TypeError(f"config: expected a NextScalePredictorConfig or None, got {type_name(config)}")
        self.config = config = config or NextScalePredictorConfig()
        self.schedule = config.schedule
        self.condition_proj = nn.Linear(config.condition_dim, config.width)
        self.null_condition = nn.Parameter(torch.randn(config.width) * 0.02)
        self.embedding = NextScaleEmbedding(self.schedule, config.z_channels, config.width)
        self.trunk = MixtureOfTransformers(
            MoTConfig(
                n_layers=config.depth,
                n_heads=config.num_heads,
                n_kv_heads=config.num_heads,
                head_dim=config.head_dim,
                experts={GEN_EXPERT: ExpertConfig(width=config.width, mlp_width=config.mlp_width)},
                use_rotary=config.rotary,
            )
        )
        self.head = NextScaleHead(config.width, config.vocab_size)

    # ---- layout -------------------------------------------------------------------------------------------
    def spec(self, condition_length: int, num_scales: int) -> AttentionSpec:
        """The attention spec of ``condition_length`` condition tokens and the first ``num_scales`` scales."""
        check_int("condition_length", condition_length, 1)
        check_int("num_scales", num_scales, None)
        if not 1 <= num_scales <= self.schedule.num_scales:
            raise ValueError(f"num_scales: expected 1..{self.schedule.num_scales}, got {num_scales}")
        return AttentionSpec.next_scale(
            condition_length, self.schedule.tokens_per_scale[:num_scales], GEN_EXPERT
        )

    def embed_condition(self, condition: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T_c, condition_dim)`` -> ``(B, T_c, C)``; samples where ``drop`` ``(B,)`` is True get the
        learned null condition (classifier-free guidance). ``condition`` must be floating and finite."""
        self._check_condition(condition, drop)
        return self._embed_condition(condition, drop)

    def _check_condition(self, condition: torch.Tensor, drop: torch.Tensor | None = None) -> None:
        check_tensor("condition", condition, kind="float")
        if condition.ndim != 3 or condition.shape[-1] != self.config.condition_dim:
            raise ValueError(
                f"condition: expected shape (B, T_c, {self.config.condition_dim}), "
                f"got {tuple(condition.shape)}"
            )
        if condition.shape[0] < 1 or condition.shape[1] < 1:
            raise ValueError(f"condition: expected B >= 1 and T_c >= 1, got {tuple(condition.shape)}")
        check_device_matches("condition", condition, self.condition_proj.weight, "predictor")
        check_dtype_matches("condition", condition, self.condition_proj.weight, "predictor's parameters")
        check_finite("condition", condition)
        if drop is not None:
            check_tensor("drop", drop, 1, "bool", "(B,)")
            if drop.shape[0] != condition.shape[0]:
                raise ValueError(f"drop: expected shape ({condition.shape[0]},), got {tuple(drop.shape)}")

    def _embed_condition(self, condition: torch.Tensor, drop: torch.Tensor | None) -> torch.Tensor:
        tokens = self.condition_proj(condition)
        if drop is not None:
            tokens = torch.where(drop[:, None, None], self.null_condition.expand_as(tokens), tokens)
        return tokens

    def null_condition_tokens(self, batch: int, length: int) -> torch.Tensor:
        """The unconditional prefix ``(B, T_c, C)``."""
        check_int("batch", batch, 1)
        check_int("length", length, 1)
        return self.null_condition.expand(batch, length, -1)

    # ---- training -----------------------------------------------------------------------------------------
    def forward(
        self,
        condition: torch.Tensor,
        teacher_inputs: torch.Tensor | None,
        num_scales: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits of the first ``K = num_scales`` scales, ``(B, L_K, V)``.

        condition: ``(B, T_c, condition_dim)``; teacher_inputs: ``(B, L_K - l_0, Cz)`` from
        `MultiScaleResidualQuantizer.teacher_forcing_inputs` (of the first ``K - 1`` scales' indices).
        In training mode, whole conditions are replaced by the null condition with probability
        ``condition_dropout`` (drawn from ``generator``).
        """
        num_scales = self._num_scales(num_scales)
        check_generator("generator", generator)
        self._check_condition(condition)
        batch = condition.shape[0]
        drop = None
        if self.training and self.config.condition_dropout > 0:
            u = torch.rand(batch, generator=generator, device=generator.device if generator else None)
            drop = (u < self.config.condition_dropout).to(condition.device)
        cond_tokens = self._embed_condition(condition, drop)
        scale_tokens = self.embedding(teacher_inputs, batch, num_scales)
        spec = self.spec(cond_tokens.shape[1], num_scales)
        hidden = self.trunk({"cond": cond_tokens, "scales": scale_tokens}, spec)["scales"]
        return self.head(hidden)

    def loss(
        self,
        condition: torch.Tensor,
        indices: list[torch.Tensor],
        quantizer: MultiScaleResidualQuantizer,
        num_scales: int | None = None,
        generator: torch.Generator | None = None,
        loss_scales: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Cross-entropy of teacher-forced predictions of the first ``K`` scales of ``indices`` (only the
        scales in ``loss_scales`` count, if given)."""
        num_scales = self._num_scales(num_scales)
        if not isinstance(quantizer, MultiScaleResidualQuantizer):
            raise TypeError(f"quantizer: expected a MultiScaleResidualQuantizer, got {type_name(quantizer)}")
        self._check_quantizer(quantizer.config, "quantizer")
        if isinstance(indices, torch.Tensor) or not isinstance(indices, Sequence):
            raise TypeError(
                f"indices: expected a list of per-scale (B, h_k * w_k) tensors, got {type_name(indices)}"
            )
        if len(indices) < num_scales:
            raise ValueError(f"indices: expected at least {num_scales} scales, got {len(indices)}")
        quantizer._check_index_list(indices[:num_scales])  # the targets too, before any work
        with torch.no_grad():
            teacher = quantizer.teacher_forcing_inputs(indices[: num_scales - 1]) if num_scales > 1 else None
        logits = self(condition, teacher, num_scales, generator)
        return next_scale_cross_entropy(logits, indices[:num_scales], loss_scales)

    # ---- generation ---------------------------------------------------------------------------------------
    def logits_fn(
        self, condition: torch.Tensor, num_scales: int | None = None, guided: bool = False
    ) -> CachedNextScaleLogits:
        """A KV-cached `NextScaleLogitsFn` for ``condition``; with ``guided`` its batch is doubled
        (conditional rows, then the null condition's)."""
        num_scales = self._num_scales(num_scales)
        check_bool("guided", guided)
        cond_tokens = self.embed_condition(condition)
        if guided:
            cond_tokens = torch.cat([cond_tokens, self.null_condition_tokens(*cond_tokens.shape[:2])])
        return CachedNextScaleLogits(self, cond_tokens, num_scales)

    @torch.no_grad()
    def generate(
        self,
        condition: torch.Tensor,
        tokenizer: VQVAE,
        sampling: SamplingConfig | None = None,
        generator: torch.Generator | None = None,
        decode: bool = True,
    ) -> Foresight:
        """Sample a foresight: indices of the first ``sampling.num_scales`` scales, their ``f_hat`` and (with
        ``decode``) the decoded image."""
        if sampling is not None and not isinstance(sampling, SamplingConfig):
            raise TypeError(f"sampling: expected a SamplingConfig or None, got {type_name(sampling)}")
        check_generator("generator", generator)
        check_bool("decode", decode)
        sampling = sampling or SamplingConfig()
        self._check_tokenizer(tokenizer)
        num_scales = self._num_scales(sampling.num_scales)
        logits_fn = self.logits_fn(condition, num_scales, guided=sampling.guided)
        sampled: SampledScales = sample_next_scales(
            logits_fn, tokenizer.quantize, condition.shape[0], sampling, generator
        )
        image = tokenizer.decode_fhat(sampled.f_hat) if decode else None
        return Foresight(indices=sampled.indices, f_hat=sampled.f_hat, image=image)

    def _num_scales(self, num_scales: int | None) -> int:
        """``None`` means the whole schedule; anything else must be an int in ``1..S``."""
        if num_scales is None:
            return self.schedule.num_scales
        return check_int("num_scales", num_scales, 1, self.schedule.num_scales)

    def _check_tokenizer(self, tokenizer: VQVAE) -> None:
        if not isinstance(tokenizer, VQVAE):
            raise TypeError(f"tokenizer: expected a VQVAE, got {type_name(tokenizer)}")
        self._check_quantizer(tokenizer.config, "tokenizer")

    def _check_quantizer(self, tc: VQVAEConfig, name: str) -> None:
        if (tc.vocab_size, tc.z_channels, tc.scales) != (
            self.config.vocab_size,
            self.config.z_channels,
            self.config.scales,
        ):
            raise ValueError(
                f"{name}: expected vocab {self.config.vocab_size}, z_channels {self.config.z_channels}, "
                f"scales {self.config.scales}; got vocab {tc.vocab_size}, z_channels {tc.z_channels}, "
                f"scales {tc.scales}"
            )


def _check_condition_tokens(predictor: NextScalePredictor, condition_tokens: torch.Tensor) -> None:
    if not isinstance(predictor, NextScalePredictor):
        raise TypeError(f"predictor: expected a NextScalePredictor, got {type_name(predictor)}")
    width = predictor.config.width
    check_tensor("condition_tokens", condition_tokens, 3, "float", f"(B, T_c, {width})")
    if condition_tokens.shape[-1] != width or min(condition_tokens.shape[:2]) < 1:
        raise ValueError(
            f"condition_tokens: expected shape (B, T_c, {width}), got {tuple(condition_tokens.shape)}"
        )
    check_finite("condition_tokens", condition_tokens)


class CachedNextScaleLogits:
    """`NextScaleLogitsFn` of a `NextScalePredictor`: the condition is prefilled once, then every call embeds
    one scale, runs it against the KV cache (appending it), and returns its logits ``(B, l_k, V)``."""

    def __init__(
        self, predictor: NextScalePredictor, condition_tokens: torch.Tensor, num_scales: int
    ) -> None:
        _check_condition_tokens(predictor, condition_tokens)
        self.predictor = predictor
        self.batch = condition_tokens.shape[0]
        self.spec = predictor.spec(condition_tokens.shape[1], num_scales)
        self.cache: KVCache = predictor.trunk.prefill({"cond": condition_tokens}, self.spec)
        self.next_scale = 0

    def __call__(self, scale: int, inputs: torch.Tensor | None) -> torch.Tensor:
        if scale != self.next_scale:
            raise ValueError(f"scale: expected {self.next_scale} (scales are appended in order), got {scale}")
        tokens = self.predictor.embedding.embed_scale(scale, inputs, self.batch)
        hidden = self.predictor.trunk.extend({"scales": tokens}, self.spec, self.cache, append=True)["scales"]
        self.next_scale += 1
        return self.predictor.head(hidden)


class RecomputedNextScaleLogits:
    """The same `NextScaleLogitsFn` without a cache: every call re-runs the condition and all scales so far
    (the baseline the KV cache is measured against)."""

    def __init__(self, predictor: NextScalePredictor, condition_tokens: torch.Tensor) -> None:
        _check_condition_tokens(predictor, condition_tokens)
        self.predictor, self.condition_tokens = predictor, condition_tokens
        self.batch = condition_tokens.shape[0]
        self.inputs: list[torch.Tensor] = []
        self.next_scale = 0

    def __call__(self, scale: int, inputs: torch.Tensor | None) -> torch.Tensor:
        if scale != self.next_scale:
            raise ValueError(f"scale: expected {self.next_scale} (scales come in order), got {scale}")
        embedding = self.predictor.embedding
        if scale > 0:
            if inputs is None:
                raise ValueError(f"inputs: expected the inputs of scale {scale}, got None")
            expected = (self.batch, embedding.schedule.tokens_per_scale[scale], embedding.z_channels)
            check_tensor("inputs", inputs, kind="float")
            if tuple(inputs.shape) != expected:  # before any state changes
                raise ValueError(f"inputs: expected shape {expected}, got {tuple(inputs.shape)}")
            self.inputs.append(inputs)
        self.next_scale += 1
        teacher = torch.cat(self.inputs, dim=1) if self.inputs else None
        tokens = embedding(teacher, self.batch, scale + 1)
        spec = self.predictor.spec(self.condition_tokens.shape[1], scale + 1)
        hidden = self.predictor.trunk({"cond": self.condition_tokens, "scales": tokens}, spec)["scales"]
        begin, end = self.predictor.schedule.offsets[scale]
        return self.predictor.head(hidden[:, begin:end])
