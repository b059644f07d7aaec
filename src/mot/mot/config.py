"""Typed, validated configuration of a Mixture-of-Transformers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal

from mot.errors import ConfigError, check_int, describe

__all__ = ["AttentionBackend", "ConfigError", "ExpertConfig", "MoTConfig"]

AttentionBackend = Literal["sdpa", "flex"]


def _positive_int(owner: str, name: str, value: object) -> None:
    check_int(f"{owner}.{name}", value, error=ConfigError)


def _positive_number(owner: str, name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, float | int)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise ConfigError(f"{owner}.{name}: expected a finite positive number, received {describe(value)}")


def _check_keys(owner: str, data: object, cls: type) -> dict[str, Any]:
    """``data`` as a dict after checking it is a mapping with known keys and every required key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{owner}: expected a mapping of {cls.__name__} fields, received {describe(data)}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(map(repr, set(data) - known))
    if unknown:
        raise ConfigError(
            f"{owner}: unknown keys [{', '.join(unknown)}], expected a subset of {sorted(known)}"
        )
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise ConfigError(f"{owner}: missing keys {missing}, required keys are {required}")
    return dict(data)


@dataclass(frozen=True)
class ExpertConfig:
    """Size of one expert (its own norms, Q/K/V/O and MLP).

    Args:
        width: hidden size of the expert's token stream.
        mlp_width: hidden size of its GeGLU MLP.
        norm_eps: RMSNorm epsilon.
        last_layer_kv_only: the expert's hidden states are never read, only the keys and values it
            gives the other experts' queries (F1's and pi0's understanding expert). Its last layer then
            builds only ``input_layernorm``, ``k_proj`` and ``v_proj``: the layer's queries, output
            projection, post-attention norm and MLP, and the expert's final norm, would feed nothing but
            its own unread output (they would never get a gradient, so DDP would need
            ``find_unused_parameters``). The model returns no outputs for the expert's segments and
            still caches their keys and values of every layer.
    """

    width: int
    mlp_width: int
    norm_eps: float = 1e-6
    last_layer_kv_only: bool = False

    def __post_init__(self) -> None:
        _positive_int("ExpertConfig", "width", self.width)
        _positive_int("ExpertConfig", "mlp_width", self.mlp_width)
        _positive_number("ExpertConfig", "norm_eps", self.norm_eps)
        if not isinstance(self.last_layer_kv_only, bool):
            raise ConfigError(
                "ExpertConfig.last_layer_kv_only: expected a bool, received "
                f"{describe(self.last_layer_kv_only)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable dict (inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], owner: str = "ExpertConfig") -> ExpertConfig:
        """Build from :meth:`to_dict` output; unknown or missing keys raise :class:`~mot.ConfigError`.

        ``owner`` names the dict in messages (e.g. ``"MoTConfig.experts['und']"``).
        """
        return cls(**_check_keys(owner, data, cls))


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
            raise ConfigError(
                f"MoTConfig.n_kv_heads: expected a divisor of n_heads={self.n_heads}, "
                f"received {self.n_kv_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"MoTConfig.head_dim: expected an even number, received {self.head_dim}")
        if not isinstance(self.experts, Mapping):
            raise ConfigError(
                f"MoTConfig.experts: expected a mapping {{name: ExpertConfig}}, received "
                f"{describe(self.experts)}"
            )
        if not self.experts:
            raise ConfigError("MoTConfig.experts: expected at least one expert, received none")
        experts = {}
        for name, expert in dict(self.experts).items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"MoTConfig.experts: expected non-empty str names, received {name!r}")
            if isinstance(expert, Mapping):
                expert = ExpertConfig.from_dict(expert, owner=f"MoTConfig.experts[{name!r}]")
            if not isinstance(expert, ExpertConfig):
                raise ConfigError(
                    f"MoTConfig.experts[{name!r}]: expected an ExpertConfig or its dict, received "
                    f"{describe(expert)}"
                )
            experts[name] = expert
        if all(expert.last_layer_kv_only for expert in experts.values()):
            # nothing would read the last layer's keys and values either
            raise ConfigError(
                "MoTConfig.experts: expected at least one expert with last_layer_kv_only=False (whose "
                f"queries read the others' keys and values), received it on every expert {list(experts)}"
            )
        object.__setattr__(self, "experts", experts)
        if not isinstance(self.attention_backend, str) or self.attention_backend not in ("sdpa", "flex"):
            raise ConfigError(
                f"MoTConfig.attention_backend: expected 'sdpa' or 'flex', received {self.attention_backend!r}"
            )
        if not isinstance(self.use_rotary, bool):
            raise ConfigError(f"MoTConfig.use_rotary: expected a bool, received {self.use_rotary!r}")
        _positive_number("MoTConfig", "rope_base", self.rope_base)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable dict (inverse of :meth:`from_dict`)."""
        data = asdict(self)
        data["experts"] = {name: asdict(e) for name, e in self.experts.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MoTConfig:
        """Build from :meth:`to_dict` output; unknown or missing keys raise :class:`~mot.ConfigError`."""
        return cls(**_check_keys("MoTConfig", data, cls))
