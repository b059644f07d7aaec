"""Strict, tensors-only loading and saving of tokenizer weights.

Accepts the released ``vae_ch160v4096z32.pth`` (a flat state dict, read with
``torch.load(weights_only=True)``) and safetensors files. Every key, shape and dtype is checked against
the model before anything is copied, and
a file whose keys look nothing like a VAR VQ-VAE is reported as a foreign checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from var_foresight.config import VQVAEConfig, read_config_json
from var_foresight.errors import CheckpointError
from var_foresight.predictor import NextScalePredictor, NextScalePredictorConfig
from var_foresight.validation import type_name
from var_foresight.vqvae import VQVAE


def _path(name: str, source: object) -> Path:
    if not isinstance(source, str | Path):
        raise TypeError(f"{name}: expected a str or Path, got {type_name(source)}")
    return Path(source)


def _check_tensors(source: str, data: Mapping) -> None:
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: expected a mapping of str names to tensors, got {type_name(key)} {key!r} -> "
                f"{type_name(value)}"
            )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a ``torch.save``-d dict (loaded with ``weights_only=True``).

    A ``{"state_dict": {...}}`` or ``{"model": {...}}`` wrapper is unwrapped; anything that is not a mapping
    of names to tensors raises `CheckpointError`.
    """
    path = _path("path", path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint file at {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:  # truncated, not safetensors, bad header
            raise CheckpointError(f"path: {path} is not a readable safetensors file ({err})") from err
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # pickles with code, corrupt files
        raise CheckpointError(f"path: {path} is not a tensors-only torch checkpoint ({err})") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(data, Mapping) and wrapper in data and isinstance(data[wrapper], Mapping):
            data = data[wrapper]
    if not isinstance(data, Mapping):
        raise CheckpointError(f"path: {path} does not hold a mapping of names to tensors")
    _check_tensors(f"path: {path}", data)
    return dict(data)


def check_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str = "state_dict",
    kind: str = "VAR VQ-VAE",
) -> None:
    """Raise `CheckpointError` naming every missing or unexpected key, every shape or dtype mismatch and
    every tensor holding NaN or inf."""
    _check_tensors(source, state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if len(set(expected) & set(state_dict)) == 0:
        raise CheckpointError(
            f"{source}: foreign checkpoint, none of its {len(state_dict)} keys "
            f"(e.g. {sorted(state_dict)[:3]}) "
            f"belong to a {kind} (expected keys like {sorted(expected)[:3]})"
        )
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} key(s): {missing[:8]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s): {unexpected[:8]}")
    for key in sorted(set(expected) & set(state_dict)):
        got, want = state_dict[key], expected[key]
        if tuple(got.shape) != tuple(want.shape):
            problems.append(f"{key}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}")
        elif not got.is_floating_point():
            problems.append(f"{key}: expected a floating tensor, got {got.dtype}")
        elif got.device.type != "meta" and not bool(torch.isfinite(got).all()):
            problems.append(f"{key}: expected finite values, got NaN or inf")
    if problems:
        raise CheckpointError(f"{source}: does not fit this {kind} config; " + "; ".join(problems[:12]))


def load_vqvae(source: str | Path | Mapping[str, torch.Tensor], config: VQVAEConfig | None = None) -> VQVAE:
    """A `VQVAE` (eval mode) with weights from a file or a state dict, loaded strictly.

    config: defaults to ``config.json`` beside the file if present, else the released preset.
    Nothing is built unless every key, shape and dtype fits (`CheckpointError` naming the file otherwise).
    """
    if not isinstance(source, Mapping):
        source = _path("source", source)
    if config is not None and not isinstance(config, VQVAEConfig):
        raise TypeError(f"config: expected a VQVAEConfig or None, got {type_name(config)}")
    if config is None and not isinstance(source, Mapping):
        beside = source.with_name("config.json")
        config = VQVAEConfig.load_json(beside) if beside.is_file() else None
    if isinstance(source, Mapping):
        _check_tensors("state_dict", source)
    state_dict = dict(source) if isinstance(source, Mapping) else read_state_dict(source)
    state_dict = {k: v.float().contiguous() if v.is_floating_point() else v for k, v in state_dict.items()}
    with torch.device("meta"):  # shapes only: check before allocating anything
        model = VQVAE(config or VQVAEConfig())
    check_state_dict(model, state_dict, source="state_dict" if isinstance(source, Mapping) else str(source))
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


def _write_atomically(directory: Path, tensors: dict[str, torch.Tensor], config_json: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "model.safetensors"
    for target, write in (
        (weights, lambda p: save_file(tensors, p)),
        (directory / "config.json", lambda p: Path(p).write_text(config_json)),
    ):
        handle, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        os.close(handle)
        try:
            write(tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return weights


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def _save(model: nn.Module, cls: type, directory: str | Path) -> Path:
    if not isinstance(model, cls):
        raise TypeError(f"model: expected a {cls.__name__}, got {type_name(model)}")
    directory = _path("directory", directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"directory: {directory} exists and is not a directory")
    tensors = _tensors(model)
    for key, value in tensors.items():  # a file `load_*` would refuse is never written
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"model: {key} holds NaN or inf; nothing was written to {directory}")
    return _write_atomically(directory, tensors, json.dumps(model.config.to_dict(), indent=2))


def save_vqvae(model: VQVAE, directory: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` atomically; returns the
    weights path. A model with NaN or inf weights is refused before anything is written."""
    return _save(model, VQVAE, directory)


def save_predictor(model: NextScalePredictor, directory: str | Path) -> Path:
    """Write the generator's ``model.safetensors`` and ``config.json`` into ``directory`` atomically
    (a model with NaN or inf weights is refused before anything is written)."""
    return _save(model, NextScalePredictor, directory)


def load_predictor(source: str | Path, config: NextScalePredictorConfig | None = None) -> NextScalePredictor:
    """A `NextScalePredictor` (eval mode) from ``model.safetensors`` (or a directory holding it) and the
    ``config.json`` beside it, loaded strictly."""
    path = _path("source", source)
    if config is not None and not isinstance(config, NextScalePredictorConfig):
        raise TypeError(f"config: expected a NextScalePredictorConfig or None, got {type_name(config)}")
    if path.is_dir():
        path = path / "model.safetensors"
    if config is None:
        beside = path.with_name("config.json")
        if not beside.is_file():
            raise FileNotFoundError(f"config: no config given and no config.json beside {path}")
        data = read_config_json(beside, "NextScalePredictorConfig")
        try:
            config = NextScalePredictorConfig.from_dict(data)
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{beside}: {err.args[0] if err.args else err}") from err
    state_dict = read_state_dict(path)
    model = NextScalePredictor(config)
    check_state_dict(model, state_dict, source=str(path), kind="next-scale predictor")
    model.load_state_dict(state_dict, strict=True)
    return model.eval()
