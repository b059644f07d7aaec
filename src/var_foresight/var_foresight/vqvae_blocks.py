"""Convolutional building blocks of the VAR VQ-VAE, named so the released checkpoint's keys load as they are.

All blocks map ``(B, C, H, W)`` feature maps to feature maps; normalisation is GroupNorm (eps 1e-6) + SiLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm1, SiLU, conv1, norm2, SiLU, dropout, conv2, plus a 1x1 ``nin_shortcut`` where channels change."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, norm_groups: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``H * W`` positions, with one fused 1x1 ``qkv`` conv; residual."""

    def __init__(self, channels: int, norm_groups: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, norm_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, channels, height, width = x.shape
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three c) h w -> three b (h w) c", three=3)
        # explicit softmax(q k^T / sqrt(C)) v: the same arithmetic as the released model, so latents match it
        # bit for bit (a fused SDPA kernel differs by ~1e-6 and the error grows through the decoder)
        weights = torch.bmm(q, k.transpose(1, 2)).mul(channels**-0.5).softmax(dim=2)
        h = rearrange(torch.bmm(weights, v), "b (h w) c -> b c h w", h=height, w=width)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    """Pad right and bottom by one, then a 3x3 stride-2 conv: ``(B, C, H, W) -> (B, C, H/2, W/2)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2 then a 3x3 conv: ``(B, C, H, W) -> (B, C, 2H, 2W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class MidBlock(nn.Module):
    """res, attention, res at the lowest resolution (keys ``block_1``, ``attn_1``, ``block_2``)."""

    def __init__(self, channels: int, dropout: float, norm_groups: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout, norm_groups)
        self.attn_1 = AttnBlock(channels, norm_groups)
        self.block_2 = ResnetBlock(channels, channels, dropout, norm_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution level: ResNet blocks, each followed by attention where ``attn`` is non-empty, then an
    optional ``downsample`` (encoder) or ``upsample`` (decoder)."""

    downsample: Downsample | None
    upsample: Upsample | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_blocks: int,
        with_attention: bool,
        dropout: float,
        groups: int,
        resample: str | None = None,
    ) -> None:
        super().__init__()
        if resample not in (None, "down", "up"):
            raise ValueError(f"resample: expected None, 'down' or 'up', got {resample!r}")
        self.block = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, dropout, groups)
            for i in range(num_blocks)
        )
        self.attn = nn.ModuleList(
            AttnBlock(out_channels, groups) for _ in range(num_blocks) if with_attention
        )
        self.downsample = Downsample(out_channels) if resample == "down" else None
        self.upsample = Upsample(out_channels) if resample == "up" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        if self.downsample is not None:
            x = self.downsample(x)
        if self.upsample is not None:
            x = self.upsample(x)
        return x
