"""One expert: a stack of Gemma-style layers (own norms, Q/K/V/O, MLP) plus a final norm.

Parameter names follow the Gemma layout in transformers (``layers.{i}.self_attn.q_proj`` ...), so that a
Gemma state dict maps onto an expert by a prefix change only (see :mod:`mot.weights`).
"""

from __future__ import annotations

from torch import Tensor, nn

from mot.config import ExpertConfig, MoTConfig
from mot.errors import ArgumentTypeError, check_int
from mot.layers import GeGLU, RMSNorm

__all__ = ["Expert", "ExpertAttention", "ExpertLayer"]


def _check_configs(expert: object, config: object) -> None:
    if not isinstance(expert, ExpertConfig):
        raise ArgumentTypeError(f"expert: expected an ExpertConfig, received {type(expert).__name__}")
    if not isinstance(config, MoTConfig):
        raise ArgumentTypeError(f"config: expected a MoTConfig, received {type(config).__name__}")


class ExpertAttention(nn.Module):
    """The expert's projections into and out of the shared head layout (no biases)."""

    def __init__(self, width: int, n_heads: int, n_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        for name, value in (("width", width), ("n_heads", n_heads), ("n_kv_heads", n_kv_heads)):
            check_int(name, value)
        check_int("head_dim", head_dim)
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.q_proj = nn.Linear(width, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(width, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(width, n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, width, bias=False)


class ExpertLayer(nn.Module):
    """One layer of one expert, split around the joint attention that all experts share.

    ``x -> project(input_layernorm(x)) -> [joint attention with the other experts] -> finish`` where
    ``finish`` adds ``o_proj(attention)`` and then ``mlp(post_attention_layernorm(x))`` residually.

    The model calls both halves through the module (``layer(x)`` projects, ``layer(x, attended)``
    finishes), so that hooks on the layer (FSDP2's all-gathers, activation-checkpoint wrappers, profilers)
    see every use of its weights.
    """

    def __init__(self, expert: ExpertConfig, config: MoTConfig) -> None:
        super().__init__()
        _check_configs(expert, config)
        self.input_layernorm = RMSNorm(expert.width, expert.norm_eps)
        self.self_attn = ExpertAttention(expert.width, config.n_heads, config.n_kv_heads, config.head_dim)
        self.post_attention_layernorm = RMSNorm(expert.width, expert.norm_eps)
        self.mlp = GeGLU(expert.width, expert.mlp_width)

    def forward(self, x: Tensor, attended: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """``project(x)`` without ``attended``; ``finish(x, attended)`` with it."""
        return self.project(x) if attended is None else self.finish(x, attended)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, L, W) -> q (B, H, L, D), k (B, Hkv, L, D), v (B, Hkv, L, D)`` (before rotary)."""
        attn = self.self_attn
        batch, length, _ = x.shape
        h = self.input_layernorm(x)
        q = attn.q_proj(h).view(batch, length, attn.n_heads, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(batch, length, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(batch, length, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
        return q, k, v

    def finish(self, x: Tensor, attended: Tensor) -> Tensor:
        """Residual output projection and MLP: ``x (B, L, W), attended (B, L, H*D) -> (B, L, W)``."""
        x = x + self.self_attn.o_proj(attended)
        return x + self.mlp(self.post_attention_layernorm(x))


class Expert(nn.Module):
    """All layers of one expert and its final norm.

    Args:
        expert: the expert's sizes.
        config: the shared depth and head layout.
    """

    def __init__(self, expert: ExpertConfig, config: MoTConfig) -> None:
        super().__init__()
        _check_configs(expert, config)
        self.config = expert
        self.layers = nn.ModuleList(ExpertLayer(expert, config) for _ in range(config.n_layers))
        self.norm = RMSNorm(expert.width, expert.norm_eps)
