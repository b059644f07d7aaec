"""The vision tower (any timm model, built offline with ``pretrained=False``) and its projector.

One tower with shared weights encodes every camera; its patch tokens are projected to the understanding
expert's width and concatenated camera after camera: ``C`` cameras of ``P`` patches give ``C * P`` tokens.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import timm
import torch
from torch import nn

from f1.errors import ConfigError, InputError
from f1.model.config import VisionConfig

__all__ = ["ImageProjector", "VisionTower", "images_to_unit_float"]


def images_to_unit_float(
    argument: str, images: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Images as floats in [0, 1]: uint8 is divided by 255, floats must already lie in [0, 1].

    Args:
        argument: the batch key, named in errors.
        images: ``(..., 3, H, W)`` uint8 or float.
    """
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{argument}: expected a tensor (..., 3, H, W), received {type(images).__name__}")
    if images.ndim < 3 or images.shape[-3] != 3:
        raise InputError(
            f"{argument}: expected (..., 3, H, W) RGB images, received shape {tuple(images.shape)}"
        )
    if images.dtype == torch.uint8:
        return images.to(dtype) / 255.0
    if not images.is_floating_point():
        raise InputError(f"{argument}: expected uint8 or float images, received dtype {images.dtype}")
    if images.numel() and not images.is_meta:
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-3 or hi > 1 + 1e-3 or math.isnan(lo) or math.isnan(hi):
            raise InputError(
                f"{argument}: expected float images in [0, 1], received values in [{lo:.3g}, {hi:.3g}]"
            )
    return images.to(dtype)


class VisionTower(nn.Module):
    """A timm backbone returning patch tokens ``(N, P, D_v)`` for images ``(N, 3, H, W)`` in [0, 1].

    Prefix tokens (class/register tokens) are dropped; convolutional feature maps are flattened to tokens.
    """

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        overrides: dict[str, Any] = {"img_size": config.image_size}
        for ours, timm_name in (
            ("patch_size", "patch_size"),
            ("width", "embed_dim"),
            ("depth", "depth"),
            ("heads", "num_heads"),
            ("mlp_ratio", "mlp_ratio"),
            ("act_layer", "act_layer"),
        ):
            value = getattr(config, ours)
            if value is not None:
                overrides[timm_name] = value
        self.backbone = timm.create_model(
            config.timm_model, pretrained=False, num_classes=0, global_pool="", **overrides
        )
        if config.stem == "conv":
            _use_conv_stem(self.backbone, config)
        self.num_prefix_tokens = int(getattr(self.backbone, "num_prefix_tokens", 0))
        self.width = int(self.backbone.num_features)
        # plain floats, not buffers: a checkpoint then holds every tensor the model has (meta-device loading)
        self.pixel_mean, self.pixel_std = config.mean, config.std
        patch = getattr(getattr(self.backbone, "patch_embed", None), "num_patches", None)
        self.num_tokens = int(patch) if patch is not None else self._probe_num_tokens()

    def _probe_num_tokens(self) -> int:
        """Tokens of a backbone without ``patch_embed`` (e.g. a convnet): one forward of a blank image."""
        weight = next(self.backbone.parameters())
        size = self.config.image_size
        with torch.no_grad():
            probe = torch.zeros(1, 3, size, size, device=weight.device, dtype=weight.dtype)
            return int(self._tokens(probe).shape[1])

    def _tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(pixels)
        if features.ndim == 4:  # convolutional (N, C, h, w) -> (N, h*w, C)
            features = features.flatten(2).transpose(1, 2)
        return features[:, self.num_prefix_tokens :]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` float in [0, 1] -> ``(N, P, D_v)`` patch tokens (``H = W = image_size``)."""
        size = self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InputError(f"images: expected (N, 3, {size}, {size}), received {tuple(images.shape)}")
        mean = torch.tensor(self.pixel_mean, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
        std = torch.tensor(self.pixel_std, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
        pixels = ((images - mean) / std).to(next(self.backbone.parameters()).dtype)
        return self._tokens(pixels)


def conv_stem(patch_size: int, width: int) -> nn.Sequential:
    """3x3 stride-2 convolutions from RGB to ``width`` channels, ``log2(patch_size)`` of them, channels
    doubling up to ``width`` (GELU between): ``(N, 3, H, W) -> (N, width, H / p, W / p)``."""
    layers: list[nn.Module] = []
    depth = int(math.log2(patch_size))
    channels = [3] + [max(8, width >> (depth - 1 - i)) for i in range(depth)]
    channels[-1] = width
    for index, (cin, cout) in enumerate(itertools.pairwise(channels)):
        layers.append(nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1))
        if index < depth - 1:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def _use_conv_stem(backbone: nn.Module, config: VisionConfig) -> None:
    """Replace a timm ViT's patch projection by :func:`conv_stem` (the same output shape)."""
    embed = getattr(backbone, "patch_embed", None)
    projection = getattr(embed, "proj", None)
    if not isinstance(projection, nn.Conv2d):
        raise ConfigError(
            f"vision.stem: 'conv' replaces a ViT's patch projection; {config.timm_model!r} has none"
        )
    assert config.patch_size is not None  # checked by VisionConfig
    embed.proj = conv_stem(config.patch_size, projection.out_channels)  # type: ignore[union-attr]


class ImageProjector(nn.Module):
    """``Linear(D_v -> D_und)`` (PaliGemma's multi-modal projector)."""

    def __init__(self, vision_width: int, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(vision_width, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(N, P, D_v) -> (N, P, D_und)`` in the projector's dtype."""
        return self.linear(tokens.to(self.linear.weight.dtype))
