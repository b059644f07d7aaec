"""Gemma-style building blocks: RMSNorm with (1 + w), GeGLU with tanh-GELU, split-half rotary in fp32."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mot.errors import ArgumentTypeError, SpecError, check_int, describe

__all__ = ["GeGLU", "RMSNorm", "apply_rotary", "rotary_cos_sin", "rotary_table"]


class RMSNorm(nn.Module):
    """Gemma RMSNorm: ``x * rsqrt(mean(x^2) + eps) * (1 + w)``, computed in fp32.

    The weight is stored as an offset from one (zero-initialised), as in Gemma checkpoints.

    Args:
        width: feature size D.
        eps: added to the mean square.
    """

    def __init__(self, width: int, eps: float = 1e-6) -> None:
        super().__init__()
        check_int("width", width)
        if isinstance(eps, bool) or not isinstance(eps, float | int) or not math.isfinite(eps) or eps <= 0:
            raise SpecError(f"eps: expected a finite positive number, received {describe(eps)}")
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(width))

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D) -> (..., D)`` in the dtype of ``x``."""
        # torch's rms_norm for Gemma's fp32 x * rsqrt(mean(x^2) + eps) * (1 + w): the same floats as the
        # five separate ops (tests/mot/test_layers.py); on a CPU it is itself a composite, so it saves
        # little there, and a GPU build may fuse it.
        scale = 1.0 + self.weight.float()
        return F.rms_norm(x.float(), (x.shape[-1],), weight=scale, eps=self.eps).type_as(x)


class GeGLU(nn.Module):
    """Gated MLP ``down(gelu_tanh(gate(x)) * up(x))`` without biases (Gemma's MLP).

    Args:
        width: input/output size D.
        mlp_width: hidden size F.
    """

    def __init__(self, width: int, mlp_width: int) -> None:
        super().__init__()
        check_int("width", width)
        check_int("mlp_width", mlp_width)
        self.gate_proj = nn.Linear(width, mlp_width, bias=False)
        self.up_proj = nn.Linear(width, mlp_width, bias=False)
        self.down_proj = nn.Linear(mlp_width, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D) -> (..., D)``."""
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


_ROTARY_TABLES: dict[tuple[str, int, float], tuple[Tensor, Tensor]] = {}


def rotary_table(
    length: int, head_dim: int, base: float = 10000.0, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """Cosine and sine of positions ``0 .. length-1``: ``(P, D)`` fp32 each with ``P >= length``.

    Computed for ``P`` a power of two (at least 64) and kept per device, so the value for a position never
    depends on how many tokens a call has (vectorised and scalar ``cos`` may differ in the last bit); this
    keeps cached and uncached runs bit-identical and makes the table free after the first call.
    """
    check_int("length", length, minimum=0)
    check_int("head_dim", head_dim)
    if head_dim % 2:
        raise SpecError(f"head_dim: expected an even number, received {head_dim}")
    if isinstance(base, bool) or not isinstance(base, float | int) or not math.isfinite(base) or base <= 0:
        raise SpecError(f"base: expected a finite positive number, received {describe(base)}")
    key = (str(torch.device(device)), head_dim, float(base))
    table = _ROTARY_TABLES.get(key)
    if table is None or table[0].shape[0] < length:
        size = 64
        while size < length:
            size *= 2
        exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
        inv_freq = 1.0 / (base**exponents)
        angles = torch.arange(size, device=device).float()[:, None] * inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        table = (angles.cos(), angles.sin())
        _ROTARY_TABLES[key] = table
    return table


def rotary_cos_sin(positions: Tensor, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """Cosine and sine tables of split-half rotary embeddings for given positions, in fp32.

    Args:
        positions: ``(B, L)`` integer positions (negative values, which only padding can have, read 0).
        head_dim: D (even).
        base: rotary base (Gemma: 10000).

    Returns:
        ``cos, sin``, each ``(B, L, D)`` fp32, the frequency table repeated for both halves.
    """
    if not isinstance(positions, Tensor):
        raise ArgumentTypeError(
            f"positions: expected a (B, L) int tensor, received {type(positions).__name__}"
        )
    if positions.ndim != 2 or positions.dtype.is_floating_point or positions.dtype == torch.bool:
        raise SpecError(f"positions: expected a (B, L) int tensor, received {describe(positions)}")
    positions = positions.clamp(min=0)
    largest = int(positions.max()) if positions.numel() else 0
    cos, sin = rotary_table(largest + 1, head_dim, base, positions.device)
    return cos[positions], sin[positions]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` by its positions (split-half "rotate half" convention), computed in fp32.

    Runs in every layer of every call, so shapes are not checked here (the model built them).

    Args:
        x: ``(B, H, L, D)`` queries or keys.
        cos: ``(B or 1, L, D)`` from :func:`rotary_cos_sin` (or rows of :func:`rotary_table`).
        sin: ``(B or 1, L, D)``, likewise.

    Returns:
        ``(B, H, L, D)`` in the dtype of ``x``.
    """
    xf = x if x.dtype == torch.float32 else x.float()
    first, second = xf.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    out = xf * cos[:, None] + rotated * sin[:, None]
    return out if out.dtype == x.dtype else out.to(x.dtype)
