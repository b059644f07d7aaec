"""Typed, validated configuration of a Mixture-of-Transformers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = ["AttentionBackend", "ExpertConfig", "MoTConfig"]

AttentionBackend = Literal["sdpa", "flex"]


def _positive_int(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}.{name}: expected a positive int, received {value!r}")


def _check_keys(owner: str, data: Mapping[str, Any], cls: type) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{owner}: unknown keys {unknown}, expected a subset of {sorted(known)}")


@dataclass(frozen=True)
class ExpertConfig:
    """Size of one expert (its own norms, Q/K/V/O and MLP).

    Args:
        width: hidden size of the expert's token stream.
        mlp_width: hidden size of its GeGLU MLP.
        norm_eps: RMSNorm epsilon.
    """

    width: int
    mlp_width: int
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        _positive_int("ExpertConfig", "width", self.width)
        _positive_int("ExpertConfig", "mlp_width", self.mlp_width)
        if not (isinstance(self.norm_eps, float | int) and self.norm_eps > 0):
            raise ValueError(f"ExpertConfig.norm_eps: expected a positive number, received {self.norm_eps!r}")


@dataclass(frozen=True)
class MoTConfig:
    """A Mixture-of-Transformers: shared depth and head layout, one :class:`ExpertConfig` per expert.

    All experts share ``n_heads``, ``n_kv_heads`` and ``head_dim`` so that their tokens meet in one joint
    attention per layer; ``n_kv_heads < n_heads`` gives GQA (``1`` gives MQA).

    Args:
        n_layers: depth (every expert has this many layers).
        n_heads: query heads.
        n_kv_heads: key/value heads; must divide ``n_heads``.
        head_dim: size of one head (even, for rotary embeddings).
        experts: ``{name: ExpertConfig}``.
        rope_base: rotary base.
        use_rotary: apply rotary position embeddings to queries and keys (False for models that add
            their own position embeddings to the inputs, e.g. VAR's learned absolute positions).
        attention_backend: ``"sdpa"`` (boolean mask; the default, fastest eager choice on CPU) or
            ``"flex"`` (FlexAttention block mask).
    """

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    experts: Mapping[str, ExpertConfig] = field(default_factory=dict)
    rope_base: float = 10000.0
    use_rotary: bool = True
    attention_backend: AttentionBackend = "sdpa"

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads", "n_kv_heads", "head_dim"):
            _positive_int("MoTConfig", name, getattr(self, name))
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"MoTConfig.n_kv_heads: expected a divisor of n_heads={self.n_heads}, "
                f"received {self.n_kv_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"MoTConfig.head_dim: expected an even number, received {self.head_dim}")
        if not self.experts:
            raise ValueError("MoTConfig.experts: expected at least one expert, received none")
        experts = {}
        for name, expert in dict(self.experts).items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"MoTConfig.experts: expected non-empty str names, received {name!r}")
            if isinstance(expert, Mapping):
                _check_keys(f"MoTConfig.experts[{name!r}]", expert, ExpertConfig)
                expert = ExpertConfig(**expert)
            if not isinstance(expert, ExpertConfig):
                raise ValueError(f"MoTConfig.experts[{name!r}]: expected ExpertConfig, received {expert!r}")
            experts[name] = expert
        object.__setattr__(self, "experts", experts)
        if self.attention_backend not in ("sdpa", "flex"):
            raise ValueError(
                f"MoTConfig.attention_backend: expected 'sdpa' or 'flex', received {self.attention_backend!r}"
            )
        if not isinstance(self.use_rotary, bool):
            raise ValueError(f"MoTConfig.use_rotary: expected a bool, received {self.use_rotary!r}")
        if not self.rope_base > 0:
            raise ValueError(f"MoTConfig.rope_base: expected a positive number, received {self.rope_base!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable dict (inverse of :meth:`from_dict`)."""
        data = asdict(self)
        data["experts"] = {name: asdict(e) for name, e in self.experts.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MoTConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        _check_keys("MoTConfig", data, cls)
        return cls(**dict(data))
