"""The default factories of a run file: the F1 model from a preset, and LeRobot training windows that
follow the model's configuration.

    model: {preset: tiny, overrides: {mode: no_gen}}     # f1.train.factories:build_f1_model
    data: {root: data/my-robot}                          # f1.train.factories:build_training_data

``build_training_data`` fills the window settings the model implies (``F1Config.history_offsets``, the
future offset, the action chunk, cameras, foresight camera, default embodiment) and hands everything to
``f1.data.build_training_dataset``; settings given in the run file win.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from f1.checks import reject_unknown_keys
from f1.data import build_training_dataset
from f1.errors import ConfigError
from f1.keys import camera_key
from f1.model import F1Config, F1Model, preset

POLICY_KEYS = ("preset", "config_file", "overrides")


def f1_config_from(config: Mapping[str, Any]) -> F1Config:
    """The ``F1Config`` of a run file's ``model`` section: a preset or a config file, then ``overrides``."""
    reject_unknown_keys("model", config, POLICY_KEYS)
    if "preset" in config and "config_file" in config:
        raise ConfigError("model: give either preset or config_file, not both")
    if "config_file" in config:
        path = Path(config["config_file"])
        if not path.is_file():
            raise ConfigError(f"model.config_file: file not found: {path}")
        base = F1Config.load(path)
    else:
        base = preset(str(config.get("preset", "tiny")))
    overrides = config.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"model.overrides must be a mapping of F1Config fields, received {overrides!r}")
    return base.with_overrides(overrides, where="model.overrides") if overrides else base


def build_f1_model(config: dict[str, Any]) -> F1Model:
    """The F1 model of a run file's ``model`` section (``preset`` or ``config_file``, then ``overrides``)."""
    return F1Model(f1_config_from(config))


def window_settings_of(model: F1Model) -> dict[str, Any]:
    """The data-window settings ``model`` reads: history offsets, future offset, action chunk, cameras."""
    config = model.config
    settings: dict[str, Any] = {
        "action_horizon": config.action.chunk_size,
        "cameras": [camera_key(name) for name in config.cameras],
        "embodiment": config.default_embodiment_name,
        "history_offsets": list(config.history_offsets),
        "future_offset": config.future_offset,
    }
    if config.has_history:
        settings["foresight_camera"] = camera_key(config.foresight_camera)
    return settings


def build_training_data(config: dict[str, Any], *, policy: F1Model | None = None) -> Dataset:
    """``f1.data.build_training_dataset(config)`` with the window settings of the model (``policy``) as
    defaults.

    For a mixture (``datasets``), the model's default embodiment is not imposed: each member names its own.
    """
    defaults = window_settings_of(policy) if policy is not None else {}
    if "datasets" in config:
        defaults.pop("embodiment", None)
    return build_training_dataset({**defaults, **config})
