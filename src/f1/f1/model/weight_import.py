"""Import published weights: the F1 checkpoint, LeRobot pi0, PaliGemma and the VAR VQ-VAE.

Every source key is either mapped onto a key of the policy (with a documented transform), or dropped for a
stated reason (the unused LM heads, the published fixed-4-frame history encoder, buffers, and the last-layer
queries, output projection, post-attention norm and MLP and the final norm of the PaliGemma language model,
which the policy's keys/values-only understanding expert does not build: nothing reads their output);
anything else is an *unexpected* key. Every key the format must hold for the parts it fills is *expected*.
Unexpected, missing and misshapen keys are all reported in one :class:`CheckpointError` before any weight
changes: there is no silent non-strict load. The returned :class:`ImportReport` says what was loaded, what was
dropped and why, and which parts of the policy the source does not provide (they keep their values).

Key layouts (``P = model.paligemma_with_expert``), transformers 4.49 as published; the newer
``paligemma.model.{language_model, vision_tower, multi_modal_projector}`` layout is accepted too:

- SigLIP ``P.paligemma.vision_tower.vision_model.*`` -> timm ``understanding.vision.backbone.*``
  (q/k/v concatenated into ``qkv``; position embedding reshaped to ``(1, N, D)``);
- ``P.paligemma.multi_modal_projector.linear`` -> ``understanding.projector.linear``;
- ``P.paligemma.language_model.model.embed_tokens`` -> ``understanding.language.embed_tokens`` (rows
  beyond the vocabulary dropped: PaliGemma's 257216 -> pi0's 257152), ``...model.layers.*``/``norm`` ->
  ``trunk.experts.und.*`` (same names). The embedding is tied to ``P.paligemma.language_model.lm_head``:
  a file may hold either tensor or both. LeRobot's ``save_pretrained`` writes only ``lm_head`` (as do the
  hub's ``lerobot/pi0`` files); the embedding is then read from it. When both are present they must be
  equal (a file whose two copies differ is refused);
- ``P.gemma_expert.model.*`` -> ``trunk.experts.act.*``;
  ``P.gemma_wm_expert.model.*`` -> ``trunk.experts.gen.*``;
- ``model.{state_proj, action_in_proj, action_time_mlp_in, action_time_mlp_out, action_out_proj}`` -> the
  adapter of one embodiment (32-dim, pi0's time convention: set ``action.time_convention = "pi0"``);
- ``model.{wm_embeddings, wm_sos_token_embs, wm_output_position_embedding, lvl_embed, wm_out_layer_norm,
  wm_out_proj}`` -> ``generation.{embedding, head}``; ``model.vae.*`` (or a bare VAR file) ->
  ``generation.tokenizer.*``.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file

from f1.errors import CheckpointError, ConfigError
from f1.model.checkpoint import load_model, save_model
from f1.model.checkpoint_shape import pi0_config_from_checkpoint
from f1.model.config import F1Config
from f1.model.f1_model import F1Model
from f1.model.policy import F1Policy
from f1.model.presets import preset
from mot import GEMMA_LAYER_TENSORS

__all__ = [
    "SOURCE_FORMATS",
    "ImportReport",
    "convert_checkpoint",
    "import_weights",
    "read_lerobot_config",
    "read_state_dict",
]

SourceFormat = Literal["f1", "pi0", "paligemma", "var_vqvae"]
SOURCE_FORMATS: tuple[str, ...] = ("f1", "pi0", "paligemma", "var_vqvae")

P = "model.paligemma_with_expert."
PALI = P + "paligemma."
SIGLIP = PALI + "vision_tower.vision_model."
GEMMA = PALI + "language_model.model."
ACTION_HEADS = {
    "state_proj": "state_encoder.state_in",
    "action_in_proj": "action_encoder.action_in",
    "action_time_mlp_in": "action_encoder.fuse_in",
    "action_time_mlp_out": "action_encoder.fuse_out",
    "action_out_proj": "action_decoder.velocity_out",
}

# source keys that are deliberately unused, with the reason (glob patterns)
EMBED_TOKENS = GEMMA + "embed_tokens.weight"
LM_HEAD = PALI + "language_model.lm_head.weight"

DROPPED: dict[str, str] = {
    LM_HEAD: "LM head tied to embed_tokens (checked equal); the policy never decodes text",
    P + "gemma_expert.lm_head.weight": "unused LM head of the action expert (257152 x 1024 in pi0)",
    P + "gemma_wm_expert.lm_head.weight": "unused LM head of the generation expert (257152 x 1024 in F1)",
    SIGLIP + "head.*": "SigLIP attention-pooling head, unused by PaliGemma",
    "model.temporal_conv.*": "published history encoder (exactly 4 frames); ours fuses any number of frames",
    "model.wm_hist_pos_embs": "published history encoder (exactly 4 frames); ours fuses any number of frames",
    "model.wm_cond_pos_embs": "published history encoder (exactly 4 frames); ours fuses any number of frames",
    "model.lvl_1L": "buffer of level ids, recomputed from the scale schedule",
    "model.mask_embedding": "buffer (published defect: never learned) for input masking",
    "model.cfg_embedding": "buffer (published defect: never learned) for classifier-free guidance",
}


@dataclass
class ImportReport:
    """What an import did.

    Attributes:
        source: the source format.
        loaded: policy keys written.
        transformed: policy key -> the transform applied (concatenation, reshape, row truncation).
        dropped: source key -> why it is not used.
        not_provided: policy keys the source has no weights for (they keep their values), by component.
        shape: config field -> where its value came from, when :func:`convert_checkpoint` read the
            policy's shape from the checkpoint (empty otherwise).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    transformed: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    not_provided: dict[str, list[str]] = field(default_factory=dict)
    shape: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"imported {len(self.loaded)} tensors from a {self.source!r} checkpoint"]
        transforms: dict[str, list[str]] = {}
        for key, how in self.transformed.items():
            transforms.setdefault(how, []).append(key)
        lines += [
            f"  {how}: {keys[0]}" + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")
            for how, keys in transforms.items()
        ]
        lines += [f"  dropped {key}: {why}" for key, why in sorted(self.dropped.items())]
        lines += [
            f"  not provided by the source: {part} ({len(keys)} tensors)"
            for part, keys in self.not_provided.items()
        ]
        origins: dict[str, list[str]] = {}
        for key, origin in self.shape.items():
            origins.setdefault(origin, []).append(key)
        lines += [f"  shape from {origin}: {', '.join(keys)}" for origin, keys in origins.items()]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Rule:
    """Target key <- sources (one, or several concatenated), with an optional transform."""

    target: str
    sources: tuple[str, ...]
    transform: Callable[[list[torch.Tensor], torch.Size], torch.Tensor] | None = None
    describe: str = ""


def _copy(tensors: list[torch.Tensor], shape: torch.Size) -> torch.Tensor:
    return tensors[0]


def _concat(tensors: list[torch.Tensor], shape: torch.Size) -> torch.Tensor:
    return torch.cat(tensors, dim=0)


def _reshape(tensors: list[torch.Tensor], shape: torch.Size) -> torch.Tensor:
    if tensors[0].numel() != shape.numel():
        return tensors[0]  # reported as a shape mismatch
    return tensors[0].reshape(shape)


def _truncate_rows(tensors: list[torch.Tensor], shape: torch.Size) -> torch.Tensor:
    source = tensors[0]
    if source.ndim == 2 and source.shape[1] == shape[1] and source.shape[0] >= shape[0]:
        return source[: shape[0]]
    return source


def _vision_rules(depth: int) -> list[_Rule]:
    v, t = SIGLIP, "understanding.vision.backbone."
    rules = [
        _Rule(t + "patch_embed.proj.weight", (v + "embeddings.patch_embedding.weight",)),
        _Rule(t + "patch_embed.proj.bias", (v + "embeddings.patch_embedding.bias",)),
        _Rule(
            t + "pos_embed", (v + "embeddings.position_embedding.weight",), _reshape, "(N, D) -> (1, N, D)"
        ),
        _Rule(t + "norm.weight", (v + "post_layernorm.weight",)),
        _Rule(t + "norm.bias", (v + "post_layernorm.bias",)),
    ]
    pairs = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.proj": "self_attn.out_proj"}
    pairs |= {"mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for i in range(depth):
        block, layer = f"{t}blocks.{i}.", f"{v}encoder.layers.{i}."
        for suffix in ("weight", "bias"):
            rules += [
                _Rule(f"{block}{ours}.{suffix}", (f"{layer}{theirs}.{suffix}",))
                for ours, theirs in pairs.items()
            ]
            qkv = tuple(f"{layer}self_attn.{n}_proj.{suffix}" for n in "qkv")
            rules.append(_Rule(f"{block}attn.qkv.{suffix}", qkv, _concat, "q, k, v concatenated"))
    return rules


#: The published Gemma decoder of each trunk expert.
EXPERT_SOURCES: dict[str, str] = {
    "und": GEMMA,
    "act": P + "gemma_expert.model.",
    "gen": P + "gemma_wm_expert.model.",
}


def _expert_rules(model: F1Model, expert: str) -> list[_Rule]:
    """Gemma names map one to one, but for the tensors the expert does not build (see :func:`_unbuilt`)."""
    prefix, unbuilt = EXPERT_SOURCES[expert], set(model.trunk.experts[expert].unbuilt_tensors)
    names = [f"layers.{i}.{name}" for i in range(model.config.trunk.n_layers) for name in GEMMA_LAYER_TENSORS]
    return [
        _Rule(f"trunk.experts.{expert}.{name}", (prefix + name,))
        for name in ["norm.weight", *names]
        if name not in unbuilt
    ]


def _unbuilt(model: F1Model, rules: list[_Rule]) -> dict[str, str]:
    """Source key -> reason, for the tensors of the filled experts that the trunk does not build."""
    filled = {rule.target.split(".")[2] for rule in rules if rule.target.startswith("trunk.experts.")}
    reasons = model.trunk.unbuilt_tensors()
    return {
        EXPERT_SOURCES[expert] + name: reasons[f"experts.{expert}.{name}"]
        for expert in sorted(filled)
        for name in model.trunk.experts[expert].unbuilt_tensors
    }


def _understanding_rules(model: F1Model) -> list[_Rule]:
    config = model.config
    depth = config.vision.depth
    if depth is None:
        raise ConfigError("vision.depth: set it explicitly to import SigLIP weights (So400m/14: 27)")
    rules = _vision_rules(depth)
    rules += [
        _Rule("understanding.projector.linear.weight", (PALI + "multi_modal_projector.linear.weight",)),
        _Rule("understanding.projector.linear.bias", (PALI + "multi_modal_projector.linear.bias",)),
        _Rule(
            "understanding.language.embed_tokens.weight",
            (EMBED_TOKENS,),
            _truncate_rows,
            f"rows beyond the vocabulary ({config.language.vocab_size}) dropped",
        ),
    ]
    return rules + _expert_rules(model, "und")


def _action_rules(model: F1Model, embodiment: str) -> list[_Rule]:
    rules = _expert_rules(model, "act")
    for theirs, ours in ACTION_HEADS.items():
        for suffix in ("weight", "bias"):
            rules.append(_Rule(f"adapters.{embodiment}.{ours}.{suffix}", (f"model.{theirs}.{suffix}",)))
    return rules


def _generation_rules(model: F1Model) -> list[_Rule]:
    rules = _expert_rules(model, "gen")
    one_token = "(1, 1, D) -> (l_0, D)"
    rules += [
        _Rule("generation.embedding.word_embed.weight", ("model.wm_embeddings.weight",)),
        _Rule("generation.embedding.word_embed.bias", ("model.wm_embeddings.bias",)),
        _Rule("generation.embedding.sos", ("model.wm_sos_token_embs",), _reshape, one_token),
        _Rule(
            "generation.embedding.pos_embed",
            ("model.wm_output_position_embedding",),
            _reshape,
            "(1, L, D) -> (L, D)",
        ),
        _Rule("generation.embedding.level_embed.weight", ("model.lvl_embed.weight",)),
        _Rule("generation.head.norm.weight", ("model.wm_out_layer_norm.weight",)),
        _Rule("generation.head.norm.bias", ("model.wm_out_layer_norm.bias",)),
        _Rule("generation.head.proj.weight", ("model.wm_out_proj.weight",)),
        _Rule("generation.head.proj.bias", ("model.wm_out_proj.bias",)),
    ]
    return rules


def _vqvae_rules(target_keys: list[str], prefix: str) -> list[_Rule]:
    start = "generation.tokenizer."
    return [_Rule(key, (prefix + key[len(start) :],)) for key in target_keys if key.startswith(start)]


# transformers >= 4.50 moved PaliGemma's submodules; map them back to the published (4.49) names
_NEWER_PALIGEMMA_LAYOUT = (
    ("model.language_model.", "language_model.model."),
    ("model.vision_tower.", "vision_tower."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("lm_head.", "language_model.lm_head."),
)


def _normalize_keys(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Published F1/pi0 key names for any accepted layout (a bare PaliGemma file is prefixed with ``P``)."""
    out = {}
    for key, value in state_dict.items():
        if source == "paligemma":
            key = PALI + key
        for old, new in _NEWER_PALIGEMMA_LAYOUT:
            if key.startswith(PALI + old):
                key = PALI + new + key[len(PALI + old) :]
        out[key] = value
    return out


def _untie_embedding(tensors: dict[str, torch.Tensor]) -> str | None:
    """Make ``embed_tokens`` present when the file holds only the tied ``lm_head`` (in place).

    Returns a note for the report when the embedding was read from ``lm_head``. Raises
    :class:`CheckpointError` when both are present and differ.
    """
    embed, head = tensors.get(EMBED_TOKENS), tensors.get(LM_HEAD)
    if head is None:
        return None
    if embed is None:
        tensors[EMBED_TOKENS] = tensors.pop(LM_HEAD)
        return "read from the tied lm_head.weight (the file has no embed_tokens)"
    if embed.shape != head.shape or not torch.equal(embed, head):
        difference = (
            f"max |difference| {float((embed.float() - head.float()).abs().max()):.3g}"
            if embed.shape == head.shape
            else f"shapes {tuple(embed.shape)} and {tuple(head.shape)}"
        )
        raise CheckpointError(
            f"{LM_HEAD}: expected the tied copy of {EMBED_TOKENS}, received a different tensor "
            f"({difference}); the file's language embedding is ambiguous"
        )
    return None


def _rules(model: F1Model, source: str, embodiment: str | None) -> list[_Rule]:
    config: F1Config = model.config
    targets = list(model.state_dict())
    if source == "var_vqvae":
        if model.generation is None:
            raise ConfigError(f"source: mode {config.mode!r} has no VQ-VAE to import into")
        return _vqvae_rules(targets, "")
    rules = _understanding_rules(model)
    if source in ("pi0", "f1"):
        if config.action.time_convention != "pi0":
            raise ConfigError(
                "action.time_convention: pi0/F1 action heads embed t = 1 - tau and predict eps - a; "
                "build the policy with action.time_convention='pi0' to import them"
            )
        name = embodiment or config.default_embodiment_name
        if name not in model.adapters:
            raise ConfigError(f"embodiment: expected one of {list(model.adapters)}, received {name!r}")
        rules += _action_rules(model, name)
    if source == "f1":
        if not config.has_foresight:
            raise ConfigError(
                f"source: an F1 checkpoint needs mode 'f1', the policy has mode {config.mode!r}"
            )
        rules += _generation_rules(model) + _vqvae_rules(targets, "model.vae.")
    return rules


def import_weights(
    policy: F1Model | F1Policy,
    state_dict: Mapping[str, torch.Tensor],
    source: SourceFormat,
    *,
    embodiment: str | None = None,
) -> ImportReport:
    """Load ``state_dict`` (a ``source`` checkpoint) into ``policy`` strictly; see the module docstring.

    Args:
        policy: the :class:`~f1.model.F1Model` (or the :class:`~f1.model.F1Policy` around it) to fill;
            its config decides the shapes.
        state_dict: source tensors, keys as published.
        source: ``"f1"`` (everything), ``"pi0"`` (understanding + action experts and heads),
            ``"paligemma"`` (understanding) or ``"var_vqvae"`` (the tokenizer).
        embodiment: adapter that receives the action heads (default: the default embodiment).

    Raises:
        CheckpointError: listing every missing, unexpected or misshapen key (nothing is changed).
    """
    if source not in SOURCE_FORMATS:
        raise ConfigError(f"source: expected one of {list(SOURCE_FORMATS)}, received {source!r}")
    tensors = _normalize_keys(state_dict, source)
    untied = _untie_embedding(tensors) if source != "var_vqvae" else None
    model = policy.model if isinstance(policy, F1Policy) else policy
    if not isinstance(model, F1Model):
        raise ConfigError(f"policy: expected an F1Model or F1Policy, received {type(policy).__name__}")
    rules = _rules(model, source, embodiment)
    unbuilt = _unbuilt(model, rules)
    targets = model.state_dict()
    used: set[str] = set()
    missing, shapes, values = [], [], {}
    for rule in rules:
        absent = [key for key in rule.sources if key not in tensors]
        if absent:
            missing += absent
            continue
        used.update(rule.sources)
        shape = targets[rule.target].shape
        value = (rule.transform or _copy)([tensors[key] for key in rule.sources], shape)
        if value.shape != shape:
            got = [tuple(tensors[k].shape) for k in rule.sources]
            shapes.append(
                f"{rule.target} <- {', '.join(rule.sources)}: expected {tuple(shape)}, received {got}"
            )
            continue
        values[rule.target] = value
    dropped = {}
    unexpected = []
    for key in sorted(set(tensors) - used):
        patterns = (why for pattern, why in DROPPED.items() if fnmatch.fnmatchcase(key, pattern))
        reason = unbuilt.get(key) or next(patterns, None)
        if reason is None:
            unexpected.append(key)
        else:
            dropped[key] = reason
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {sorted(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {unexpected}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {shapes}")
        raise CheckpointError(f"{source} checkpoint does not fit this policy; " + "; ".join(parts))
    with torch.no_grad():
        for target, value in values.items():
            targets[target].copy_(value.to(targets[target].dtype))
    report = ImportReport(source=source, loaded=sorted(values), dropped=dropped)
    report.transformed = {r.target: r.describe for r in rules if r.describe and r.target in values}
    embedding = "understanding.language.embed_tokens.weight"
    if untied is not None and embedding in values:
        report.transformed[embedding] = "; ".join(filter(None, (report.transformed.get(embedding), untied)))
    untouched = sorted(set(targets) - set(values))
    for key in untouched:
        report.not_provided.setdefault(_component(key), []).append(key)
    return report


def _component(key: str) -> str:
    parts = key.split(".")
    return ".".join(parts[:3] if parts[0] in ("trunk", "adapters") else parts[:2])


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a tensors-only torch file (``weights_only=True``, no code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"path: no checkpoint file at {str(path)!r}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:
            raise CheckpointError(f"path: {path} is not a readable safetensors file ({err})") from err
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"path: {path} is not a tensors-only torch file ({err})") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(wrapper), Mapping):
            data = data[wrapper]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"path: {path} does not hold a mapping of names to tensors")
    return dict(data)


def _refuse_to_replace(output_dir: Path, overwrite: bool) -> None:
    if overwrite or not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise CheckpointError(f"output_dir: {output_dir} exists and is not a directory")
    if any(output_dir.iterdir()):
        raise CheckpointError(
            f"output_dir: {output_dir} is not empty (it may hold a trained policy); choose another "
            "directory, or replace its checkpoint with overwrite=True (f1 convert --force)"
        )


def read_lerobot_config(source_path: str | Path) -> dict[str, Any] | None:
    """LeRobot's ``config.json`` beside ``source_path`` (as ``save_pretrained`` writes it), or None.

    A ``config.json`` there that is not LeRobot's (no ``type`` key, e.g. an f1 checkpoint's) gives None.
    """
    path = Path(source_path).parent / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable JSON file ({err})") from None
    return data if isinstance(data, dict) and "type" in data else None


def convert_checkpoint(
    source_path: str | Path,
    output_dir: str | Path,
    *,
    source: SourceFormat,
    config: F1Config | None = None,
    embodiment: str | None = None,
    base: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> ImportReport:
    """``f1 convert``: read a published checkpoint, import it into a policy, save it as an f1 checkpoint.

    Args:
        source_path: the published file (``model.safetensors`` of F1/pi0/PaliGemma, ``vae_*.pth`` of VAR).
        output_dir: where :func:`f1.model.save_model` writes the result; it must not exist or be empty
            unless ``overwrite``.
        source: the source format (see :func:`import_weights`).
        config: the policy to build (e.g. ``preset("f1-4.2b")``). None: for ``"pi0"`` the shape is read
            from the checkpoint and LeRobot's ``config.json`` beside it
            (:func:`f1.model.checkpoint_shape.pi0_config_from_checkpoint`); for the other sources
            ``preset("f1-4.2b")``. For ``"f1"``/``"pi0"`` ``action.time_convention`` is set to ``"pi0"``.
        embodiment: adapter that receives the action heads (a pi0 shape read from the file names its
            embodiment ``"pi0"`` unless this says otherwise).
        base: an f1 checkpoint to start from (e.g. import a VAR VQ-VAE into a trained policy); excludes
            ``config`` and ``overrides``.
        overrides: dotted or nested config overrides applied to the config (``{"mode": "f1",
            "action.chunk_size": 10}``), see :meth:`F1Config.with_overrides`.
        overwrite: replace the checkpoint in a non-empty ``output_dir``.

    Returns:
        the :class:`ImportReport`; its ``shape`` says where each value of a config read from the file
        came from.

    Raises:
        CheckpointError, ConfigError: before anything is written.
    """
    output_dir = Path(output_dir)
    _refuse_to_replace(output_dir, overwrite)
    if base is not None and (config is not None or overrides):
        raise ConfigError(
            "base: a base checkpoint fixes the policy's shape; pass no config or overrides with it"
        )
    state_dict = read_state_dict(source_path)
    shape = None
    if base is None and config is None and source == "pi0":
        shape = pi0_config_from_checkpoint(
            _normalize_keys(state_dict, source),
            read_lerobot_config(source_path),
            embodiment=embodiment or "pi0",
            overrides=overrides,
        )
        config = shape.config
    elif base is None:
        config = (config or preset("f1-4.2b")).with_overrides(overrides or {})
    if config is not None and source in ("f1", "pi0") and config.action.time_convention != "pi0":
        config = config.with_overrides({"action.time_convention": "pi0"})
    model = load_model(base) if base is not None else F1Model(config)
    report = import_weights(model, state_dict, source, embodiment=embodiment)
    report.shape = shape.sources if shape is not None else {}
    save_model(model, output_dir)
    return report
