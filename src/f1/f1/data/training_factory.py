"""``build_training_dataset``: the dataset factory that ``f1 train`` run files name.

data:
  factory: "f1.data:build_training_dataset"
  root: data/my-robot              # one LeRobot dataset (v3.0 or v2.1) ...
  datasets:                        # ... or a weighted mixture
    - {root: data/arm, weight: 3.0, embodiment: arm}
    - {root: data/aloha, weight: 1.0}
  history_offsets: [-9, -6, -3, 0]
  future_offset: 3
  action_horizon: 50
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import torch

from f1.checks import reject_unknown_keys
from f1.data.mixture import DatasetMixture, WeightedMixtureView
from f1.data.reader import LeRobotDataset
from f1.data.windows import WindowConfig, WindowedDataset
from f1.keys import ACTION_KEY, STATE_KEY

_WINDOW_KEYS = {f.name for f in fields(WindowConfig)} - {"pad_state_to", "pad_action_to", "camera_keys"}
_TOP_KEYS = {"root", "datasets", "embodiment", "episodes", "cameras", "video_cache_mb", "num_samples", "seed"}
_MEMBER_KEYS = {"root", "weight", "embodiment", "episodes"}


def build_training_dataset(config: Mapping[str, Any]) -> torch.utils.data.Dataset:
    """Training windows over one LeRobot dataset, or over a weighted mixture of several.

    Args:
        config: ``root`` (one dataset) or ``datasets`` (a list of ``{root, weight, embodiment, episodes}``);
            window settings ``history_offsets``, ``future_offset``, ``action_horizon``, ``cameras``,
            ``foresight_camera``, ``state_key``, ``action_key``; for one dataset also ``embodiment`` and
            ``episodes``; ``video_cache_mb``; for mixtures ``num_samples`` (default: all frames) and
            ``seed``.

    Returns:
        a :class:`WindowedDataset` for one dataset. For several, a :class:`WeightedMixtureView` of their
        windows; state and action are zero-padded to the widest member so samples batch together.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config: expected a mapping, got {type(config).__name__}")
    reject_unknown_keys("data config", config, _TOP_KEYS | _WINDOW_KEYS)
    if ("root" in config) == ("datasets" in config):
        raise ValueError("data config: give exactly one of 'root' (one dataset) or 'datasets' (a mixture)")
    window_args = {k: config[k] for k in _WINDOW_KEYS if k in config}
    if "history_offsets" in window_args:
        window_args["history_offsets"] = tuple(window_args["history_offsets"])
    if "cameras" in config:
        window_args["camera_keys"] = tuple(config["cameras"])
    cache_mb = config.get("video_cache_mb", 512)
    if "root" in config:
        dataset = LeRobotDataset(config["root"], episodes=config.get("episodes"), video_cache_mb=cache_mb)
        return WindowedDataset(dataset, WindowConfig(**window_args), embodiment=config.get("embodiment"))

    members = config["datasets"]
    if not isinstance(members, Sequence) or not members:
        raise ValueError(f"data config: 'datasets' must be a non-empty list, got {members!r}")
    for i, member in enumerate(members):
        if not isinstance(member, Mapping) or "root" not in member:
            raise ValueError(f"data config: datasets[{i}] must be a mapping with a 'root', got {member!r}")
        reject_unknown_keys(f"data config: datasets[{i}]", member, _MEMBER_KEYS)
    datasets = [
        LeRobotDataset(m["root"], episodes=m.get("episodes"), video_cache_mb=cache_mb) for m in members
    ]
    state_key = window_args.get("state_key", STATE_KEY)
    action_key = window_args.get("action_key", ACTION_KEY)
    widest = WindowConfig(
        **window_args,
        pad_state_to=max(_width(d, state_key) for d in datasets),
        pad_action_to=max(_width(d, action_key) for d in datasets),
    )
    windows = [WindowedDataset(d, widest, embodiment=m.get("embodiment")) for d, m in zip(datasets, members)]
    mixture = DatasetMixture([(w, m.get("weight", 1.0)) for w, m in zip(windows, members)])
    num_samples = config.get("num_samples", len(mixture))
    return WeightedMixtureView(mixture, num_samples, seed=int(config.get("seed", 0)))


def _width(dataset: LeRobotDataset, key: str) -> int:
    spec = dataset.features.get(key)
    if spec is None:
        raise ValueError(f"data config: {dataset.root} has no feature {key!r} ({sorted(dataset.features)})")
    return spec.shape[-1]
