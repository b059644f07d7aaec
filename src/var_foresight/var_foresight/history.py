"""Temporal history encoder: fuses any number of past frames (1..max_frames) into a fixed set of tokens.

Each past frame arrives as a latent map (e.g. the VQ-VAE ``f_hat`` or latent ``f``) ``(Cz, H, W)``. Frames
are area-pooled to a small grid, embedded, tagged with their cell and their age (0 = the newest frame),
mixed by self-attention across all frames and cells, then each cell is attention-pooled over time with a
learned query. The output has ``grid_h * grid_w`` tokens whatever the number of frames, so a generator
conditioned on it does not care how long the history is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from var_foresight.validation import (
    check_device_matches,
    check_dtype_matches,
    check_finite,
    check_int,
    check_tensor,
    type_name,
)


@dataclass(frozen=True)
class HistoryEncoderConfig:
    """z_channels: channels of the frame latents; width: output token width; grid: pooled cells per frame;
    max_frames: longest history accepted; num_layers / num_heads: the mixing transformer."""

    z_channels: int = 32
    width: int = 256
    grid: tuple[int, int] = (4, 4)
    max_frames: int = 8
    num_layers: int = 1
    num_heads: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.grid, str | bytes) or not isinstance(self.grid, tuple | list):
            raise TypeError(f"grid: expected a (gh, gw) pair of positive ints, got {type_name(self.grid)}")
        object.__setattr__(self, "grid", tuple(self.grid))
        for name in ("z_channels", "width", "max_frames", "num_layers", "num_heads"):
            check_int(name, getattr(self, name), 1)
        if len(self.grid) != 2:
            raise ValueError(f"grid: expected two positive ints, got {self.grid}")
        for i, side in enumerate(self.grid):
            check_int(f"grid[{i}]", side, 1)
        if self.width % self.num_heads:
            raise ValueError(f"width: expected a multiple of num_heads={self.num_heads}, got {self.width}")

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]


class TemporalHistoryEncoder(nn.Module):
    """``(B, T, Cz, H, W)`` frame latents, oldest first, ``1 <= T <= max_frames`` -> ``(B, gh * gw, C)``.

    ``frame_valid`` ``(B, T)`` bool marks real frames; shorter histories are padded at the old end (the
    front), so ages stay right. Invalid frames never influence the output. Every sample needs at least one
    valid frame.
    """

    def __init__(self, config: HistoryEncoderConfig | None = None) -> None:
        super().__init__()
        if config is not None and not isinstance(config, HistoryEncoderConfig):
            raise TypeError(f"config: expected a HistoryEncoderConfig or None, got {type_name(config)}")
        self.config = config = config or HistoryEncoderConfig()
        self.frame_proj = nn.Linear(config.z_channels, config.width)
        self.cell_embed = nn.Parameter(torch.randn(config.num_tokens, config.width) * 0.02)
        self.age_embed = nn.Embedding(config.max_frames, config.width)
        nn.init.normal_(self.age_embed.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            config.width, config.num_heads, 4 * config.width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.mixer = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.pool_query = nn.Parameter(torch.randn(config.width) * 0.02)
        self.pool_key = nn.Linear(config.width, config.width)
        self.norm = nn.LayerNorm(config.width)

    def forward(self, frames: torch.Tensor, frame_valid: torch.Tensor | None = None) -> torch.Tensor:
        """frames: float ``(B, T, Cz, H, W)``, finite everywhere (padded frames too: they are zeroed by a
        multiplication, and ``NaN * 0`` is NaN); frame_valid: bool ``(B, T)`` or None (all valid)."""
        config = self.config
        check_tensor("frames", frames, kind="float")
        if frames.ndim != 5 or frames.shape[2] != config.z_channels:
            raise ValueError(
                f"frames: expected shape (B, T, {config.z_channels}, H, W), got {tuple(frames.shape)}"
            )
        batch, num_frames = frames.shape[:2]
        if not 1 <= num_frames <= config.max_frames:
            raise ValueError(f"frames: expected 1..{config.max_frames} frames, got {num_frames}")
        if batch < 1 or frames.shape[3] < 1 or frames.shape[4] < 1:
            raise ValueError(f"frames: expected B, H, W >= 1, got {tuple(frames.shape)}")
        check_device_matches("frames", frames, self.frame_proj.weight, "history encoder")
        check_dtype_matches("frames", frames, self.frame_proj.weight, "history encoder's parameters")
        check_finite("frames", frames)
        if frame_valid is not None:
            check_tensor("frame_valid", frame_valid)
            check_device_matches("frame_valid", frame_valid, frames, "frames")
        if frame_valid is None:
            frame_valid = torch.ones(batch, num_frames, dtype=torch.bool, device=frames.device)
        if frame_valid.shape != (batch, num_frames) or frame_valid.dtype != torch.bool:
            raise ValueError(
                f"frame_valid: expected a bool tensor of shape {(batch, num_frames)}, "
                f"got {frame_valid.dtype} {tuple(frame_valid.shape)}"
            )
        if not bool(frame_valid.any(dim=1).all()):
            raise ValueError("frame_valid: every sample needs at least one valid frame")

        pooled = F.adaptive_avg_pool2d(rearrange(frames, "b t c h w -> (b t) c h w"), config.grid)
        x = self.frame_proj(rearrange(pooled, "(b t) c h w -> b t (h w) c", b=batch))
        ages = torch.arange(num_frames - 1, -1, -1, device=frames.device)
        x = x + self.cell_embed + self.age_embed(ages)[None, :, None, :]
        # zero the padded frames too, so their content cannot leak through any path
        x = x * frame_valid[:, :, None, None]
        cells = config.num_tokens
        token_valid = frame_valid[:, :, None].expand(batch, num_frames, cells).reshape(batch, -1)
        mixed = self.mixer(rearrange(x, "b t n c -> b (t n) c"), src_key_padding_mask=~token_valid)
        mixed = rearrange(mixed, "b (t n) c -> b n t c", t=num_frames)
        scores = self.pool_key(mixed) @ self.pool_query / config.width**0.5  # (B, cells, T)
        scores = scores.masked_fill(~frame_valid[:, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        fused = (weights[..., None] * mixed.nan_to_num(0.0)).sum(dim=2)
        return self.norm(fused)
