"""Multi-scale residual quantizer of VAR: one shared codebook, a pyramid of token maps, shared Phi convs.

Encoding a latent ``f`` ``(B, Cz, H, W)``, for each scale ``k`` from coarse to fine (``rest = f``,
``f_hat = 0``): area-downsample ``rest`` to ``(h_k, w_k)`` (the last scale as is), look up the nearest codes,
bicubic-upsample their embeddings back to ``(H, W)`` (not for the last scale), refine with
``Phi(h) = (1 - r) h + r conv3x3(h)``, then ``f_hat += h`` and ``rest -= h``.

Scales are addressed by their position in the configured schedule, so a prefix of the schedule (the first K
scales of a foresight) uses the same Phi convs as the full pyramid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from var_foresight.codebook import make_lookup
from var_foresight.config import VQVAEConfig
from var_foresight.scales import ScaleSchedule, phi_table
from var_foresight.validation import (
    check_compile_options,
    check_device_matches,
    check_finite,
    check_indices,
    check_int,
    check_tensor,
    type_name,
)


class PhiConv(nn.Conv2d):
    """``Phi(h) = (1 - r) * h + r * conv3x3(h)`` on ``(B, Cz, H, W)``."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__(channels, channels, kernel_size=3, padding=1)
        self.ratio = ratio

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mul(1 - self.ratio) + super().forward(h).mul(self.ratio)


class PhiBank(nn.Module):
    """The shared Phi convs (key ``qresi_ls``); which one serves a scale comes from `phi_table`."""

    def __init__(self, channels: int, ratio: float, count: int) -> None:
        super().__init__()
        self.qresi_ls = nn.ModuleList(PhiConv(channels, ratio) for _ in range(count))

    def for_scale(self, scale: int, num_scales: int) -> PhiConv:
        return self.qresi_ls[phi_table(num_scales, len(self.qresi_ls))[scale]]


@dataclass
class QuantizerEncoding:
    """Per-scale indices (``(B, h_k * w_k)`` int64 each) and the final ``f_hat`` ``(B, Cz, H, W)``."""

    indices: list[torch.Tensor]
    f_hat: torch.Tensor


@dataclass
class QuantizerTrainingOutput:
    """The training pass of the quantizer.

    f_hat: ``(B, Cz, H, W)`` straight-through estimate (value of the quantized latent, gradient of ``f``).
    loss: VAR's quantizer loss, ``mean_k beta * mse(f_hat_k.detach(), f) + mse(f_hat_k, f.detach())``.
    indices: per-scale ``(B, h_k * w_k)`` int64.
    hits: ``(S, V)`` how often each code was chosen at each scale in this batch.
    residuals: per-scale residual vectors that were quantized, ``(B * h_k * w_k, Cz)`` (for code restarts).
    """

    f_hat: torch.Tensor
    loss: torch.Tensor
    indices: list[torch.Tensor]
    hits: torch.Tensor
    residuals: list[torch.Tensor]


class MultiScaleResidualQuantizer(nn.Module):
    """Shared codebook ``embedding`` ``(V, Cz)``, Phi convs ``quant_resi``, and per-scale code-hit EMA
    ``ema_vocab_hit_SV`` ``(S, V)`` (names as in the released checkpoint)."""

    ema_vocab_hit_SV: torch.Tensor

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        if not isinstance(config, VQVAEConfig):
            raise TypeError(f"config: expected a VQVAEConfig, got {type_name(config)}")
        self.config = config
        self.schedule = config.schedule
        self.vocab_size, self.channels = config.vocab_size, config.z_channels
        self.embedding = nn.Embedding(config.vocab_size, config.z_channels)
        self.quant_resi = PhiBank(config.z_channels, config.phi_ratio, config.num_phi)
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(self.schedule.num_scales, config.vocab_size))
        self.hit_updates = 0
        self.lookup = make_lookup(config.lookup, config.vocab_size, config.z_channels)
        self._compiled_next_scale: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None

    # ---- one scale ----------------------------------------------------------------------------------------
    def nearest_codes(self, z: torch.Tensor) -> torch.Tensor:
        """Residual vectors ``(N, Cz)`` (floating, finite) -> nearest code indices ``(N,)``."""
        check_tensor("z", z, 2, "float", f"(N, {self.channels})")
        if z.shape[1] != self.channels:
            raise ValueError(f"z: expected shape (N, {self.channels}), got {tuple(z.shape)}")
        check_finite("z", z)
        return self._nearest_codes(z)

    def _nearest_codes(self, z: torch.Tensor) -> torch.Tensor:
        return self.lookup(z, self.embedding.weight.detach())

    def scale_contribution(
        self, indices: torch.Tensor, scale: int, schedule: ScaleSchedule | None = None
    ) -> torch.Tensor:
        """What scale ``scale`` adds to ``f_hat``: ``Phi(bicubic-up(codebook[indices]))`` ``(B, Cz, H, W)``.

        indices: ``(B, h_k * w_k)`` int64 for the scale at position ``scale`` of ``schedule``, in the
        vocabulary (checked).
        """
        if schedule is not None and not isinstance(schedule, ScaleSchedule):
            raise TypeError(f"schedule: expected a ScaleSchedule or None, got {type_name(schedule)}")
        schedule = schedule or self.schedule
        self._check_indices(indices, scale, schedule)
        check_indices(f"indices[{scale}]", indices, self.vocab_size)
        return self._scale_contribution(indices, scale, schedule)

    def _scale_contribution(self, indices: torch.Tensor, scale: int, schedule: ScaleSchedule) -> torch.Tensor:
        (h, w), (H, W) = schedule.sizes[scale], schedule.latent_size
        codes = rearrange(self.embedding(indices), "b (h w) c -> b c h w", h=h, w=w)
        if scale != schedule.num_scales - 1:
            codes = F.interpolate(codes, size=(H, W), mode="bicubic")
        return self.quant_resi.for_scale(scale, schedule.num_scales)(codes.contiguous())

    def next_scale_input(
        self, scale: int, f_hat: torch.Tensor, indices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One autoregressive step: add scale ``scale`` to ``f_hat`` ``(B, Cz, H, W)`` and return
        ``(new f_hat, input tokens of the next scale (B, h_{k+1} * w_{k+1}, Cz))``; the input is ``None``
        after the last scale. The input is ``f_hat`` area-downsampled to the next scale's size.

        Teacher forcing (`teacher_forcing_inputs`) is this step applied to every scale, so the two agree.

        Shapes and dtypes are checked, but not the values: this is the per-scale step of the sampling loop,
        where reading them back (index range, ``isfinite``) would cost a device sync per scale. Callers pass
        sampled tokens and the ``f_hat`` of the previous step; `teacher_forcing_inputs` checks its indices
        once at entry.
        """
        self._check_indices(indices, scale)
        check_tensor("f_hat", f_hat, 4, "float", f"(B, {self.channels}, H, W)")
        expected = (indices.shape[0], self.channels, *self.schedule.latent_size)
        if tuple(f_hat.shape) != expected:
            raise ValueError(f"f_hat: expected shape {expected}, got {tuple(f_hat.shape)}")
        step = self._compiled_next_scale or self._next_scale_input
        return step(scale, f_hat, indices)

    def _next_scale_input(
        self, scale: int, f_hat: torch.Tensor, indices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`next_scale_input` without its checks (what `compile_next_scale` compiles)."""
        f_hat = f_hat + self._scale_contribution(indices, scale, self.schedule)
        if scale == self.schedule.num_scales - 1:
            return f_hat, None
        next_size = self.schedule.sizes[scale + 1]
        next_input = F.interpolate(f_hat, size=next_size, mode="area")
        return f_hat, rearrange(next_input, "b c h w -> b (h w) c")

    def compile_next_scale(
        self, *, mode: str | None = None, dynamic: bool = False
    ) -> MultiScaleResidualQuantizer:
        """Run `next_scale_input` (the per-scale step of sampling and teacher forcing; its checks stay
        eager) through ``torch.compile``; returns ``self``. Each scale compiles once, on first use. ``f_hat``
        and the next inputs equal the eager ones to float tolerance (the fused kernels reorder sums).
        ``mode``, ``dynamic``: ``torch.compile``'s."""
        check_compile_options(mode, dynamic)
        self._compiled_next_scale = torch.compile(self._next_scale_input, mode=mode, dynamic=dynamic)
        return self

    # ---- whole pyramid ------------------------------------------------------------------------------------
    def empty_fhat(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Zeros ``(B, Cz, H, W)`` in float32, the start of every accumulation."""
        check_int("batch", batch, 1)
        H, W = self.schedule.latent_size
        return torch.zeros(batch, self.channels, H, W, device=device or self.embedding.weight.device)

    def encode(
        self, f: torch.Tensor, scales: Sequence[int | Sequence[int]] | None = None
    ) -> QuantizerEncoding:
        """Latent ``f`` ``(B, Cz, H, W)`` -> per-scale indices and ``f_hat``. ``scales`` overrides the
        configured schedule (its last scale must be ``(H, W)``; its Phi table follows its length)."""
        schedule = self.schedule if scales is None else ScaleSchedule.from_sides(scales)
        self._check_latent(f, schedule)
        return self._encode(f, schedule)

    def _encode(self, f: torch.Tensor, schedule: ScaleSchedule) -> QuantizerEncoding:
        """`encode` without its checks (a caller that checked ``f``, e.g. a compiled encoding)."""
        with torch.autocast(device_type=f.device.type, enabled=False):
            f = f.detach().float()
            rest, f_hat = f.clone(), torch.zeros_like(f)
            indices = []
            for k, size in enumerate(schedule.sizes):
                z = rest if k == schedule.num_scales - 1 else F.interpolate(rest, size=size, mode="area")
                idx = self._nearest_codes(rearrange(z, "b c h w -> (b h w) c")).view(f.shape[0], -1)
                h = self._scale_contribution(idx, k, schedule)
                f_hat = f_hat + h
                rest = rest - h
                indices.append(idx)
        return QuantizerEncoding(indices=indices, f_hat=f_hat)

    def indices_to_fhat(self, indices: Sequence[torch.Tensor]) -> torch.Tensor:
        """Indices of the first ``n <= S`` scales -> ``f_hat`` ``(B, Cz, H, W)``, the sum of their
        contributions."""
        self._check_index_list(indices)
        f_hat = self.empty_fhat(indices[0].shape[0], indices[0].device)
        for k, idx in enumerate(indices):
            f_hat = f_hat + self._scale_contribution(idx, k, self.schedule)
        return f_hat

    def teacher_forcing_inputs(self, indices: Sequence[torch.Tensor]) -> torch.Tensor:
        """Indices of scales ``0..n-1`` -> input tokens of scales ``1..min(n, S-1)`` concatenated,
        ``(B, sum of their h*w, Cz)``; with all ``S`` scales this is ``(B, L - l_0, Cz)`` (679 x 32 in
        VAR)."""
        self._check_index_list(indices)
        f_hat = self.empty_fhat(indices[0].shape[0], indices[0].device)
        inputs = []
        for k, idx in enumerate(indices):
            f_hat, next_input = self.next_scale_input(k, f_hat, idx)
            if next_input is not None:
                inputs.append(next_input)
        if not inputs:
            return f_hat.new_zeros(f_hat.shape[0], 0, self.channels)
        return torch.cat(inputs, dim=1)

    # ---- training -----------------------------------------------------------------------------------------
    def forward(self, f: torch.Tensor) -> QuantizerTrainingOutput:
        """Training pass on the latent ``f`` ``(B, Cz, H, W)`` (see `QuantizerTrainingOutput`)."""
        self._check_latent(f, self.schedule)
        input_dtype = f.dtype
        with torch.autocast(device_type=f.device.type, enabled=False):
            f = f.float()
            f_detached = f.detach()
            rest, f_hat = f_detached.clone(), torch.zeros_like(f_detached)
            loss = f.new_zeros(())
            indices, residuals, hits = [], [], []
            last = self.schedule.num_scales - 1
            for k, size in enumerate(self.schedule.sizes):
                z = rest if k == last else F.interpolate(rest, size=size, mode="area")
                z_flat = rearrange(z, "b c h w -> (b h w) c")
                idx = self._nearest_codes(z_flat).view(f.shape[0], -1)
                h = self._scale_contribution(idx, k, self.schedule)
                f_hat = f_hat + h
                rest = rest - h.detach()
                loss = (
                    loss + F.mse_loss(f_hat.detach(), f).mul(self.config.beta) + F.mse_loss(f_hat, f_detached)
                )
                indices.append(idx)
                residuals.append(z_flat)
                hits.append(idx.flatten().bincount(minlength=self.vocab_size).float())
            loss = loss / self.schedule.num_scales
            hits_sv = torch.stack(hits)
            f_hat_ste = (f_hat.detach() - f_detached) + f
        if self.training:
            self._update_hit_ema(hits_sv)
        return QuantizerTrainingOutput(
            f_hat=f_hat_ste.to(input_dtype), loss=loss, indices=indices, hits=hits_sv, residuals=residuals
        )

    @torch.no_grad()
    def _update_hit_ema(self, hits_sv: torch.Tensor) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            hits_sv = hits_sv.clone()
            dist.all_reduce(hits_sv)
        if self.hit_updates == 0:
            self.ema_vocab_hit_SV.copy_(hits_sv)
        else:
            decay = 0.9 if self.hit_updates < 100 else 0.99
            self.ema_vocab_hit_SV.mul_(decay).add_(hits_sv, alpha=1 - decay)
        self.hit_updates += 1

    # ---- validation ---------------------------------------------------------------------------------------
    def _check_latent(self, f: torch.Tensor, schedule: ScaleSchedule) -> None:
        check_tensor("f", f, kind="float")
        if f.ndim != 4 or f.shape[1] != self.channels:
            raise ValueError(f"f: expected shape (B, {self.channels}, H, W), got {tuple(f.shape)}")
        if tuple(f.shape[2:]) != schedule.latent_size:
            raise ValueError(
                f"f: latent size {tuple(f.shape[2:])} does not match the last scale {schedule.latent_size}; "
                f"images must be {schedule.latent_size} times the downsampling factor"
            )
        if f.shape[0] < 1:
            raise ValueError(f"f: expected a batch of at least one latent, got {tuple(f.shape)}")
        check_device_matches("f", f, self.embedding.weight, "codebook")
        check_finite("f", f)

    def _check_index_list(self, indices: Sequence[torch.Tensor]) -> None:
        """Per-scale indices of the first ``1..S`` scales: shapes, dtypes, one batch size, the vocabulary."""
        if isinstance(indices, torch.Tensor) or not isinstance(indices, Sequence):
            raise TypeError(
                f"indices: expected a list of per-scale (B, h_k * w_k) tensors, got {type_name(indices)}"
            )
        if not 1 <= len(indices) <= self.schedule.num_scales:
            raise ValueError(f"indices: expected 1..{self.schedule.num_scales} scales, got {len(indices)}")
        for k, idx in enumerate(indices):
            self._check_indices(idx, k)
            if idx.shape[0] != indices[0].shape[0] or idx.shape[0] < 1:
                raise ValueError(
                    f"indices[{k}]: expected batch size {indices[0].shape[0]} (that of indices[0], >= 1), "
                    f"got {tuple(idx.shape)}"
                )
            check_indices(f"indices[{k}]", idx, self.vocab_size)

    def _check_indices(
        self, indices: torch.Tensor, scale: int, schedule: ScaleSchedule | None = None
    ) -> None:
        """Shape, dtype and device (no values: see `next_scale_input`)."""
        schedule = schedule or self.schedule
        check_int("scale", scale, 0, schedule.num_scales - 1)
        check_tensor(f"indices[{scale}]", indices)
        expected = schedule.tokens_per_scale[scale]
        if indices.ndim != 2 or indices.shape[1] != expected:
            raise ValueError(
                f"indices[{scale}]: expected shape (B, {expected}) for scale {schedule.sizes[scale]}, "
                f"got {tuple(indices.shape)}"
            )
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices[{scale}]: expected an integer dtype, got {indices.dtype}")
        check_device_matches(f"indices[{scale}]", indices, self.embedding.weight, "codebook")
