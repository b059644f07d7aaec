"""The shape of a pi0 checkpoint: an :class:`F1Config` read from its tensors and LeRobot's ``config.json``.

What the tensors say (every value is read, none is assumed from a preset):

- trunk depth (layers of both Gemma experts, which must agree), each expert's width and MLP width;
- the attention layout: ``k_proj`` rows are ``n_kv_heads * head_dim`` and ``q_proj`` rows
  ``n_heads * head_dim``. Every pi0 variant (Gemma-2B, Gemma-300M and the small test shapes) uses one KV
  head, so ``n_kv_heads = 1`` unless the caller overrides ``trunk.n_kv_heads``;
- the vocabulary (rows of the tied ``embed_tokens``/``lm_head``);
- the SigLIP tower: width, depth, MLP width, patch size and image size (position-embedding rows are
  ``(image_size / patch)^2``). Its number of heads is not in the weights: SigLIP So400m/14 has head size 72,
  so a width divisible by 72 gets ``width / 72`` heads; any other width needs ``vision.heads``;
- the padded state and action dimensions (``state_proj`` columns, ``action_out_proj`` rows).

What only LeRobot's ``config.json`` (written by ``save_pretrained`` beside ``model.safetensors``) says, with
pi0's defaults when the file is absent: the cameras (``input_features`` of type ``VISUAL``), the real state
and action dimensions (``observation.state``/``action`` features; padding beyond them is masked),
``chunk_size``, ``n_action_steps``, ``num_inference_steps`` and ``tokenizer_max_length``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from f1.errors import CheckpointError, ConfigError
from f1.keys import IMAGE_KEY_PREFIX
from f1.model.config import F1Config
from f1.model.embodiment import Embodiment
from f1.model.presets import preset

__all__ = ["ShapeReading", "pi0_config_from_checkpoint"]

P = "model.paligemma_with_expert."
SIGLIP = P + "paligemma.vision_tower.vision_model."
GEMMA = P + "paligemma.language_model.model."
EXPERT = P + "gemma_expert.model."
SIGLIP_HEAD_DIM = 72  # So400m/14: width 1152, 16 heads

# pi0's defaults (LeRobot's PI0Config) for what only config.json can say
_DEFAULTS: dict[str, Any] = {
    "chunk_size": 50,
    "n_action_steps": 50,
    "num_inference_steps": 10,
    "tokenizer_max_length": 48,
}


@dataclass
class ShapeReading:
    """A config read from a checkpoint, and where each value came from.

    Attributes:
        config: the policy config (mode ``no_gen`` unless overridden).
        sources: config field -> ``"weights"``, ``"config.json"``, ``"pi0 default"`` or ``"override"``.
    """

    config: F1Config
    sources: dict[str, str] = field(default_factory=dict)


def _flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and path in ("vision", "language", "trunk", "generation", "action"):
            out |= _flatten(value, path + ".")
        else:
            out[path] = value
    return out


def _tensor(tensors: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in tensors:
        raise CheckpointError(f"pi0 checkpoint: missing {key!r}; is this a LeRobot/openpi pi0 file?")
    return tensors[key]


def _layers(tensors: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in tensors if (m := pattern.match(key))}
    if not indices or indices != set(range(max(indices) + 1)):
        raise CheckpointError(
            f"pi0 checkpoint: expected layers 0..N-1 under {prefix!r}, found {sorted(indices)}"
        )
    return len(indices)


def _positive(name: str, value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a positive int for {name!r}, received {value!r}")
    return value


def _lerobot_values(lerobot_config: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    if lerobot_config is None:
        return dict(_DEFAULTS), "pi0 default"
    if not isinstance(lerobot_config, Mapping):
        raise ConfigError(f"config.json: expected a JSON object, received {type(lerobot_config).__name__}")
    kind = lerobot_config.get("type")
    if kind != "pi0":
        raise ConfigError(
            f"config.json: expected a LeRobot pi0 config (type 'pi0'), received type {kind!r}"
            + (
                "; pi0.5 conditions the action expert on time differently and is not supported"
                if kind == "pi05"
                else ""
            )
        )
    values = {}
    for key, default in _DEFAULTS.items():
        values[key] = _positive(key, lerobot_config.get(key, default), "config.json")
    return values, "config.json"


def _features(
    lerobot_config: Mapping[str, Any] | None,
) -> tuple[tuple[str, ...] | None, int | None, int | None]:
    """Cameras, real state dim and real action dim named by LeRobot's config (None where it says nothing)."""
    if lerobot_config is None:
        return None, None, None
    inputs = lerobot_config.get("input_features") or {}
    outputs = lerobot_config.get("output_features") or {}
    if not isinstance(inputs, Mapping) or not isinstance(outputs, Mapping):
        raise ConfigError("config.json: input_features and output_features must be JSON objects")

    def dim(feature: Any, name: str) -> int | None:
        if feature is None:
            return None
        shape = feature.get("shape") if isinstance(feature, Mapping) else None
        if not isinstance(shape, list) or len(shape) != 1:
            raise ConfigError(f"config.json: {name}.shape: expected [D], received {shape!r}")
        return _positive(f"{name}.shape", shape[0], "config.json")

    cameras = tuple(
        key[len(IMAGE_KEY_PREFIX) :]
        for key, feature in inputs.items()
        if key.startswith(IMAGE_KEY_PREFIX)
        and isinstance(feature, Mapping)
        and feature.get("type") == "VISUAL"
    )
    return (
        cameras or None,
        dim(inputs.get("observation.state"), "observation.state"),
        dim(outputs.get("action"), "action"),
    )


def pi0_config_from_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    lerobot_config: Mapping[str, Any] | None = None,
    *,
    embodiment: str = "pi0",
    overrides: Mapping[str, Any] | None = None,
) -> ShapeReading:
    """The :class:`F1Config` (mode ``no_gen``, pi0's time convention) that a pi0 checkpoint fits.

    Args:
        state_dict: the checkpoint's tensors, keys in the published (transformers 4.49) layout: pass them
            renamed from newer transformers layouts (:func:`f1.model.convert_checkpoint` does both).
        lerobot_config: LeRobot's ``config.json`` beside the weights (parsed), or None (pi0's defaults).
        embodiment: name of the embodiment that receives the action heads.
        overrides: dotted or nested config overrides (``{"vision.heads": 4, "mode": "f1"}``), applied last;
            ``trunk.n_kv_heads`` and ``vision.heads`` also decide how the weights are read.

    Raises:
        CheckpointError: the file lacks a tensor the shape is read from, or its experts disagree.
        ConfigError: a value that is not in the weights cannot be decided (say it with ``overrides``),
            or an override is unknown or invalid.
    """
    flat = _flatten(overrides or {})
    sources: dict[str, str] = {}
    values, origin = _lerobot_values(lerobot_config)
    cameras, real_state, real_action = _features(lerobot_config)

    layers = _layers(state_dict, GEMMA + "layers.")
    expert_layers = _layers(state_dict, EXPERT + "layers.")
    if expert_layers != layers:
        raise CheckpointError(
            f"pi0 checkpoint: the action expert has {expert_layers} layers, the language model {layers}; "
            "one joint attention per layer needs the same depth"
        )
    n_kv = _positive("trunk.n_kv_heads", flat.get("trunk.n_kv_heads", 1), "overrides")
    sources["trunk.n_kv_heads"] = "override" if "trunk.n_kv_heads" in flat else "pi0 default"
    attention = {}
    for name, prefix in (("understanding", GEMMA), ("action", EXPERT)):
        q_rows = _tensor(state_dict, prefix + "layers.0.self_attn.q_proj.weight").shape[0]
        kv_rows = _tensor(state_dict, prefix + "layers.0.self_attn.k_proj.weight").shape[0]
        attention[name] = (q_rows, kv_rows)
    if attention["understanding"] != attention["action"]:
        raise CheckpointError(
            f"pi0 checkpoint: q/k projection rows differ between the experts {attention}; "
            "a joint attention needs one head layout"
        )
    q_rows, kv_rows = attention["understanding"]
    if kv_rows % n_kv or q_rows % (kv_rows // n_kv):
        raise ConfigError(
            f"trunk.n_kv_heads: {n_kv} KV heads do not divide k_proj's {kv_rows} rows and q_proj's {q_rows}"
        )
    head_dim = kv_rows // n_kv
    widths = {
        "understanding": _tensor(state_dict, GEMMA + "norm.weight").shape[0],
        "action": _tensor(state_dict, EXPERT + "norm.weight").shape[0],
    }
    mlps = {
        name: _tensor(state_dict, prefix + "layers.0.mlp.gate_proj.weight").shape[0]
        for name, prefix in (("understanding", GEMMA), ("action", EXPERT))
    }
    embedding = state_dict.get(GEMMA + "embed_tokens.weight")
    if embedding is None:
        embedding = _tensor(state_dict, P + "paligemma.language_model.lm_head.weight")

    patch = _tensor(state_dict, SIGLIP + "embeddings.patch_embedding.weight")
    positions = _tensor(state_dict, SIGLIP + "embeddings.position_embedding.weight").shape[0]
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise CheckpointError(f"pi0 checkpoint: {positions} SigLIP positions are not a square grid")
    vision_width, patch_size = patch.shape[0], patch.shape[-1]
    fc1 = _tensor(state_dict, SIGLIP + "encoder.layers.0.mlp.fc1.weight").shape[0]
    mlp_ratio = fc1 / vision_width
    if int(vision_width * mlp_ratio) != fc1:  # timm builds int(width * ratio) hidden units
        mlp_ratio = (fc1 + 0.5) / vision_width
    if "vision.heads" in flat:
        vision_heads = _positive("vision.heads", flat["vision.heads"], "overrides")
        sources["vision.heads"] = "override"
    elif vision_width % SIGLIP_HEAD_DIM == 0:
        vision_heads = vision_width // SIGLIP_HEAD_DIM
        sources["vision.heads"] = "SigLIP head size 72"
    else:
        raise ConfigError(
            f"vision.heads: the SigLIP tower's {vision_width}-wide attention could have any number of heads "
            f"and its width is not a multiple of So400m's head size {SIGLIP_HEAD_DIM}; "
            "say it with an override (f1 convert --set vision.heads=N)"
        )

    state_pad = _tensor(state_dict, "model.state_proj.weight").shape[1]
    action_pad = _tensor(state_dict, "model.action_out_proj.weight").shape[0]
    real_action = action_pad if real_action is None else real_action
    if real_action > action_pad or (real_state is not None and real_state > state_pad):
        raise CheckpointError(
            f"config.json: state {real_state} / action {real_action} dims exceed the weights' padded "
            f"{state_pad} / {action_pad}"
        )
    robot = Embodiment(
        name=embodiment,
        state_dim=state_pad,
        action_dim=action_pad,
        action_mask=tuple(i < real_action for i in range(action_pad)),
    )

    base = preset("pi0")
    config = base.with_overrides(
        {
            "name": "pi0-checkpoint",
            "cameras": cameras or base.cameras,
            "vision": {
                "image_size": grid * patch_size,
                "patch_size": patch_size,
                "width": vision_width,
                "depth": _layers(state_dict, SIGLIP + "encoder.layers."),
                "heads": vision_heads,
                "mlp_ratio": mlp_ratio,
            },
            "language": {"vocab_size": embedding.shape[0], "max_length": values["tokenizer_max_length"]},
            "trunk": {
                "n_layers": layers,
                "n_heads": q_rows // head_dim,
                "n_kv_heads": n_kv,
                "head_dim": head_dim,
                "understanding_width": widths["understanding"],
                "understanding_mlp": mlps["understanding"],
                # a generation expert (mode f1 by override) gets the action expert's shape
                "generation_width": widths["action"],
                "generation_mlp": mlps["action"],
                "action_width": widths["action"],
                "action_mlp": mlps["action"],
            },
            "generation": {"history_heads": math.gcd(widths["action"], 8)},
            "action": {
                "chunk_size": values["chunk_size"],
                "n_action_steps": min(values["n_action_steps"], values["chunk_size"]),
                "flow_steps": values["num_inference_steps"],
            },
            "embodiments": (robot,),
        }
    )
    for key in ("vision", "language.vocab_size", "trunk", "embodiments"):
        sources.setdefault(key, "weights")
    sources["cameras"] = "config.json" if cameras else "pi0 default"
    for key in ("language.max_length", "action.chunk_size", "action.n_action_steps", "action.flow_steps"):
        sources[key] = origin
    rest = {k: v for k, v in flat.items() if k not in ("trunk.n_kv_heads", "vision.heads")}
    if rest:
        config = config.with_overrides(rest)
        sources |= dict.fromkeys(rest, "override")
    return ShapeReading(config=config, sources=sources)
