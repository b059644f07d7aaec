"""The default factories of a run file: the F1 model from a preset, and LeRobot training windows that
follow the model's configuration.

    model: {preset: tiny, overrides: {mode: no_gen}}     # f1.train.factories:build_f1_model
    data: {root: data/my-robot}                          # f1.train.factories:build_training_data

``build_f1_model`` receives the run's ``data`` section too: for one LeRobot dataset (``data.root``) and a
model section that names no embodiment, the policy's embodiment is built from the dataset itself
(:func:`embodiment_from_dataset`: dimensions and names of state and action, ``meta/stats.json``
statistics, control rate from ``fps``, name from ``robot_type``); an embodiment the run names explicitly
(``model.overrides.embodiments`` or a ``config_file``) is checked against the dataset instead. Cameras the
dataset lacks are replaced by the dataset's cameras unless ``model.overrides`` names them.

``build_training_data`` fills the window settings the model implies (``F1Config.history_offsets``, the
future offset, the action chunk, cameras, foresight camera, default embodiment) and hands everything to
``f1.data.build_training_dataset``; settings given in the run file win.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace as dataclasses_replace
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from f1.checks import reject_unknown_keys
from f1.data import build_training_dataset, load_metadata
from f1.errors import ConfigError
from f1.keys import ACTION_KEY, IMAGE_KEY_PREFIX, STATE_KEY, camera_key
from f1.model import Embodiment, F1Config, F1Model, preset
from f1.model.embodiment import NORMALIZATION_MODES

POLICY_KEYS = ("preset", "config_file", "overrides", "normalization")


def f1_config_from(config: Mapping[str, Any]) -> F1Config:
    """The ``F1Config`` of a run file's ``model`` section: a preset or a config file, then ``overrides``
    (``normalization`` applies only to an embodiment built from a dataset, see :func:`f1_config_for`)."""
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


def _robot_name(robot_type: object, root: Path) -> str:
    """An embodiment name (letters, digits, '_' and '-') from ``robot_type``, else the dataset folder."""
    for candidate in (robot_type, root.resolve().name):
        if isinstance(candidate, str):
            name = re.sub(r"[^A-Za-z0-9_-]+", "_", candidate).strip("_")
            if name:
                return name
    return "robot"


def _feature_names(names: object, dim: int) -> tuple[str, ...]:
    """LeRobot's element names of a 1-d feature when they are a flat list of ``dim`` strings (LeRobot also
    writes ``{"motors": [...]}``); otherwise none."""
    if isinstance(names, Mapping) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list | tuple) and len(names) == dim and all(isinstance(n, str) for n in names):
        return tuple(names)
    return ()


def embodiment_from_dataset(
    root: str | Path,
    *,
    name: str | None = None,
    normalization: str = "mean_std",
    state_key: str = STATE_KEY,
    action_key: str = ACTION_KEY,
) -> Embodiment:
    """The embodiment of the LeRobot dataset at ``root``, read from its ``meta/`` alone (no frame is decoded).

    Args:
        root: the dataset directory (v3.0 or v2.1).
        name: the embodiment's name; None = the dataset's ``robot_type`` (characters other than letters,
            digits, '_' and '-' become '_'), or the folder name when it has none.
        normalization: ``"mean_std"`` (default), ``"min_max"``, ``"quantile"`` or ``"identity"``; the
            statistics come from ``meta/stats.json`` (v2.1 stores no quantiles).
        state_key, action_key: the features holding the ``(S,)`` state and the ``(A,)`` action.

    Returns:
        an :class:`~f1.model.Embodiment` with ``state_dim = S``, ``action_dim = A``, the features' element
        names, ``control_hz`` = the dataset's ``fps`` and the statistics the normalization needs.

    Raises:
        ConfigError: the dataset is missing or unreadable, lacks the features or the statistics, or an
            argument is invalid; the message names the argument and the file.
    """
    root = Path(root)
    if normalization not in NORMALIZATION_MODES:
        raise ConfigError(
            f"normalization: expected one of {', '.join(NORMALIZATION_MODES)}, received {normalization!r}"
        )
    if not (root / "meta" / "info.json").is_file():
        raise ConfigError(f"data.root: {root} is not a LeRobot dataset (no meta/info.json)")
    try:
        meta = load_metadata(root)
    except ValueError as error:  # DatasetFormatError names the file at fault
        raise ConfigError(f"data.root: {error}") from None
    dims = {}
    for key in (state_key, action_key):
        spec = meta.features.get(key)
        if spec is None or len(spec.shape) != 1:
            raise ConfigError(
                f"data.root: {root} has no 1-d feature {key!r} (its features: {sorted(meta.features)})"
            )
        dims[key] = spec.shape[0]
    stats = {k: v for k, v in (meta.stats or {}).items() if k in (state_key, action_key)}
    if normalization != "identity" and len(stats) < 2:
        raise ConfigError(
            f"data.root: {root / 'meta' / 'stats.json'} holds no statistics of {state_key!r} and "
            f"{action_key!r}, which normalization {normalization!r} needs "
            "(recompute them with LeRobotDataset.compute_stats, or set model.normalization: identity)"
        )
    common = {
        "name": name or _robot_name(meta.robot_type, root),
        "control_hz": float(meta.fps),
        "state_names": _feature_names(meta.features[state_key].names, dims[state_key]),
        "action_names": _feature_names(meta.features[action_key].names, dims[action_key]),
    }
    if normalization == "identity":
        return Embodiment(state_dim=dims[state_key], action_dim=dims[action_key], **common)
    embodiment = Embodiment.from_dataset_stats(
        stats=stats,
        normalization=normalization,  # type: ignore[arg-type]
        state_key=state_key,
        action_key=action_key,
        **common,
    )
    for key, dim in ((state_key, embodiment.state_dim), (action_key, embodiment.action_dim)):
        if dim != dims[key]:
            raise ConfigError(
                f"data.root: {root / 'meta' / 'stats.json'}: the statistics of {key!r} have {dim} entries, "
                f"meta/info.json says {dims[key]}"
            )
    return embodiment


def _names_embodiments(config: Mapping[str, Any]) -> bool:
    """Whether a ``model`` section fixes the embodiments itself (a config file, or ``overrides``)."""
    overrides = config.get("overrides") or {}
    return "config_file" in config or any(
        key == "embodiments" or key.startswith("embodiments.") or key == "default_embodiment"
        for key in overrides
    )


def f1_config_for(config: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> F1Config:
    """The ``F1Config`` of a run's ``model`` section for its ``data`` section (see the module docstring).

    With one dataset (``data.root``) and the built-in data factory, a model section that names no embodiment
    gets the dataset's (:func:`embodiment_from_dataset`, named ``data.embodiment`` when given, normalized
    with ``model.normalization``, default ``mean_std``); one that does is checked: the embodiment the data
    uses must have the dataset's state and action widths. Mixtures (``data.datasets``) and other data
    factories leave the model as configured.

    Raises:
        ConfigError: before anything is built or written, naming the embodiment, the dataset and both widths.
    """
    base = f1_config_from(config)
    normalization = config.get("normalization", "mean_std")
    if normalization not in NORMALIZATION_MODES:
        raise ConfigError(
            f"model.normalization: expected one of {', '.join(NORMALIZATION_MODES)}, "
            f"received {normalization!r}"
        )
    if not data or "root" not in data or data.get("factory", "lerobot") != "lerobot":
        return base
    root = Path(str(data["root"]))
    state_key = str(data.get("state_key", STATE_KEY))
    action_key = str(data.get("action_key", ACTION_KEY))
    named = data.get("embodiment")
    if not _names_embodiments(config):
        inferred = embodiment_from_dataset(
            root,
            name=str(named) if named is not None else None,
            normalization=str(normalization),
            state_key=state_key,
            action_key=action_key,
        )
        changes: dict[str, Any] = {"embodiments": (inferred,), "default_embodiment": None}
        cameras = _dataset_cameras(root)
        overrides = config.get("overrides") or {}
        if cameras and "cameras" not in overrides and not set(base.cameras) <= set(cameras):
            changes["cameras"] = tuple(cameras)
            if base.generation.foresight_camera not in (None, *cameras):
                changes["generation"] = dataclasses_replace(base.generation, foresight_camera=None)
        return base.replace(**changes)
    name = str(named) if named is not None else base.default_embodiment_name
    known = {e.name: e for e in base.embodiments}
    if name not in known:
        raise ConfigError(
            f"data.embodiment: expected one of the model's embodiments {list(known)}, received {name!r}"
        )
    explicit = known[name]
    dataset = embodiment_from_dataset(
        root, name=name, normalization="identity", state_key=state_key, action_key=action_key
    )
    widths = {
        "state": (explicit.state_dim, int(data.get("pad_state_to") or dataset.state_dim)),
        "action": (explicit.action_dim, int(data.get("pad_action_to") or dataset.action_dim)),
    }
    wrong = [
        f"{part} {expected} != {received}"
        for part, (expected, received) in widths.items()
        if expected != received
    ]
    if wrong:
        raise ConfigError(
            f"model: the embodiment {name!r} the run names expects state {explicit.state_dim} and action "
            f"{explicit.action_dim}, but the dataset {root} holds state {dataset.state_dim} and action "
            f"{dataset.action_dim} ({'; '.join(wrong)}); remove the explicit embodiment to build it from the "
            "dataset, or fix its dimensions"
        )
    return base


def _dataset_cameras(root: Path) -> list[str]:
    """The camera names (without ``observation.images.``) of the dataset at ``root``."""
    return [
        key[len(IMAGE_KEY_PREFIX) :]
        for key in load_metadata(root).camera_keys
        if key.startswith(IMAGE_KEY_PREFIX)
    ]


def build_f1_model(config: dict[str, Any], *, data: Mapping[str, Any] | None = None) -> F1Model:
    """The F1 model of a run file's ``model`` section (``preset`` or ``config_file``, then ``overrides``),
    with the embodiment of the run's ``data`` (see :func:`f1_config_for`)."""
    return F1Model(f1_config_for(config, data))


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
