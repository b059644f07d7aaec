"""Save and load a model: ``model.safetensors`` (every tensor, the config in its metadata) + ``config.json``.

The safetensors file is self-contained (the config travels in its metadata); ``config.json`` beside it is
for people. Loading reads tensors only (never unpickles code), builds the model on the meta device from
the stored config, checks every key and shape against it, and reports all differences at once. Policies
saved before the understanding expert's last layer became keys/values-only hold that layer's queries,
output projection, post-attention norm and MLP and the expert's final norm: loading drops them (they feed
nothing) and says so in an INFO record of this module's logger. Files are written atomically (a temporary
file, then a rename), so an interrupted save never leaves a half-written checkpoint in place of a good one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from f1.errors import CheckpointError
from f1.model.config import F1Config
from f1.model.f1_model import F1Model
from mot import MixtureOfTransformers

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "WEIGHTS_NAME",
    "check_shapes",
    "check_state_dict",
    "config_of",
    "drop_unbuilt_tensors",
    "load_model",
    "read_policy_checkpoint",
    "save_model",
]

FORMAT = "f1-policy"
FORMAT_VERSION = "1"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

log = logging.getLogger(__name__)


def _atomic_write(path: Path, write: Any) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(model: nn.Module, directory: str | Path) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/config.json``; returns the weights path.

    Args:
        model: an :class:`~f1.model.F1Model` (anything with ``config: F1Config`` and a state dict).
        directory: created if missing.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, F1Config) or not isinstance(model, nn.Module):
        raise CheckpointError(f"model: expected a module with an F1Config, received {type(model).__name__}")
    if getattr(model, "peft_config", None) is not None:  # set by peft when it injects adapters
        raise CheckpointError(
            "model: it carries LoRA adapters, which a policy folder cannot hold; save the merged policy "
            "(f1.train.lora.merged_model) or the adapters alone (f1.train.lora.save_adapter)"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_json()}
    weights = directory / WEIGHTS_NAME
    _atomic_write(weights, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    _atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(config.to_json()))
    return weights


def _weights_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir() and not (path / WEIGHTS_NAME).is_file() and (path / "checkpoints").is_dir():
        policy = path / "policy"
        found = f"its policy is {policy}; or " if (policy / WEIGHTS_NAME).is_file() else ""
        raise CheckpointError(
            f"path: {path} is a training run of f1 train, not a policy folder: {found}make a policy of "
            f"a checkpoint with `f1 export {path} OUT [--checkpoint STEP]`"
        )
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(
            f"path: expected a checkpoint directory or {WEIGHTS_NAME}, {str(path)!r} is missing"
        )
    if path.suffix != ".safetensors":
        raise CheckpointError(f"path: expected a .safetensors file (tensors only), received {path.name!r}")
    return path


def _check_metadata(weights: Path, metadata: Mapping[str, str]) -> None:
    if metadata.get("format") != FORMAT:
        kind = metadata.get("format")
        hint = (
            f"it is a checkpoint of f1 train: make a policy folder of it with "
            f"`f1 export {weights.parent} OUT` (a finished run also wrote RUN/policy)"
            if kind == "f1.train.checkpoint"
            else "import published F1, pi0, PaliGemma or VAR weights with f1 convert"
        )
        raise CheckpointError(
            f"path: {weights} is not an f1 policy checkpoint (metadata format={kind!r}, expected "
            f"{FORMAT!r}); {hint}"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"path: {weights} has format_version {metadata.get('format_version')!r}, "
            f"this library reads {FORMAT_VERSION!r}"
        )


def _config_from(weights: Path, metadata: Mapping[str, str]) -> F1Config:
    try:
        return F1Config.from_json(metadata["config"])
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"path: {weights} carries no valid F1 config ({err})") from None


def read_policy_checkpoint(path: str | Path) -> tuple[F1Config, dict[str, torch.Tensor]]:
    """The config and tensors of a checkpoint written by :func:`save_model` (or :meth:`F1Policy.save`).

    Raises :class:`CheckpointError` naming the file for a corrupt or truncated file or a foreign one (no
    ``f1-policy`` metadata, e.g. a published F1, pi0 or PaliGemma file: import those with ``f1 convert``).
    """
    weights = _weights_path(path)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
            _check_metadata(weights, metadata)
            # clone: tensors read from the file may sit at unaligned addresses, where CPU kernels take
            # other SIMD paths and round differently; a fresh allocation keeps round trips bit-identical
            tensors = {key: handle.get_tensor(key).clone() for key in handle.keys()}  # noqa: SIM118
    except CheckpointError:
        raise
    except Exception as err:  # truncated or corrupt files
        raise CheckpointError(f"path: {weights} is not a readable safetensors file ({err})") from None
    return _config_from(weights, metadata), tensors


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` listing every missing key, unexpected key and shape mismatch."""
    check_shapes(
        {key: tuple(value.shape) for key, value in model.state_dict().items()},
        {key: tuple(value.shape) for key, value in state_dict.items()},
        source,
    )


def check_shapes(
    expected: Mapping[str, tuple[int, ...]],
    received: Mapping[str, tuple[int, ...]],
    source: str,
    *,
    against: str = "the model",
) -> None:
    """Raise :class:`CheckpointError` listing every missing key, unexpected key and shape mismatch of the
    tensors ``received`` (name -> shape) against those ``expected``: the one fit check of state dicts,
    also of checkpoints known only by their shapes (sharded ones)."""
    missing = sorted(set(expected) - set(received))
    unexpected = sorted(set(received) - set(expected))
    shapes = [
        f"{key}: expected {expected[key]}, received {received[key]}"
        for key in sorted(set(expected) & set(received))
        if expected[key] != received[key]
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {missing}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {unexpected}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {shapes}")
        raise CheckpointError(f"{source}: does not match {against}; " + "; ".join(parts))


def drop_unbuilt_tensors(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """``state_dict`` without the tensors that ``model``'s trunk does not build (the keys/values-only last
    layers, see :meth:`mot.MixtureOfTransformers.unbuilt_tensors`), which state dicts written before held;
    each dropped key is named with its reason in an INFO record. Every other key is left for
    :func:`check_state_dict`."""
    reasons = {}
    for prefix, module in model.named_modules():
        if isinstance(module, MixtureOfTransformers):
            for name, why in module.unbuilt_tensors().items():
                reasons[f"{prefix}.{name}" if prefix else name] = why
    dropped = sorted(key for key in state_dict if key in reasons)
    for key in dropped:
        log.info("%s: dropped %s: %s", source, key, reasons[key])
    return {key: value for key, value in state_dict.items() if key not in reasons}


def load_model(path: str | Path, *, device: torch.device | str = "cpu", tokenizer: Any = None) -> F1Model:
    """Rebuild the :class:`~f1.model.F1Model` saved at ``path`` (directory or ``model.safetensors``).

    The model is built on the meta device (no random initialisation), then the stored tensors are
    assigned strictly; dtypes are kept as stored. Tensors the model does not build, which policies saved
    by earlier versions hold, are dropped with a logged reason (:func:`drop_unbuilt_tensors`); save the
    policy again to write it without them.
    """
    config, tensors = read_policy_checkpoint(path)
    with torch.device("meta"):
        model = F1Model(config, tokenizer=tokenizer)
    tensors = drop_unbuilt_tensors(model, tensors, str(path))
    check_state_dict(model, tensors, str(path))
    model.load_state_dict(tensors, strict=True, assign=True)
    leftovers = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if leftovers:
        raise CheckpointError(f"{path}: tensors not restored by the checkpoint: {leftovers}")
    return model.to(device)


def config_of(path: str | Path) -> F1Config:
    """Only the config of a checkpoint (reads the metadata, not the tensors); errors as
    :func:`read_policy_checkpoint`."""
    weights = _weights_path(path)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:  # truncated or corrupt files
        raise CheckpointError(f"path: {weights} is not a readable safetensors file ({err})") from None
    _check_metadata(weights, metadata)
    return _config_from(weights, metadata)
