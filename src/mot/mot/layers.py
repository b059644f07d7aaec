"""Gemma-style building blocks: RMSNorm with (1 + w), GeGLU with tanh-GELU, split-half rotary in fp32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GeGLU", "RMSNorm", "apply_rotary", "rotary_cos_sin"]


class RMSNorm(nn.Module):
    """Gemma RMSNorm: ``x * rsqrt(mean(x^2) + eps) * (1 + w)``, computed in fp32.

    The weight is stored as an offset from one (zero-initialised), as in Gemma checkpoints.

    Args:
        width: feature size D.
        eps: added to the mean square.
    """

    def __init__(self, width: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(width))

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D) -> (..., D)`` in the dtype of ``x``."""
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (h * (1.0 + self.weight.float())).type_as(x)


class GeGLU(nn.Module):
    """Gated MLP ``down(gelu_tanh(gate(x)) * up(x))`` without biases (Gemma's MLP).

    Args:
        width: input/output size D.
        mlp_width: hidden size F.
    """

    def __init__(self, width: int, mlp_width: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(width, mlp_width, bias=False)
        self.up_proj = nn.Linear(width, mlp_width, bias=False)
        self.down_proj = nn.Linear(mlp_width, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D) -> (..., D)``."""
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


def rotary_cos_sin(positions: Tensor, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """Cosine and sine tables of split-half rotary embeddings, in fp32.

    The table is computed for positions ``0 .. P-1`` (``P`` a power of two) and then looked up, so that the
    value for a position never depends on how many tokens are in the call (vectorised and scalar ``cos``
    may differ in the last bit); this keeps cached and uncached runs bit-identical.

    Args:
        positions: ``(B, L)`` integer positions (negative values, which only padding can have, read 0).
        head_dim: D (even).
        base: rotary base (Gemma: 10000).

    Returns:
        ``cos, sin``, each ``(B, L, D)`` fp32, the frequency table repeated for both halves.
    """
    if head_dim % 2:
        raise ValueError(f"head_dim: expected an even number, received {head_dim}")
    positions = positions.clamp(min=0)
    table_length = 64
    largest = int(positions.max()) if positions.numel() else 0
    while table_length <= largest:
        table_length *= 2
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim
    inv_freq = 1.0 / (base**exponents)
    angles = torch.arange(table_length, device=positions.device).float()[:, None] * inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos()[positions], angles.sin()[positions]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` by its positions (split-half "rotate half" convention), computed in fp32.

    Args:
        x: ``(B, H, L, D)`` queries or keys.
        cos, sin: ``(B, L, D)`` from :func:`rotary_cos_sin`.

    Returns:
        ``(B, H, L, D)`` in the dtype of ``x``.
    """
    xf = x.float()
    first, second = xf.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (xf * cos[:, None] + rotated * sin[:, None]).to(x.dtype)
