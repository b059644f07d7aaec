"""The generation expert's inputs and outputs around the shared trunk (its layers live in the trunk).

- ``tokenizer``: the frozen ``var_foresight`` VQ-VAE (parameter group ``"tokenizer"``); images in [-1, 1].
- ``history``: the temporal history encoder: any number of past frames (their quantized latents
  ``f_hat``) -> ``h * w`` tokens of the generation width (the ``hist`` segment).
- ``embedding`` / ``head``: the next-scale token embedding (start tokens, teacher-forcing inputs, positions,
  levels) and the logits head (the ``gen`` segment), in mode ``"f1"`` only.
- ``foresight``: with ``generation.complete_foresight``, the embedding of the complete imagined frame
  (``f_hat`` of every predicted scale at the finest grid, one token per cell: the ``fut`` segment).

Built only for the modes that read a history (``f1``, ``history_no_foresight``), with exactly the parts the
mode needs.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from f1.errors import ConfigError
from f1.model.config import F1Config
from var_foresight import (
    VQVAE,
    HistoryEncoderConfig,
    NextScaleEmbedding,
    NextScaleHead,
    TemporalHistoryEncoder,
)

__all__ = ["GenerationIO"]


class ForesightEmbedding(nn.Module):
    """``f_hat`` ``(B, Cz, h, w)`` -> ``(B, h * w, C)`` tokens: ``Linear(Cz -> C)`` plus a learned position
    per cell (the ``fut`` segment: the complete imagined frame, read by the action expert)."""

    def __init__(self, z_channels: int, cells: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(z_channels, width)
        self.pos_embed = nn.Parameter(torch.randn(cells, width) * (1 / width / 3) ** 0.5)

    def forward(self, f_hat: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(f_hat.flatten(2).transpose(1, 2).to(self.proj.weight.dtype))
        return tokens + self.pos_embed


class GenerationIO(nn.Module):
    """VQ-VAE tokenizer, history encoder, next-scale embedding and head of the generation expert."""

    def __init__(self, config: F1Config) -> None:
        super().__init__()
        gen = config.generation
        width = config.trunk.generation_width
        self.schedule = gen.vqvae.schedule
        self.image_size = gen.vqvae.image_size
        if not config.has_history:
            raise ConfigError(f"mode: {config.mode!r} reads no history, so it has no generation part")
        self.mode = config.mode
        self.tokenizer = VQVAE(gen.vqvae)
        self.tokenizer.requires_grad_(False)
        self.history = TemporalHistoryEncoder(
            HistoryEncoderConfig(
                z_channels=gen.vqvae.z_channels,
                width=width,
                grid=gen.history_grid,
                max_frames=gen.history_frames,
                num_layers=gen.history_layers,
                num_heads=gen.history_heads,
            )
        )
        self.embedding: NextScaleEmbedding | None = None
        self.head: NextScaleHead | None = None
        self.foresight: ForesightEmbedding | None = None
        if config.has_foresight:
            self.embedding = NextScaleEmbedding(self.schedule, gen.vqvae.z_channels, width)
            self.head = NextScaleHead(width, gen.vqvae.vocab_size)
            if gen.complete_foresight:
                height, side = self.schedule.sizes[-1]
                self.foresight = ForesightEmbedding(gen.vqvae.z_channels, height * side, width)

    def train(self, mode: bool = True) -> GenerationIO:
        """The tokenizer stays in eval mode (it is frozen); the rest follows ``mode``."""
        super().train(mode)
        self.tokenizer.eval()
        return self

    @property
    def history_length(self) -> int:
        """Tokens of the ``hist`` segment."""
        return self.history.config.num_tokens

    @property
    def foresight_length(self) -> int | None:
        """Tokens of the ``fut`` segment (the finest grid's cells), or None without complete foresight."""
        if self.foresight is None:
            return None
        height, width = self.schedule.sizes[-1]
        return height * width

    def scale_tokens(self, num_scales: int) -> tuple[int, ...]:
        """Tokens of each of the first ``num_scales`` scales, e.g. ``(1, 4, 9, 16)``."""
        return self.schedule.tokens_per_scale[:num_scales]

    def _exact(self) -> contextlib.AbstractContextManager[None]:
        """The tokenizer runs in its own dtype also under autocast (a bf16 training step): its tokens are
        the targets and the inputs of the other parts, and must be the exact ones of its weights."""
        return torch.autocast(self._tokenizer_device_type, enabled=False)

    @torch.no_grad()
    def quantized_latents(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [-1, 1] -> ``f_hat`` ``(N, Cz, h, w)`` of all scales (frozen tokenizer)."""
        with self._exact():
            return self.tokenizer.encode(frames.to(self._tokenizer_dtype)).f_hat

    @torch.no_grad()
    def frame_codes(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 3, H, W)`` in [-1, 1] -> ``f_hat`` ``(N, Cz, h, w)`` float32 and the token indices of every
        scale concatenated ``(N, L)`` int64: what :class:`f1.data.FrameCodes` caches per frame."""
        with self._exact():
            encoded = self.tokenizer.encode(frames.to(self._tokenizer_dtype))
        return encoded.f_hat.float(), torch.cat(list(encoded.indices), dim=1)

    @torch.no_grad()
    def indices_to_fhat(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Token indices of the first scales ``[(B, h_k * w_k)]`` -> ``f_hat`` ``(B, Cz, h, w)``."""
        with self._exact():
            return self.tokenizer.indices_to_fhat(list(indices))

    def foresight_tokens(self, f_hat: torch.Tensor) -> torch.Tensor:
        """``f_hat`` ``(B, Cz, h, w)`` of the imagined frame -> ``(B, h * w, D_gen)`` tokens of ``fut``."""
        if self.foresight is None:
            raise ConfigError("generation.complete_foresight: off, so the model has no fut segment")
        return self.foresight(f_hat.to(self._model_dtype))

    @torch.no_grad()
    def target_indices(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` in [-1, 1] -> per-scale token indices ``[(B, h_k * w_k)]``."""
        with self._exact():
            return self.tokenizer.encode_indices(frames.to(self._tokenizer_dtype))

    @property
    def _model_dtype(self) -> torch.dtype:
        """The dtype of every part but the tokenizer: where the tokenizer's float32 outputs are cast to."""
        return self.history.frame_proj.weight.dtype

    @property
    def _tokenizer_dtype(self) -> torch.dtype:
        return self.tokenizer.quant_conv.weight.dtype

    @property
    def _tokenizer_device_type(self) -> str:
        return self.tokenizer.quant_conv.weight.device.type

    @torch.no_grad()
    def decode(self, f_hat: torch.Tensor) -> torch.Tensor:
        """``f_hat`` ``(B, Cz, h, w)`` -> image ``(B, 3, H, W)`` in [0, 1] (float32)."""
        with self._exact():
            return (self.tokenizer.decode_fhat(f_hat.to(self._tokenizer_dtype)).float() + 1) / 2

    def history_tokens(self, frames: torch.Tensor, frame_valid: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` in [-1, 1], oldest first -> ``(B, h * w, D_gen)`` tokens of ``hist``.

        ``frame_valid`` ``(B, T)`` bool marks real frames (padding at the old end, e.g. at episode start).
        """
        batch, steps = frames.shape[:2]
        latents = self.quantized_latents(frames.flatten(0, 1))
        return self.history_tokens_from_latents(
            latents.reshape(batch, steps, *latents.shape[1:]), frame_valid
        )

    def history_tokens_from_latents(
        self, latents: torch.Tensor, frame_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Frame latents ``(B, T, Cz, h, w)`` (:meth:`quantized_latents` of each frame, cached by a policy
        so that a frame is encoded once) -> ``(B, h * w, D_gen)`` tokens of ``hist``."""
        return self.history(latents.to(self._model_dtype), frame_valid)

    def _foresight_parts(self) -> tuple[NextScaleEmbedding, NextScaleHead]:
        if self.embedding is None or self.head is None:
            raise ConfigError(f"mode: {self.mode!r} predicts no foresight (mode 'f1' does)")
        return self.embedding, self.head

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, n, D_gen)`` hidden states of the ``gen`` segment -> ``(B, n, V)`` token logits."""
        return self._foresight_parts()[1](hidden)

    def embed_scale(self, scale: int, inputs: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Tokens ``(B, l_k, D_gen)`` of scale ``scale`` from its inputs ``(B, l_k, Cz)`` (None at 0)."""
        embedding = self._foresight_parts()[0]
        if inputs is not None:
            inputs = inputs.to(self._model_dtype)
        return embedding.embed_scale(scale, inputs, batch)

    def teacher_forced_tokens(self, indices: list[torch.Tensor], num_scales: int) -> torch.Tensor:
        """Embedded inputs of the first ``num_scales`` scales ``(B, L_K, D_gen)`` from the target indices."""
        embedding = self._foresight_parts()[0]
        batch = indices[0].shape[0]
        with torch.no_grad():
            teacher = (
                self.tokenizer.quantize.teacher_forcing_inputs(indices[: num_scales - 1])
                if num_scales > 1
                else None
            )
        if teacher is not None:
            teacher = teacher.to(self._model_dtype)
        return embedding(teacher, batch, num_scales)
