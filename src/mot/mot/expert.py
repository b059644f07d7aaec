"""One expert: a stack of Gemma-style layers (own norms, Q/K/V/O, MLP) plus a final norm.

Parameter names follow the Gemma layout in transformers (``layers.{i}.self_attn.q_proj`` ...), so that a
Gemma state dict maps onto an expert by a prefix change only (see :mod:`mot.weights`). An expert whose
hidden states nobody reads (``ExpertConfig.last_layer_kv_only``) builds only what its keys and values need:
its last layer lacks the tensors of :data:`KV_ONLY_UNBUILT_LAYER_TENSORS`, and it has no final norm.
"""

from __future__ import annotations

from torch import Tensor, nn

from mot.config import ExpertConfig, MoTConfig
from mot.errors import ArgumentTypeError, check_bool, check_int
from mot.layers import GeGLU, RMSNorm

__all__ = ["KV_ONLY_UNBUILT_LAYER_TENSORS", "Expert", "ExpertAttention", "ExpertLayer"]

#: The tensors of a full layer (Gemma names) that a keys/values-only layer does not build: they feed only
#: the layer's own output (queries -> attention output -> ``o_proj`` -> residual -> MLP), which nobody reads.
KV_ONLY_UNBUILT_LAYER_TENSORS: tuple[str, ...] = (
    "self_attn.q_proj.weight",
    "self_attn.o_proj.weight",
    "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)


def _check_configs(expert: object, config: object) -> None:
    if not isinstance(expert, ExpertConfig):
        raise ArgumentTypeError(f"expert: expected an ExpertConfig, received {type(expert).__name__}")
    if not isinstance(config, MoTConfig):
        raise ArgumentTypeError(f"config: expected a MoTConfig, received {type(config).__name__}")


class ExpertAttention(nn.Module):
    """The expert's projections into and out of the shared head layout (no biases).

    ``kv_only`` builds only ``k_proj`` and ``v_proj`` (the last layer of a keys/values-only expert).
    """

    def __init__(
        self, width: int, n_heads: int, n_kv_heads: int, head_dim: int, *, kv_only: bool = False
    ) -> None:
        super().__init__()
        for name, value in (("width", width), ("n_heads", n_heads), ("n_kv_heads", n_kv_heads)):
            check_int(name, value)
        check_int("head_dim", head_dim)
        check_bool("kv_only", kv_only)
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.kv_only = kv_only
        if not kv_only:
            self.q_proj = nn.Linear(width, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(width, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(width, n_kv_heads * head_dim, bias=False)
        if not kv_only:
            self.o_proj = nn.Linear(n_heads * head_dim, width, bias=False)


class ExpertLayer(nn.Module):
    """One layer of one expert, split around the joint attention that all experts share.

    ``x -> project(input_layernorm(x)) -> [joint attention with the other experts] -> finish`` where
    ``finish`` adds ``o_proj(attention)`` and then ``mlp(post_attention_layernorm(x))`` residually.

    The model calls both halves through the module (``layer(x)`` projects, ``layer(x, attended)``
    finishes), so that hooks on the layer (FSDP2's all-gathers, activation-checkpoint wrappers, profilers)
    see every use of its weights.

    ``kv_only`` (the last layer of a keys/values-only expert) builds only ``input_layernorm``, ``k_proj``
    and ``v_proj``: it gives the other experts its keys and values, and its own output is never computed.
    """

    def __init__(self, expert: ExpertConfig, config: MoTConfig, *, kv_only: bool = False) -> None:
        super().__init__()
        _check_configs(expert, config)
        check_bool("kv_only", kv_only)
        self.kv_only = kv_only
        self.input_layernorm = RMSNorm(expert.width, expert.norm_eps)
        self.self_attn = ExpertAttention(
            expert.width, config.n_heads, config.n_kv_heads, config.head_dim, kv_only=kv_only
        )
        if not kv_only:
            self.post_attention_layernorm = RMSNorm(expert.width, expert.norm_eps)
            self.mlp = GeGLU(expert.width, expert.mlp_width)

    def forward(self, x: Tensor, attended: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """``project(x)`` without ``attended``; ``finish(x, attended)`` with it."""
        return self.project(x) if attended is None else self.finish(x, attended)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, L, W) -> q (B, H, L, D), k (B, Hkv, L, D), v (B, Hkv, L, D)`` (before rotary).

        A ``kv_only`` layer has no queries and returns zeros in their place, so that the joint attention
        keeps one row per token; nothing reads what it computes for these rows.
        """
        attn = self.self_attn
        batch, length, _ = x.shape
        h = self.input_layernorm(x)
        if self.kv_only:
            q = h.new_zeros(batch, attn.n_heads, length, attn.head_dim)
        else:
            q = attn.q_proj(h).view(batch, length, attn.n_heads, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(batch, length, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(batch, length, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
        return q, k, v

    def finish(self, x: Tensor, attended: Tensor) -> Tensor:
        """Residual output projection and MLP: ``x (B, L, W), attended (B, L, H*D) -> (B, L, W)``.

        A ``kv_only`` layer returns ``x`` unchanged (it has no output projection or MLP; nothing reads
        its output, see :meth:`Expert.output`).
        """
        if self.kv_only:
            return x
        x = x + self.self_attn.o_proj(attended)
        return x + self.mlp(self.post_attention_layernorm(x))


class Expert(nn.Module):
    """All layers of one expert and its final norm.

    With ``expert.last_layer_kv_only`` the last layer is keys/values-only (see :class:`ExpertLayer`) and
    there is no final norm: :attr:`unbuilt_tensors` names what a full expert has and this one lacks.

    Args:
        expert: the expert's sizes.
        config: the shared depth and head layout.
    """

    def __init__(self, expert: ExpertConfig, config: MoTConfig) -> None:
        super().__init__()
        _check_configs(expert, config)
        self.config = expert
        last = config.n_layers - 1
        self.layers = nn.ModuleList(
            ExpertLayer(expert, config, kv_only=expert.last_layer_kv_only and i == last)
            for i in range(config.n_layers)
        )
        self.norm = None if expert.last_layer_kv_only else RMSNorm(expert.width, expert.norm_eps)

    @property
    def has_outputs(self) -> bool:
        """Whether the expert computes hidden states (False: it only gives keys and values)."""
        return self.norm is not None

    @property
    def unbuilt_tensors(self) -> tuple[str, ...]:
        """State-dict names (Gemma layout, relative to the expert) of the tensors that a full expert of
        this shape has and this one does not build; empty unless ``last_layer_kv_only``."""
        if self.has_outputs:
            return ()
        last = len(self.layers) - 1
        return (*(f"layers.{last}.{name}" for name in KV_ONLY_UNBUILT_LAYER_TENSORS), "norm.weight")

    def output(self, x: Tensor) -> Tensor | None:
        """The final norm of the last layer's hidden states ``(B, L, W)``; None for a keys/values-only
        expert (its last layer computed no output)."""
        return None if self.norm is None else self.norm(x)
