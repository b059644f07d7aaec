"""LoRA fine-tuning of an F1 model through ``peft``: adapt, train the adapters, save them alone, merge.

A stage with a ``lora`` section (:class:`~f1.train.config.LoraSettings`) trains low-rank adapters on the
trunk experts' attention and MLP projections (and, optionally, the vision tower's) plus, in full, the
parameter groups named in ``full_groups`` (the embodiment adapters by default); every other weight stays
frozen, bit for bit. The :class:`~f1.train.Trainer` adapts the model itself (:func:`adapt_for_stage`).

- :func:`apply_lora`: inject peft's LoRA layers (``peft.inject_adapter_in_model``) into an F1 model, in place;
- :func:`merged_state_dict`, :func:`merged_model`: the plain policy, ``W + (alpha / rank) B A`` for every
  adapted projection (peft's own delta), which :meth:`f1.model.F1Policy.load` reads once saved;
- :func:`save_adapter`, :func:`read_adapter`, :func:`load_adapter`: the adapters on their own, in a folder
  (``adapter/`` of a run) holding ``adapter_model.safetensors`` (the adapters and the fully trained
  tensors; its metadata carries the settings, the adapted modules, the base policy's config and a digest
  of the base weights, so a mismatched base is refused) and ``adapter_config.json`` (the same, for people);
- :func:`merge_adapter`: ``f1 convert --merge-lora ADAPTER --base POLICY OUT``.

peft is an optional dependency (the ``f1[lora]`` extra), imported only inside these functions, so
``import f1`` works without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from f1.checks import config_differences
from f1.errors import CheckpointError, ConfigError
from f1.model import EXPERT_GROUPS, F1Model
from f1.model.checkpoint import check_state_dict, load_model, save_model

from .config import LoraSettings, StageConfig

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_DIR",
    "ADAPTER_FORMAT",
    "ADAPTER_WEIGHTS",
    "VISION_PROJECTIONS",
    "AdapterFile",
    "LoraState",
    "adapt_for_stage",
    "adapter_state_dict",
    "apply_lora",
    "base_digest",
    "base_state_dict",
    "load_adapter",
    "lora_state",
    "merge_adapter",
    "merged_model",
    "merged_state_dict",
    "read_adapter",
    "save_adapter",
]

#: The folder under a run's ``output_dir`` that receives the adapters when a LoRA run ends.
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FORMAT = "f1-lora-adapter"
ADAPTER_FORMAT_VERSION = "1"
#: The vision tower's projections that ``vision: true`` adapts (the blocks of a timm ViT or SigLIP tower).
VISION_PROJECTIONS: tuple[str, ...] = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
_ADAPTER_NAME = "default"  # peft's name of the one adapter
_STATE_ATTRIBUTE = "_f1_lora"  # where an adapted model keeps its LoraState


@dataclass(frozen=True)
class LoraState:
    """What :func:`apply_lora` did to a model (kept on the model).

    Attributes:
        settings: the stage's LoRA settings.
        modules: the adapted projections (module names, e.g. ``trunk.experts.act.layers.0.self_attn.q_proj``).
        full_parameters: state-dict names of the parameters trained in full (``settings.full_groups``).
    """

    settings: LoraSettings
    modules: tuple[str, ...]
    full_parameters: tuple[str, ...]


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError(
            "lora: LoRA fine-tuning needs the optional dependency peft: pip install 'f1[lora]'"
        ) from None
    return peft


def lora_state(model: nn.Module) -> LoraState | None:
    """The :class:`LoraState` of a model adapted by :func:`apply_lora`, else None."""
    state = getattr(model, _STATE_ATTRIBUTE, None)
    return state if isinstance(state, LoraState) else None


# ------------------------------------------------------------------------------------------------ adapting


def _check_model(model: object) -> F1Model:
    if not isinstance(model, F1Model):
        raise ConfigError(f"lora: LoRA adapts an F1Model, received a {type(model).__name__}")
    return model


def _adapted_experts(model: F1Model, settings: LoraSettings, frozen: frozenset[str]) -> list[str]:
    """The experts to adapt: the settings' (each checked) or every expert that trains in this stage."""
    experts = model.trunk.experts
    skipped = frozen | set(settings.full_groups_of(frozen))

    def trains(name: str) -> bool:  # False under the Frozen-Gen ablation, which freezes the gen expert
        return any(p.requires_grad for p in experts[name].parameters())

    if settings.experts is None:
        return [name for name in experts if EXPERT_GROUPS[name] not in skipped and trains(name)]
    for name in settings.experts:
        if name not in experts:
            raise ConfigError(
                f"lora.experts: {name!r} is no expert of this policy (mode {model.config.mode!r} has "
                f"{list(experts)})"
            )
        if EXPERT_GROUPS[name] in skipped:
            raise ConfigError(
                f"lora.experts: {name!r} is in group {EXPERT_GROUPS[name]!r}, which the stage freezes"
            )
        if not trains(name):
            raise ConfigError(f"lora.experts: the policy freezes expert {name!r} itself (e.g. Frozen-Gen)")
    return list(settings.experts)


def _target_modules(model: F1Model, settings: LoraSettings, frozen: frozenset[str]) -> tuple[str, ...]:
    """Names of the ``nn.Linear`` projections that ``settings`` adapts in ``model`` (model order)."""
    prefixes = tuple(f"trunk.experts.{name}." for name in _adapted_experts(model, settings, frozen))
    modules = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and name.startswith(prefixes)
        and name.rpartition(".")[2] in settings.targets
    ]
    if settings.vision:
        vision = [
            name
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear)
            and name.startswith("understanding.vision.")
            and name.endswith(tuple("." + p for p in VISION_PROJECTIONS))
        ]
        if not vision:
            raise ConfigError(
                f"lora.vision: the vision tower {model.config.vision.timm_model!r} has no ViT block "
                f"projections ({', '.join(VISION_PROJECTIONS)}) to adapt"
            )
        modules = vision + modules
    if not modules:
        raise ConfigError(
            "lora: nothing to adapt: no trunk expert of this policy trains in the stage (frozen "
            f"{sorted(frozen)}, full_groups {list(settings.full_groups_of(frozen))}) and vision is false"
        )
    return tuple(modules)


def _full_parameters(model: F1Model, full_groups: tuple[str, ...]) -> tuple[str, ...]:
    """State-dict names of the trainable parameters of ``full_groups`` (groups the model lacks, e.g.
    ``generation`` in mode ``no_gen``, contribute nothing)."""
    groups = model.parameter_groups()
    wanted = {id(p) for group in full_groups for p in groups.get(group, []) if p.requires_grad}
    return tuple(name for name, p in model.named_parameters() if id(p) in wanted)


def _inject(
    model: F1Model, settings: LoraSettings, modules: tuple[str, ...], full: tuple[str, ...]
) -> LoraState:
    """peft's LoRA layers into ``modules``; then only the adapters and ``full`` train."""
    peft = _peft()
    config = peft.LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(modules),
        bias="none",
    )
    peft.inject_adapter_in_model(config, model, adapter_name=_ADAPTER_NAME)
    adapted = {
        name for name, module in model.named_modules() if isinstance(module, peft.tuners.lora.LoraLayer)
    }
    if adapted != set(modules):  # peft matches names by suffix: it must have adapted exactly these
        raise RuntimeError(f"peft adapted {sorted(adapted ^ set(modules))} unlike asked")
    # peft froze everything but the adapters; the full groups train again
    parameters = dict(model.named_parameters())
    for name in full:
        parameters[name].requires_grad_(True)
    state = LoraState(settings, modules, full)
    setattr(model, _STATE_ATTRIBUTE, state)
    return state


def apply_lora(model: F1Model, settings: LoraSettings, *, frozen: tuple[str, ...] = ()) -> LoraState:
    """Adapt ``model`` in place: LoRA layers on the projections ``settings`` names, every base weight frozen.

    Args:
        model: an :class:`~f1.model.F1Model`, not yet adapted (or adapted with the same settings: then it is
            left as it is, so a second trainer on the same model does not adapt it twice).
        settings: what to adapt (:class:`~f1.train.config.LoraSettings`).
        frozen: the stage's frozen parameter groups: with ``settings.experts`` None, the experts of these
            groups get no adapters.

    Returns:
        the :class:`LoraState` (also kept on the model, see :func:`lora_state`). After the call only the
        adapters and the trainable parameters of the full groups (``settings.full_groups_of(frozen)``)
        have ``requires_grad``; the adapted model's outputs equal the base model's until the adapters
        train (``B`` starts at zero).

    Raises:
        ConfigError: not an F1 model, adapted with other settings, an expert it lacks or that the stage or
            the policy freezes, no vision blocks for ``vision: true``, nothing to adapt, or no peft
            installed; the model is unchanged then.
    """
    model = _check_model(model)
    if not isinstance(settings, LoraSettings):
        raise ConfigError(f"lora: expected LoraSettings, received {type(settings).__name__}")
    existing = lora_state(model)
    if existing is not None:
        if existing.settings != settings:
            raise ConfigError(
                f"lora: the model already carries adapters of other settings ({existing.settings.to_dict()}, "
                f"now {settings.to_dict()}); merge them first (merged_model) or start from a fresh model"
            )
        return existing
    _peft()  # before any change
    frozen_groups = frozenset(frozen)
    modules = _target_modules(model, settings, frozen_groups)
    full = _full_parameters(model, settings.full_groups_of(frozen_groups))
    return _inject(model, settings, modules, full)


def adapt_for_stage(model: nn.Module, config: StageConfig) -> None:
    """What the trainer does before it groups parameters: :func:`apply_lora` when the stage has a ``lora``
    section; a model that carries adapters under a stage without one is refused (the stage would train
    adapters it does not name)."""
    if config.lora is not None:
        apply_lora(model, config.lora, frozen=config.frozen)  # type: ignore[arg-type]
    elif lora_state(model) is not None:
        raise ConfigError(
            "lora: the model carries LoRA adapters but the stage has no lora section; give the stage the "
            "same lora settings, or train the merged policy (f1.train.lora.merged_model)"
        )


# ------------------------------------------------------------------------------------------ tensors, merge


def _require_state(model: nn.Module) -> LoraState:
    state = lora_state(model)
    if state is None:
        raise ConfigError("model: it carries no LoRA adapters (apply_lora, or a stage with a lora section)")
    return state


def _plain_name(key: str, modules: frozenset[str]) -> str | None:
    """The name of ``key`` in the plain (unadapted) model: ``M.base_layer.weight -> M.weight``; None for an
    adapter tensor of an adapted module ``M``."""
    head, marker, tail = key.rpartition(".base_layer.")
    if marker and head in modules:
        return f"{head}.{tail}"
    if ".lora_" in key and key.split(".lora_")[0] in modules:
        return None
    return key


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base weights of an adapted model under the plain model's names (no adapter tensors, nothing
    merged); detached, sharing the model's storage."""
    state = _require_state(model)
    modules = frozenset(state.modules)
    plain = {}
    for key, tensor in model.state_dict().items():
        name = _plain_name(key, modules)
        if name is not None:
            plain[name] = tensor.detach()
    return plain


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What training changed: every adapter tensor (``M.lora_A.default.weight``, ``M.lora_B.default.weight``)
    and every parameter of ``full_groups``, by state-dict name; detached."""
    state = _require_state(model)
    modules = frozenset(state.modules)
    full = set(state.full_parameters)
    return {
        key: tensor.detach()
        for key, tensor in model.state_dict().items()
        if key in full or _plain_name(key, modules) is None
    }


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The plain model's state dict with every adaptation merged: ``W + (alpha / rank) * B @ A`` (peft's
    ``get_delta_weight``) for each adapted projection; new tensors for those, the model's own elsewhere."""
    state = _require_state(model)
    merged = base_state_dict(model)
    with torch.no_grad():
        for name in state.modules:
            layer = model.get_submodule(name)
            merged[f"{name}.weight"] = layer.base_layer.weight + layer.get_delta_weight(_ADAPTER_NAME)
    return merged


def merged_model(model: F1Model) -> F1Model:
    """A plain :class:`~f1.model.F1Model` (no peft modules) whose weights are ``model``'s with the adapters
    merged (:func:`merged_state_dict`); ``model`` is left as it is. In eval mode, on ``model``'s device."""
    model = _check_model(model)
    tensors = {name: tensor.clone() for name, tensor in merged_state_dict(model).items()}
    with torch.device("meta"):
        plain = F1Model(model.config, tokenizer=model.tokenizer)
    check_state_dict(plain, tensors, "the merged LoRA policy")
    plain.load_state_dict(tensors, strict=True, assign=True)
    return plain.eval()


def base_digest(tensors: Mapping[str, torch.Tensor], exclude: frozenset[str] | set[str] = frozenset()) -> str:
    """``sha256:<hex>`` of the tensors (names, dtypes, shapes and bytes, in name order) but ``exclude``."""
    digest = hashlib.sha256()
    for name in sorted(set(tensors) - set(exclude)):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


# ------------------------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class AdapterFile:
    """An adapter folder read by :func:`read_adapter` (validated as a file, not yet against a model).

    Attributes:
        path: its ``adapter_model.safetensors``.
        settings: the LoRA settings it was trained with.
        modules: the adapted projections.
        full_parameters: the parameters it carries in full.
        base_config: the base policy's :class:`~f1.model.F1Config` as a mapping.
        base_digest: :func:`base_digest` of the base weights (every tensor but ``full_parameters``).
        tensors: adapter tensors and full parameters by state-dict name, on CPU.
    """

    path: Path
    settings: LoraSettings
    modules: tuple[str, ...]
    full_parameters: tuple[str, ...]
    base_config: dict[str, Any]
    base_digest: str
    tensors: dict[str, torch.Tensor]


def _atomic_write(path: Path, write: Any) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def save_adapter(model: F1Model, directory: str | Path) -> Path:
    """Write the adapters of ``model`` into ``directory`` (created if missing); returns ``directory``.

    ``adapter_model.safetensors`` holds :func:`adapter_state_dict` and, in its metadata, the settings, the
    adapted modules, the base policy's config and :func:`base_digest` of the base weights (the frozen
    ones: every tensor but the adapters and ``full_groups``); ``adapter_config.json`` repeats that
    metadata for people. Each file is written atomically (a temporary file, then a rename).
    """
    model = _check_model(model)
    state = _require_state(model)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"directory: {directory} exists and is not a directory")
    description = {
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_FORMAT_VERSION,
        "lora": state.settings.to_dict(),
        "modules": list(state.modules),
        "full_parameters": list(state.full_parameters),
        "base_config": model.config.to_dict(),
        "base_digest": base_digest(base_state_dict(model), exclude=set(state.full_parameters)),
    }
    tensors = {name: t.to("cpu").contiguous().clone() for name, t in adapter_state_dict(model).items()}
    text = json.dumps(description, indent=2)
    metadata = {"format": ADAPTER_FORMAT, "format_version": ADAPTER_FORMAT_VERSION, "adapter": text}
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / ADAPTER_CONFIG, lambda tmp: Path(tmp).write_text(text + "\n"))
    _atomic_write(directory / ADAPTER_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return directory


def read_adapter(directory: str | Path) -> AdapterFile:
    """Read an adapter folder written by :func:`save_adapter` (tensors only; its safetensors file is
    self-contained).

    Raises:
        CheckpointError: naming the file: a missing folder or file, a truncated or corrupt file, a foreign
            one (no ``f1-lora-adapter`` metadata), another format version, invalid settings, or tensors
            that do not match the modules it names.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"adapter: {directory} is not an adapter folder (no such directory)")
    path = directory / ADAPTER_WEIGHTS
    if not path.is_file():
        raise CheckpointError(
            f"adapter: {directory} holds no {ADAPTER_WEIGHTS} (is it a LoRA run's adapter/?)"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != ADAPTER_FORMAT:
                raise CheckpointError(
                    f"adapter: {path} is not an f1 LoRA adapter (metadata format={metadata.get('format')!r}, "
                    f"expected {ADAPTER_FORMAT!r})"
                )
            tensors = {key: handle.get_tensor(key).clone() for key in handle.keys()}  # noqa: SIM118
    except CheckpointError:
        raise
    except Exception as error:  # truncated or corrupt files
        raise CheckpointError(f"adapter: {path} is not a readable safetensors file ({error})") from None
    if metadata.get("format_version") != ADAPTER_FORMAT_VERSION:
        raise CheckpointError(
            f"adapter: {path} has format_version {metadata.get('format_version')!r}, "
            f"this library reads {ADAPTER_FORMAT_VERSION!r}"
        )
    try:
        description = json.loads(metadata["adapter"])
        settings = LoraSettings.from_dict(description["lora"])
        modules = tuple(str(m) for m in description["modules"])
        full = tuple(str(p) for p in description["full_parameters"])
        base_config = dict(description["base_config"])
        digest = str(description["base_digest"])
    except (KeyError, TypeError, ValueError) as error:  # ConfigError is a ValueError
        raise CheckpointError(f"adapter: {path} carries no valid adapter description ({error})") from None
    expected = {f"{m}.lora_{part}.{_ADAPTER_NAME}.weight" for m in modules for part in ("A", "B")} | set(full)
    if set(tensors) != expected:
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise CheckpointError(
            f"adapter: {path}: its tensors do not match the modules it names (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    return AdapterFile(path, settings, modules, full, base_config, digest, tensors)


def load_adapter(model: F1Model, directory: str | Path | AdapterFile) -> LoraState:
    """Adapt the plain base ``model`` in place with the adapters saved in ``directory``.

    The base must be the one the adapters were trained on: the same policy config and, bit for bit, the
    same frozen weights (:func:`base_digest`); every check runs before the model changes.

    Raises:
        CheckpointError: a bad adapter folder (:func:`read_adapter`), another base (naming the config
            differences, or the digests), a module the model lacks or tensors of other shapes.
        ConfigError: ``model`` is not a plain F1 model, or peft is missing.
    """
    model = _check_model(model)
    if lora_state(model) is not None:
        raise ConfigError("model: it already carries LoRA adapters; load adapters into a plain base policy")
    adapter = directory if isinstance(directory, AdapterFile) else read_adapter(directory)
    differences = config_differences(adapter.base_config, model.config.to_dict())
    if differences:
        raise CheckpointError(
            f"adapter: {adapter.path} was trained on another base policy; config differences "
            f"(adapter's base, then this base): {'; '.join(differences[:8])}"
        )
    digest = base_digest(model.state_dict(), exclude=set(adapter.full_parameters))
    if digest != adapter.base_digest:
        raise CheckpointError(
            f"adapter: {adapter.path} was trained on other base weights (digest {adapter.base_digest}, "
            f"this base {digest}): merge it into the policy it was trained from"
        )
    modules = dict(model.named_modules())
    parameters = dict(model.named_parameters())
    strays = [m for m in adapter.modules if not isinstance(modules.get(m), nn.Linear)]
    strays += [p for p in adapter.full_parameters if p not in parameters]
    if strays:
        raise CheckpointError(
            f"adapter: {adapter.path} names modules or parameters this policy lacks: {strays[:5]}"
        )
    rank = adapter.settings.rank
    expected = {name: tuple(parameters[name].shape) for name in adapter.full_parameters}
    for name in adapter.modules:
        linear = modules[name]
        expected[f"{name}.lora_A.{_ADAPTER_NAME}.weight"] = (rank, linear.in_features)
        expected[f"{name}.lora_B.{_ADAPTER_NAME}.weight"] = (linear.out_features, rank)
    shapes = [
        f"{key}: expected {shape}, received {tuple(adapter.tensors[key].shape)}"
        for key, shape in expected.items()
        if tuple(adapter.tensors[key].shape) != shape
    ]
    if shapes:
        raise CheckpointError(f"adapter: {adapter.path}: tensors of other shapes: {shapes[:5]}")
    _peft()
    state = _inject(model, adapter.settings, adapter.modules, adapter.full_parameters)
    model.load_state_dict(adapter.tensors, strict=False)
    return state


def merge_adapter(
    adapter: str | Path | AdapterFile, base: str | Path, output: str | Path, *, overwrite: bool = False
) -> Path:
    """``f1 convert --merge-lora``: the base policy folder with the adapters merged, saved as a plain policy
    folder (``F1Policy.save``'s layout) into ``output``; returns ``output``.

    Args:
        adapter: an adapter folder (:func:`save_adapter`, a LoRA run's ``adapter/``), or one read already.
        base: the policy folder the adapters were trained from (``F1Policy.save``, a run's ``policy/``).
        output: the policy folder to write; a non-empty one is refused unless ``overwrite``; it may be
            neither ``adapter`` nor ``base``.

    Raises:
        ConfigError: a bad ``output``, or peft missing. CheckpointError: a bad adapter or base folder, or
            adapters of another base (:func:`load_adapter`). Nothing is written when anything fails.
    """
    folder = adapter.path.parent if isinstance(adapter, AdapterFile) else Path(adapter)
    base, output = Path(base), Path(output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output: {output} exists and is not a directory")
    for name, other in (("the adapter folder", folder), ("the base policy", base)):
        if output.exists() and other.exists() and output.resolve() == other.resolve():
            raise ConfigError(f"output: {output} is {name}; write the merged policy elsewhere")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ConfigError(
            f"output: {output} is not empty; pass --force (overwrite=True) to replace its policy"
        )
    saved = adapter if isinstance(adapter, AdapterFile) else read_adapter(folder)
    model = load_model(base)
    load_adapter(model, saved)
    save_model(merged_model(model), output)
    return output
