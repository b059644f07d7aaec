"""Feature descriptions: what each column / camera of a LeRobot dataset holds.

A feature is described in ``meta/info.json`` as ``{"dtype": ..., "shape": [...], "names": ...}``; cameras
have dtype ``"video"`` (frames in mp4 files) or ``"image"`` (PNG bytes inside the data parquet) and shape
``(height, width, channels)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from f1.errors import DatasetFormatError
from f1.keys import ACTION_KEY, IMAGE_KEY_PREFIX, STATE_KEY

VIDEO_DTYPE = "video"
IMAGE_DTYPE = "image"
VISUAL_DTYPES = (VIDEO_DTYPE, IMAGE_DTYPE)
NUMERIC_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")

# Per-frame bookkeeping columns every LeRobot dataset has, in LeRobot's order (they follow user features).
DEFAULT_FEATURE_NAMES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_DEFAULT_FEATURE_DTYPES = {
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}


@dataclass(frozen=True)
class FeatureSpec:
    """One feature of a dataset.

    Attributes:
        name: column / camera key, e.g. ``"observation.state"`` or ``"observation.images.front"``.
        dtype: a numpy dtype name, ``"video"`` or ``"image"`` (``"string"`` features are kept but not loaded).
        shape: per-frame shape; ``(1,)`` for scalars, ``(H, W, C)`` for cameras.
        names: LeRobot's optional axis/element names, kept verbatim.
        info: extra per-feature info (video codec, fps, ...), kept verbatim.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    names: Any = None
    info: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def is_visual(self) -> bool:
        return self.dtype in VISUAL_DTYPES

    @property
    def is_video(self) -> bool:
        return self.dtype == VIDEO_DTYPE

    @property
    def is_default(self) -> bool:
        return self.name in DEFAULT_FEATURE_NAMES

    def to_json(self) -> dict[str, Any]:
        """The ``info.json`` form of this feature."""
        out: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape), "names": self.names}
        if self.info is not None:
            out["info"] = self.info
        return out

    @classmethod
    def from_json(cls, name: str, raw: Any, source: str | Path) -> FeatureSpec:
        """Parse one entry of ``info.json["features"]``; ``source`` names the file for error messages."""
        if not isinstance(raw, Mapping):
            raise DatasetFormatError(source, f"feature {name!r} must be an object, got {type(raw).__name__}")
        for key in ("dtype", "shape"):
            if key not in raw:
                raise DatasetFormatError(source, f"feature {name!r} is missing the key {key!r}")
        dtype, shape = raw["dtype"], raw["shape"]
        if not isinstance(dtype, str):
            raise DatasetFormatError(source, f"feature {name!r} has a non-string dtype {dtype!r}")
        if not isinstance(shape, Sequence) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise DatasetFormatError(source, f"feature {name!r} has an invalid shape {shape!r}")
        if dtype in VISUAL_DTYPES and len(shape) != 3:
            raise DatasetFormatError(source, f"camera {name!r} must have a 3-d shape, got {list(shape)}")
        info = raw.get("info")
        return cls(name, dtype, tuple(int(d) for d in shape), raw.get("names"), dict(info) if info else None)


def camera_hwc(spec: FeatureSpec) -> tuple[int, int, int]:
    """(height, width, channels) of a camera feature, whichever axis order its ``names`` declare."""
    names = spec.names
    if isinstance(names, Sequence) and len(names) == 3 and names[0] in ("channel", "channels"):
        c, h, w = spec.shape
        return h, w, c
    h, w, c = spec.shape
    return h, w, c


def parse_features(raw: Any, source: str | Path) -> dict[str, FeatureSpec]:
    """Parse ``info.json["features"]`` (an object of name -> description)."""
    if not isinstance(raw, Mapping) or not raw:
        raise DatasetFormatError(source, "'features' must be a non-empty object")
    return {name: FeatureSpec.from_json(name, desc, source) for name, desc in raw.items()}


def default_feature_specs() -> dict[str, FeatureSpec]:
    """The five bookkeeping features (timestamp, frame_index, episode_index, index, task_index)."""
    return {name: FeatureSpec(name, _DEFAULT_FEATURE_DTYPES[name], (1,)) for name in DEFAULT_FEATURE_NAMES}


def validate_user_features(features: Mapping[str, Mapping[str, Any]]) -> dict[str, FeatureSpec]:
    """Validate the features a writer is asked to store (public boundary: raises ``ValueError``).

    Args:
        features: name -> ``{"dtype", "shape", "names"}`` as in LeRobot; the default bookkeeping
            features must not be listed (the writer adds them).
    """
    if not isinstance(features, Mapping) or not features:
        raise ValueError(f"features: expected a non-empty mapping of name -> description, got {features!r}")
    specs: dict[str, FeatureSpec] = {}
    for name, desc in features.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"features: names must be non-empty strings without '/', got {name!r}")
        if name in DEFAULT_FEATURE_NAMES:
            raise ValueError(f"features[{name!r}]: this bookkeeping feature is added by the writer")
        try:
            spec = FeatureSpec.from_json(name, desc, "<features argument>")
        except DatasetFormatError as err:
            raise ValueError(f"features[{name!r}]: {err.problem}") from None
        if spec.dtype not in VISUAL_DTYPES + NUMERIC_DTYPES:
            raise ValueError(
                f"features[{name!r}]['dtype']: expected one of {VISUAL_DTYPES + NUMERIC_DTYPES}, "
                f"got {spec.dtype!r}"
            )
        if spec.is_visual:
            h, w, c = camera_hwc(spec)
            if c != 3:
                raise ValueError(f"features[{name!r}]['shape']: expected 3 channels (RGB), got {spec.shape}")
            if spec.is_video and (h % 2 or w % 2):
                raise ValueError(
                    f"features[{name!r}]['shape']: H.264 with yuv420p needs even height and width, "
                    f"got {h}x{w}"
                )
        specs[name] = spec
    return specs


def standard_features(
    cameras: Mapping[str, tuple[int, int]],
    state_dim: int,
    action_dim: int,
    image_storage: Literal["video", "image"] = "video",
    state_names: Sequence[str] | None = None,
    action_names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The usual robot features: RGB cameras, a float32 state vector and a float32 action vector.

    Args:
        cameras: camera name -> (height, width); stored under ``observation.images.<name>``.
        state_dim: length S of ``observation.state``.
        action_dim: length A of ``action``.
        image_storage: ``"video"`` (H.264 mp4, LeRobot's default) or ``"image"`` (PNG in parquet).
        state_names: optional per-dimension names of the state (default ``state_0`` ...).
        action_names: optional per-dimension names of the action (default ``action_0`` ...).

    Returns:
        A LeRobot feature dictionary for :class:`~f1.data.writer.LeRobotDatasetWriter`.
    """
    if image_storage not in VISUAL_DTYPES:
        raise ValueError(f"image_storage: expected 'video' or 'image', got {image_storage!r}")
    for arg, dim in (("state_dim", state_dim), ("action_dim", action_dim)):
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"{arg}: expected a positive int, got {dim!r}")
    s_names = list(state_names) if state_names is not None else [f"state_{i}" for i in range(state_dim)]
    a_names = list(action_names) if action_names is not None else [f"action_{i}" for i in range(action_dim)]
    if len(s_names) != state_dim or len(a_names) != action_dim:
        raise ValueError(
            f"state_names/action_names: expected {state_dim}/{action_dim} names, "
            f"got {len(s_names)}/{len(a_names)}"
        )
    features: dict[str, dict[str, Any]] = {}
    for cam, hw in cameras.items():
        if len(hw) != 2:
            raise ValueError(f"cameras[{cam!r}]: expected (height, width), got {hw!r}")
        features[IMAGE_KEY_PREFIX + cam] = {
            "dtype": image_storage,
            "shape": [int(hw[0]), int(hw[1]), 3],
            "names": ["height", "width", "channels"],
        }
    features[STATE_KEY] = {"dtype": "float32", "shape": [state_dim], "names": s_names}
    features[ACTION_KEY] = {"dtype": "float32", "shape": [action_dim], "names": a_names}
    return features
