"""The default factories of a run file: the F1 policy from a preset, and LeRobot training windows that
follow the policy's configuration.

    model: {preset: tiny, overrides: {mode: no_gen}}     # f1.train.factories:build_f1_policy
    data: {root: data/my-robot}                          # f1.train.factories:build_training_data

``build_training_data`` fills the window settings the policy implies (history offsets from its history
frames and stride, the future offset, the action chunk, cameras, foresight camera, default embodiment)
and hands everything to ``f1.data.build_training_dataset``; settings given in the run file win.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from f1.model import F1Config, F1Policy, preset

from .config import ConfigError, merge_overrides, reject_unknown_keys

POLICY_KEYS = ("preset", "config_file", "overrides")
CAMERA_PREFIX = "observation.images."


def f1_config_from(config: Mapping[str, Any]) -> F1Config:
    """The ``F1Config`` of a run file's ``model`` section: a preset or a config file, then ``overrides``."""
    reject_unknown_keys(config, POLICY_KEYS, "model")
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
    if not overrides:
        return base
    return F1Config.from_dict(merge_overrides(base.to_dict(), overrides, where="model.overrides"))


def build_f1_policy(config: dict[str, Any]) -> F1Policy:
    """The F1 policy of a run file's ``model`` section (``preset`` or ``config_file``, then ``overrides``)."""
    return F1Policy(f1_config_from(config))


def window_settings_of(policy: F1Policy) -> dict[str, Any]:
    """The data-window settings ``policy`` reads: history offsets, future offset, action chunk, cameras."""
    model = policy.config
    settings: dict[str, Any] = {
        "action_horizon": model.action.chunk_size,
        "cameras": [CAMERA_PREFIX + name for name in model.cameras],
        "embodiment": model.default_embodiment_name,
    }
    if model.has_history:
        frames, stride = model.generation.history_frames, model.generation.history_stride
        settings["history_offsets"] = [-(frames - 1 - i) * stride for i in range(frames)]
        settings["foresight_camera"] = CAMERA_PREFIX + model.foresight_camera
        settings["future_offset"] = stride if model.has_foresight else None
    else:
        settings["history_offsets"] = []
        settings["future_offset"] = None
    return settings


def build_training_data(config: dict[str, Any], *, policy: F1Policy | None = None) -> Dataset:
    """``f1.data.build_training_dataset(config)`` with the window settings of ``policy`` as defaults.

    For a mixture (``datasets``), the policy's default embodiment is not imposed: each member names its own.
    """
    try:
        from f1.data import build_training_dataset
    except ImportError as error:
        raise ConfigError(f"data: f1.data provides no build_training_dataset ({error})") from None
    defaults = window_settings_of(policy) if policy is not None else {}
    if "datasets" in config:
        defaults.pop("embodiment", None)
    return build_training_dataset({**defaults, **config})
