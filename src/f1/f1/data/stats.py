"""Normalization statistics in LeRobot's layout: per feature min, max, mean, std, count, q01..q99.

Numeric features reduce over frames (a (T, D) column gives D-vectors; a scalar column gives shape (1,)).
Cameras reduce over frames and pixels per channel, scaled to [0, 1], with shape (3, 1, 1), as LeRobot does.
Per-episode statistics are exact; dataset statistics combine episodes exactly for min/max/mean/std and,
like LeRobot, as the count-weighted mean of per-episode quantiles (an approximation of the true quantile
that needs no second pass over the data). :func:`compute_dataset_stats` in ``f1.data.reader`` gives exact
quantiles of the numeric features when they matter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from f1.errors import DatasetFormatError

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)

FeatureStats = dict[str, np.ndarray]
DatasetStats = dict[str, FeatureStats]


def compute_numeric_stats(values: np.ndarray) -> FeatureStats:
    """Statistics of one numeric feature over the frames of an episode (or any set of frames).

    Args:
        values: (T,) or (T, D) array; bools and ints are promoted to float64.

    Returns:
        min/max/mean/std/q.. of shape (1,) for (T,) input and (D,) for (T, D) input; count = [T].
    """
    arr = np.asarray(values)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"values: expected at least one frame, got shape {arr.shape}")
    raw = arr.reshape(arr.shape[0], -1)
    flat = raw.astype(np.float64)
    out: FeatureStats = {
        # integer columns keep integer min/max, as in LeRobot's files
        "min": raw.min(axis=0) if np.issubdtype(raw.dtype, np.integer) else flat.min(axis=0),
        "max": raw.max(axis=0) if np.issubdtype(raw.dtype, np.integer) else flat.max(axis=0),
        "mean": flat.mean(axis=0),
        "std": flat.std(axis=0),
        "count": np.array([arr.shape[0]], dtype=np.int64),
    }
    quantiles = np.quantile(flat, QUANTILES, axis=0)
    for key, q in zip(QUANTILE_KEYS, quantiles):
        out[key] = q
    return out


def sample_frame_indices(num_frames: int) -> np.ndarray:
    """Frames LeRobot uses for image statistics: evenly spaced, about ``num_frames ** 0.75`` (100..10000)."""
    num_samples = max(min(100, num_frames), min(int(num_frames**0.75), 10_000))
    return np.round(np.linspace(0, num_frames - 1, num_samples)).astype(np.int64)


def compute_image_stats(frames: np.ndarray) -> FeatureStats:
    """Per-channel statistics of RGB frames, in [0, 1], shaped (3, 1, 1) as in LeRobot's stats.json.

    Args:
        frames: (T, H, W, 3) uint8. A subset of frames is used (see :func:`sample_frame_indices`) and
            frames of 300 px or more are strided down to about 150 px, as LeRobot does.

    Returns:
        statistics with count = [number of sampled frames]. Quantiles are exact over the sampled pixels
        (uint8 values make a 256-bin histogram exact).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    sampled = frames[sample_frame_indices(frames.shape[0])]
    h, w = sampled.shape[1:3]
    if max(h, w) >= 300:
        step = int(max(h, w) / 150)
        sampled = sampled[:, ::step, ::step]
    pixels = sampled.reshape(-1, 3)
    channel_offset = np.array([0, 256, 512], dtype=np.int32)
    counts = np.bincount((pixels + channel_offset).ravel(), minlength=768).reshape(3, 256)
    values = np.arange(256, dtype=np.float64)
    n = pixels.shape[0]
    mean = counts @ values / n
    var = counts @ values**2 / n - mean**2
    cdf = np.cumsum(counts, axis=1)
    present = counts > 0  # min/max read off the histogram: much cheaper than reducing the pixels again
    out: FeatureStats = {
        "min": np.argmax(present, axis=1).astype(np.float64),
        "max": (255 - np.argmax(present[:, ::-1], axis=1)).astype(np.float64),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
    }
    for key, q in zip(QUANTILE_KEYS, QUANTILES):
        # smallest value whose cumulative count reaches q * n (the "inverted CDF" quantile)
        out[key] = np.array([np.searchsorted(cdf[c], q * n) for c in range(3)], dtype=np.float64)
    out = {k: (v / 255.0).reshape(3, 1, 1) for k, v in out.items()}
    out["count"] = np.array([sampled.shape[0]], dtype=np.int64)
    return out


def aggregate_feature_stats(parts: Sequence[FeatureStats]) -> FeatureStats:
    """Combine statistics of disjoint frame sets: exact min/max/mean/std, count-weighted quantiles."""
    if not parts:
        raise ValueError("parts: expected at least one set of statistics")
    counts = np.array([int(np.asarray(p["count"]).reshape(-1)[0]) for p in parts], dtype=np.float64)
    total = counts.sum()
    means = np.stack([np.asarray(p["mean"], dtype=np.float64) for p in parts])
    weights = counts.reshape(-1, *([1] * (means.ndim - 1)))
    mean = (means * weights).sum(axis=0) / total
    variances = np.stack([np.asarray(p["std"], dtype=np.float64) ** 2 for p in parts])
    var = ((variances + (means - mean) ** 2) * weights).sum(axis=0) / total
    out: FeatureStats = {
        "min": np.min(np.stack([np.asarray(p["min"]) for p in parts]), axis=0),
        "max": np.max(np.stack([np.asarray(p["max"]) for p in parts]), axis=0),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "count": np.array([int(total)], dtype=np.int64),
    }
    for key in QUANTILE_KEYS:
        if all(key in p for p in parts):
            q = np.stack([np.asarray(p[key], dtype=np.float64) for p in parts])
            out[key] = (q * weights).sum(axis=0) / total
    return out


def aggregate_stats(per_episode: Sequence[Mapping[str, FeatureStats]]) -> DatasetStats:
    """Combine per-episode statistics into dataset statistics (union of features)."""
    names: list[str] = []
    for stats in per_episode:
        names.extend(n for n in stats if n not in names)
    return {n: aggregate_feature_stats([s[n] for s in per_episode if n in s]) for n in names}


def stats_to_json(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Nested lists, ready for ``json.dump`` (the ``meta/stats.json`` form)."""
    return {
        feature: {key: np.asarray(value).tolist() for key, value in fstats.items()}
        for feature, fstats in stats.items()
    }


def stats_from_json(raw: Any, source: str | Path) -> DatasetStats:
    """Parse ``meta/stats.json`` (or one episode's stats); ``source`` names the file in errors."""
    if not isinstance(raw, Mapping):
        raise DatasetFormatError(source, f"statistics must be an object, got {type(raw).__name__}")
    out: DatasetStats = {}
    for feature, fstats in raw.items():
        if not isinstance(fstats, Mapping):
            raise DatasetFormatError(source, f"statistics of {feature!r} must be an object")
        parsed: FeatureStats = {}
        for key, value in fstats.items():
            try:
                parsed[key] = np.asarray(value, dtype=np.int64 if key == "count" else np.float64)
            except (TypeError, ValueError):
                raise DatasetFormatError(source, f"statistic {feature}/{key} is not numeric") from None
        for key in ("mean", "std"):
            if key not in parsed:
                raise DatasetFormatError(source, f"statistics of {feature!r} lack {key!r}")
        out[feature] = parsed
    return out


def load_stats_json(path: Path) -> DatasetStats:
    """Read a ``meta/stats.json`` file."""
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetFormatError(path, f"not valid JSON ({err})") from None
    return stats_from_json(raw, path)


def write_stats_json(stats: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """Write ``meta/stats.json`` (indent 4, as LeRobot does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stats_to_json(stats), indent=4))
