"""The VAR-architecture VQ-VAE: encoder, decoder and the multi-scale residual quantizer between them.

Module and parameter names follow the released ``vae_ch160v4096z32.pth`` checkpoint key for key, so its state
dict loads strictly (see `var_foresight.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from var_foresight.config import VQVAEConfig
from var_foresight.quantizer import MultiScaleResidualQuantizer, QuantizerEncoding, QuantizerTrainingOutput
from var_foresight.validation import (
    check_compile_options,
    check_device_matches,
    check_dtype_matches,
    check_finite,
    check_range,
    check_tensor,
    type_name,
)
from var_foresight.vqvae_blocks import Level, MidBlock, group_norm


def _check_config(config: object) -> VQVAEConfig:
    if not isinstance(config, VQVAEConfig):
        raise TypeError(f"config: expected a VQVAEConfig, got {type_name(config)}")
    return config


def check_image_batch(images: torch.Tensor, config: VQVAEConfig, weight: torch.Tensor, name: str) -> None:
    """A float ``(B >= 1, C, H, W)`` batch of a usable size, on the device and in the dtype of ``weight``,
    finite and in [-1, 1] (value checks skipped on the meta device)."""
    check_tensor(name, images)
    if images.ndim != 4 or images.shape[1] != config.in_channels:
        raise ValueError(f"{name}: expected shape (B, {config.in_channels}, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name}: expected a floating dtype with values in [-1, 1], got {images.dtype}")
    d = config.downsample
    if images.shape[2] % d or images.shape[3] % d:
        raise ValueError(f"{name}: H and W must be multiples of {d}, got {tuple(images.shape[2:])}")
    if min(images.shape) < 1:
        raise ValueError(
            f"{name}: expected at least one image of at least one pixel, got {tuple(images.shape)}"
        )
    check_device_matches(name, images, weight, "tokenizer")
    check_dtype_matches(name, images, weight, "tokenizer's parameters")
    check_finite(name, images)
    check_range(name, images, -1.0, 1.0, "pixel values")


class Encoder(nn.Module):
    """Image ``(B, 3, H, W)`` in [-1, 1] -> latent ``(B, z_channels, H / d, W / d)``,
    ``d = 2**(levels-1)``."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = _check_config(config)
        c, mult, groups, drop = config.ch, config.ch_mult, config.norm_groups, config.dropout
        last = len(mult) - 1
        self.conv_in = nn.Conv2d(config.in_channels, c, kernel_size=3, padding=1)
        widths_in = (c, *(c * m for m in mult[:-1]))
        self.down = nn.ModuleList(
            Level(
                widths_in[i],
                c * mult[i],
                config.num_res_blocks,
                with_attention=i == last,
                dropout=drop,
                groups=groups,
                resample="down" if i != last else None,
            )
            for i in range(len(mult))
        )
        self.mid = MidBlock(c * mult[-1], drop, groups)
        self.norm_out = group_norm(c * mult[-1], groups)
        self.conv_out = nn.Conv2d(c * mult[-1], config.z_channels, kernel_size=3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Checks ``image`` (see `VQVAE.check_images`) and runs `features`."""
        check_image_batch(image, self.config, self.conv_in.weight, "image")
        return self.features(image)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The unchecked network (`VQVAE` checks its images once, before calling it)."""
        h = self.conv_in(image)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def check_latent_batch(latent: torch.Tensor, config: VQVAEConfig, weight: torch.Tensor, name: str) -> None:
    check_tensor(name, latent, kind="float")
    if latent.ndim != 4 or latent.shape[1] != config.z_channels:
        raise ValueError(f"{name}: expected shape (B, {config.z_channels}, h, w), got {tuple(latent.shape)}")
    if min(latent.shape) < 1:
        raise ValueError(f"{name}: expected at least one map of at least one cell, got {tuple(latent.shape)}")
    check_device_matches(name, latent, weight, "tokenizer")
    check_dtype_matches(name, latent, weight, "tokenizer's parameters")
    check_finite(name, latent)


class Decoder(nn.Module):
    """Latent ``(B, z_channels, h, w)`` -> image ``(B, 3, h * d, w * d)`` (not clamped; `VQVAE` clamps).

    ``up[0]`` is the full-resolution level; levels run from ``up[-1]`` (coarsest) down to ``up[0]``.
    """

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = _check_config(config)
        c, mult, groups, drop = config.ch, config.ch_mult, config.norm_groups, config.dropout
        last = len(mult) - 1
        self.conv_in = nn.Conv2d(config.z_channels, c * mult[-1], kernel_size=3, padding=1)
        self.mid = MidBlock(c * mult[-1], drop, groups)
        widths_in = (*(c * m for m in mult[1:]), c * mult[-1])  # level i receives level i+1's width
        self.up = nn.ModuleList(
            Level(
                widths_in[i],
                c * mult[i],
                config.num_res_blocks + 1,
                with_attention=i == last,
                dropout=drop,
                groups=groups,
                resample="up" if i != 0 else None,
            )
            for i in range(len(mult))
        )
        self.norm_out = group_norm(c * mult[0], groups)
        self.conv_out = nn.Conv2d(c * mult[0], config.in_channels, kernel_size=3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Checks ``latent`` (float ``(B, z_channels, h, w)``, finite) and runs `features`."""
        check_latent_batch(latent, self.config, self.conv_in.weight, "latent")
        return self.features(latent)

    def features(self, latent: torch.Tensor) -> torch.Tensor:
        """The unchecked network (`VQVAE.decode_fhat` checks ``f_hat`` once, before calling it)."""
        h = self.mid(self.conv_in(latent))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQVAE(nn.Module):
    """Encoder -> ``quant_conv`` -> multi-scale residual quantizer -> ``post_quant_conv`` -> decoder.

    Inference helpers (`encode_indices`, `indices_to_fhat`, `decode_fhat`, `decode_indices`) run in whatever
    mode the module is in; `forward` is the training pass with VAR's straight-through quantizer loss.
    """

    def __init__(self, config: VQVAEConfig | None = None) -> None:
        super().__init__()
        self.config = VQVAEConfig() if config is None else _check_config(config)
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.quantize = MultiScaleResidualQuantizer(self.config)
        self.quant_conv = nn.Conv2d(self.config.z_channels, self.config.z_channels, kernel_size=3, padding=1)
        self.post_quant_conv = nn.Conv2d(
            self.config.z_channels, self.config.z_channels, kernel_size=3, padding=1
        )
        self._compiled_encoding: Callable[[torch.Tensor], QuantizerEncoding] | None = None

    def check_images(self, images: torch.Tensor, name: str = "images") -> None:
        """Raise a clear error unless ``images`` is a float ``(B, C, H, W)`` batch of a usable size, in the
        parameters' dtype (unless under autocast) and device, finite and in [-1, 1] (``TypeError`` for a
        wrong type or dtype, ``ValueError`` otherwise). Values are not read on the meta device."""
        check_image_batch(images, self.config, self.quant_conv.weight, name)

    def encode_latent(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [-1, 1] -> pre-quantization latent ``f`` ``(B, Cz, H/d, W/d)``."""
        self.check_images(images)
        return self.quant_conv(self.encoder.features(images))

    @torch.no_grad()
    def encode_indices(
        self, images: torch.Tensor, scales: tuple[tuple[int, int], ...] | None = None
    ) -> list[torch.Tensor]:
        """Images ``(B, 3, H, W)`` -> per-scale token indices, a list of ``(B, h_k * w_k)`` int64 tensors."""
        return self.quantize.encode(self.encode_latent(images), scales=scales).indices

    @torch.no_grad()
    def encode(
        self, images: torch.Tensor, scales: tuple[tuple[int, int], ...] | None = None
    ) -> QuantizerEncoding:
        """Images -> `QuantizerEncoding` (per-scale indices and the final ``f_hat`` ``(B, Cz, h, w)``)."""
        if self._compiled_encoding is not None and scales is None:
            self.check_images(images)
            return self._compiled_encoding(images)
        return self.quantize.encode(self.encode_latent(images), scales=scales)

    def _encode_checked(self, images: torch.Tensor) -> QuantizerEncoding:
        """`encode` at the configured scales of images already checked: encoder, quant conv, quantizer."""
        latent = self.quant_conv(self.encoder.features(images))
        return self.quantize._encode(latent, self.quantize.schedule)

    def compile_encoding(self, *, mode: str | None = None, dynamic: bool = False) -> VQVAE:
        """Run `encode` (at the configured scales; its checks stay eager) through ``torch.compile``;
        returns ``self``. The first call of each image shape compiles. Latents equal the eager ones to float
        tolerance (fused kernels reorder sums), so a code at a near tie may differ from the eager one: keep
        the eager path where tokens must match VAR's exactly. ``mode``, ``dynamic``: ``torch.compile``'s."""
        check_compile_options(mode, dynamic)
        self._compiled_encoding = torch.compile(self._encode_checked, mode=mode, dynamic=dynamic)
        return self

    def indices_to_fhat(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Per-scale indices (a prefix of the schedule is fine) -> ``f_hat`` ``(B, Cz, h, w)``."""
        return self.quantize.indices_to_fhat(indices)

    def decode_fhat(self, f_hat: torch.Tensor) -> torch.Tensor:
        """``f_hat`` ``(B, Cz, h, w)`` (float, finite) -> image ``(B, 3, h*d, w*d)`` clamped to [-1, 1]."""
        check_latent_batch(f_hat, self.config, self.post_quant_conv.weight, "f_hat")
        return self.decoder.features(self.post_quant_conv(f_hat)).clamp(-1, 1)

    def decode_indices(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Per-scale indices -> image ``(B, 3, H, W)`` in [-1, 1]."""
        return self.decode_fhat(self.indices_to_fhat(indices))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, QuantizerTrainingOutput]:
        """Training pass: images ``(B, 3, H, W)`` -> (reconstruction ``(B, 3, H, W)``, unclamped; quantizer
        output with the straight-through ``f_hat``, VAR's quantizer loss and per-scale code hits)."""
        quantized = self.quantize(self.encode_latent(images))
        return self.decoder.features(self.post_quant_conv(quantized.f_hat)), quantized
