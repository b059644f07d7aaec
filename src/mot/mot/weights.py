"""Import Gemma, PaliGemma-language-model and pi0 (LeRobot layout) weights into experts.

Only tensors are read (state dicts from ``safetensors`` or ``torch.load(weights_only=True)``); transformers is
not needed. An expert's parameter names are Gemma's, so importing is a prefix change plus strict checks of
names and shapes; nothing in the model changes unless every tensor is present with the expected shape.

A keys/values-only expert (``ExpertConfig.last_layer_kv_only``, e.g. pi0's PaliGemma prefix) does not build
the queries, output projection, post-attention norm and MLP of its last layer, nor its final norm: those
checkpoint tensors may be absent; present, they are checked like the others (a misshapen or non-finite one
is refused all the same), then dropped, and the logger ``mot.weights`` says which and why (INFO).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from mot.config import ExpertConfig, MoTConfig
from mot.errors import ArgumentTypeError, ConfigError, WeightImportError, describe
from mot.expert import Expert
from mot.model import MixtureOfTransformers

__all__ = [
    "GEMMA_LAYER_TENSORS",
    "PI0_EXPERT_PREFIXES",
    "PI0_VLM_PREFIXES",
    "WeightImportError",
    "find_gemma_prefix",
    "gemma_config_to_mot",
    "load_gemma_expert",
    "load_pi0",
]

# The tensors of one Gemma decoder layer in the transformers layout (and of one mot expert layer).
GEMMA_LAYER_TENSORS = (
    "input_layernorm.weight",
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)

# pi0's PaliGemma language model inside LeRobot checkpoints (newer transformers layout first), and its
# action expert; each may sit under a leading "model." (the policy wrapper).
PI0_VLM_PREFIXES = (
    "paligemma_with_expert.paligemma.model.language_model.",
    "paligemma_with_expert.paligemma.language_model.model.",
)
PI0_EXPERT_PREFIXES = ("paligemma_with_expert.gemma_expert.model.",)

log = logging.getLogger(__name__)


def _gemma_int(config: Mapping[str, Any], key: str, default: object = None) -> int:
    value = config.get(key, default)
    if isinstance(value, float) and value.is_integer():  # JSON writers sometimes emit 2048.0
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config[{key!r}]: expected a positive int, received {describe(value)}")
    return value


def _gemma_float(config: Mapping[str, Any], key: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, float | int)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"config[{key!r}]: expected a finite positive number, received {describe(value)}")
    return float(value)


def _check_model(model: object) -> MixtureOfTransformers:
    if not isinstance(model, MixtureOfTransformers):
        raise ArgumentTypeError(f"model: expected a MixtureOfTransformers, received {type(model).__name__}")
    return model


def _check_state_dict(state_dict: object) -> Mapping[str, Tensor]:
    if not isinstance(state_dict, Mapping):
        raise ArgumentTypeError(
            f"state_dict: expected a mapping {{name: tensor}}, received {type(state_dict).__name__}"
        )
    for key in state_dict:
        if not isinstance(key, str):
            raise WeightImportError(f"state_dict: expected str keys, received {key!r}")
    return state_dict


def gemma_config_to_mot(config: Mapping[str, Any], expert: str = "lm") -> MoTConfig:
    """A one-expert :class:`MoTConfig` from a transformers Gemma ``config.json`` dict.

    Args:
        config: the Gemma config as a dict (``hidden_size``, ``intermediate_size``, ``num_hidden_layers``,
            ``num_attention_heads``, ``num_key_value_heads``, ``head_dim``, ``rms_norm_eps``, and
            ``rope_theta`` or ``rope_parameters.rope_theta``). For PaliGemma pass its ``text_config``.
        expert: the name of the expert.
    """
    if not isinstance(config, Mapping):
        raise ArgumentTypeError(f"config: expected a Gemma config dict, received {type(config).__name__}")
    act = config.get("hidden_act", config.get("hidden_activation", "gelu_pytorch_tanh"))
    if act not in ("gelu_pytorch_tanh", "gelu_tanh", None):
        raise ConfigError(
            f"config['hidden_act']: expected 'gelu_pytorch_tanh' (GeGLU tanh), received {act!r}"
        )
    missing = [
        k
        for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
        if k not in config
    ]
    if missing:
        raise ConfigError(f"config: missing Gemma keys {missing}")
    rope = config.get("rope_parameters") or {}
    if not isinstance(rope, Mapping):
        raise ConfigError(f"config['rope_parameters']: expected a dict, received {describe(rope)}")
    rope_key = "rope_parameters.rope_theta" if "rope_theta" in rope else "rope_theta"
    rope_base = _gemma_float(config, rope_key, rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    norm_eps = _gemma_float(config, "rms_norm_eps", config.get("rms_norm_eps", 1e-6))
    width = _gemma_int(config, "hidden_size")
    n_heads = _gemma_int(config, "num_attention_heads")
    head_dim = _gemma_int(config, "head_dim") if config.get("head_dim") else width // n_heads
    return MoTConfig(
        n_layers=_gemma_int(config, "num_hidden_layers"),
        n_heads=n_heads,
        n_kv_heads=_gemma_int(config, "num_key_value_heads", n_heads),
        head_dim=head_dim,
        experts={
            expert: ExpertConfig(
                width=width, mlp_width=_gemma_int(config, "intermediate_size"), norm_eps=norm_eps
            )
        },
        rope_base=rope_base,
    )


def find_gemma_prefix(state_dict: Mapping[str, Tensor], candidates: tuple[str, ...] | None = None) -> str:
    """The key prefix under which a Gemma decoder (``layers.*`` with a gated MLP, ``norm``) sits.

    Args:
        state_dict: any state dict (a full PaliGemma, a GemmaForCausalLM, a pi0 policy ...).
        candidates: prefixes to try in order (each also tried under a leading ``"model."``); None finds
            every prefix with Gemma layers and requires exactly one.
    """
    state_dict = _check_state_dict(state_dict)
    if candidates is not None and (
        isinstance(candidates, str)
        or not isinstance(candidates, tuple | list)
        or not all(isinstance(c, str) for c in candidates)
    ):
        raise ArgumentTypeError(
            f"candidates: expected a tuple of str prefixes or None, received {candidates!r}"
        )
    probe = "layers.0.mlp.gate_proj.weight"
    if candidates is not None:
        for prefix in candidates:
            for root in ("", "model."):
                if root + prefix + probe in state_dict:
                    return root + prefix
        raise WeightImportError(f"state_dict: no Gemma decoder under any of the prefixes {list(candidates)}")
    found = sorted(key[: -len(probe)] for key in state_dict if key.endswith(probe))
    if len(found) != 1:
        raise WeightImportError(
            f"state_dict: expected exactly one Gemma decoder (keys ending in {probe!r}), found prefixes "
            f"{found}; pass prefix= explicitly"
        )
    return found[0]


def _expert_tensors(
    model: MixtureOfTransformers, expert: str, state_dict: Mapping[str, Tensor], prefix: str
) -> tuple[dict[str, Tensor], list[str]]:
    """Map ``prefix`` + Gemma names to the expert's own parameter names, checking names, shapes, dtypes and
    that every value is finite (a NaN weight would make every output NaN).

    Returns the tensors to load and the keys of the Gemma tensors present that the expert does not build
    (:attr:`mot.Expert.unbuilt_tensors`; absent, they are not missing).
    """
    if not isinstance(expert, str) or expert not in model.experts:
        raise WeightImportError(f"expert: unknown expert {expert!r}, the model has {list(model.experts)}")
    unbuilt = set(model.experts[expert].unbuilt_tensors)
    with torch.device("meta"):  # the shapes of a full expert, unbuilt tensors included
        full = Expert(replace(model.config.experts[expert], last_layer_kv_only=False), model.config)
    target = full.state_dict()
    layer_prefix = prefix + "layers."
    depth = sum(1 for k in state_dict if k.startswith(layer_prefix) and k.endswith(GEMMA_LAYER_TENSORS[0]))
    if depth != model.config.n_layers:
        raise WeightImportError(
            f"state_dict: expected {model.config.n_layers} layers under {prefix!r} (the model's depth), "
            f"found {depth}"
        )
    names = [f"layers.{i}.{name}" for i in range(model.config.n_layers) for name in GEMMA_LAYER_TENSORS]
    names.append("norm.weight")
    mapped, dropped = {}, []
    for name in names:
        key = prefix + name
        if key not in state_dict:
            if name in unbuilt:
                continue
            raise WeightImportError(f"state_dict: missing key {key!r} for expert {expert!r}")
        tensor = state_dict[key]
        if not isinstance(tensor, Tensor):
            raise WeightImportError(
                f"state_dict[{key!r}]: expected a tensor, received {type(tensor).__name__}"
            )
        if not tensor.dtype.is_floating_point:
            raise WeightImportError(
                f"state_dict[{key!r}]: expected a floating-point tensor for expert {expert!r}, "
                f"received dtype {tensor.dtype}"
            )
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise WeightImportError(
                f"state_dict[{key!r}]: expected shape {tuple(target[name].shape)} for expert {expert!r}, "
                f"received {tuple(tensor.shape)}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise WeightImportError(
                f"state_dict[{key!r}]: expected finite values for expert {expert!r}, received "
                f"{int(tensor.isnan().sum())} NaN and {int(tensor.isinf().sum())} inf of {tensor.numel()}"
            )
        if name in unbuilt:
            dropped.append(key)
        else:
            mapped[name] = tensor
    return mapped, dropped


def _log_dropped(expert: str, dropped: list[str]) -> None:
    if dropped:
        log.info(
            "dropped %d tensors of expert %r, which it does not build (last_layer_kv_only: only its keys "
            "and values are read, so its last layer's queries, output projection, post-attention norm and "
            "MLP, and its final norm, feed nothing): %s",
            len(dropped),
            expert,
            ", ".join(dropped),
        )


def load_gemma_expert(
    model: MixtureOfTransformers,
    expert: str,
    state_dict: Mapping[str, Tensor],
    prefix: str | None = None,
) -> dict[str, Tensor]:
    """Load a Gemma decoder (transformers layout) into one expert, in place.

    Accepts ``GemmaModel`` (``layers.*``), ``GemmaForCausalLM`` (``model.layers.*``), PaliGemma
    (``model.language_model.layers.*`` or the older ``language_model.model.layers.*``) and any state dict
    with exactly one Gemma decoder, or an explicit ``prefix``. Tensors are cast to the model's dtype.

    Gemma multiplies token embeddings by ``sqrt(width)`` before the first layer; the expert does not (its
    inputs are embeddings), so scale what you feed it. A keys/values-only expert drops the tensors it does
    not build (see the module docstring).

    Returns:
        The other tensors under the prefix (e.g. ``{"embed_tokens.weight": ...}``), keyed without it
        (dropped tensors are not among them).
    """
    model, state_dict = _check_model(model), _check_state_dict(state_dict)
    if prefix is not None and not isinstance(prefix, str):
        raise ArgumentTypeError(f"prefix: expected a str or None, received {type(prefix).__name__}")
    prefix = find_gemma_prefix(state_dict) if prefix is None else prefix
    mapped, dropped = _expert_tensors(model, expert, state_dict, prefix)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        model.experts[expert].load_state_dict({k: v.to(dtype) for k, v in mapped.items()}, strict=True)
    _log_dropped(expert, dropped)
    used = {prefix + name for name in mapped} | set(dropped)
    return {
        key[len(prefix) :]: value
        for key, value in state_dict.items()
        if key.startswith(prefix) and key not in used
    }


def load_pi0(
    model: MixtureOfTransformers,
    state_dict: Mapping[str, Tensor],
    prefix_expert: str = "vlm",
    suffix_expert: str = "act",
) -> dict[str, Tensor]:
    """Load a pi0 policy state dict (LeRobot layout) into a two-expert model, in place.

    The PaliGemma language model goes to ``prefix_expert`` and the Gemma action expert to
    ``suffix_expert`` (pair with :meth:`mot.AttentionSpec.pi0`). Both are checked before either is written.
    Build ``prefix_expert`` with ``last_layer_kv_only=True`` (pi0 reads only its keys and values): the
    tensors it then does not build are dropped (see the module docstring).

    Returns:
        Every tensor that is not part of the two decoders (vision tower, projector, token embeddings,
        state/action/time projections), under its original key, for the caller to route.
    """
    model, state_dict = _check_model(model), _check_state_dict(state_dict)
    if prefix_expert == suffix_expert:
        raise WeightImportError(
            f"suffix_expert: expected an expert other than prefix_expert={prefix_expert!r} (the two decoders "
            f"would overwrite each other), received {suffix_expert!r}"
        )
    vlm_prefix = find_gemma_prefix(state_dict, PI0_VLM_PREFIXES)
    act_prefix = find_gemma_prefix(state_dict, PI0_EXPERT_PREFIXES)
    vlm, vlm_dropped = _expert_tensors(model, prefix_expert, state_dict, vlm_prefix)
    act, act_dropped = _expert_tensors(model, suffix_expert, state_dict, act_prefix)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        model.experts[prefix_expert].load_state_dict({k: v.to(dtype) for k, v in vlm.items()}, strict=True)
        model.experts[suffix_expert].load_state_dict({k: v.to(dtype) for k, v in act.items()}, strict=True)
    _log_dropped(prefix_expert, vlm_dropped)
    _log_dropped(suffix_expert, act_dropped)
    used = {vlm_prefix + k for k in vlm} | {act_prefix + k for k in act} | {*vlm_dropped, *act_dropped}
    return {key: value for key, value in state_dict.items() if key not in used}
