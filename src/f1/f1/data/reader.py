"""Read LeRobot datasets (v3.0 and v2.1) with pyarrow and PyAV: a frame-indexed torch ``Dataset``.

Numeric columns of the selected episodes are loaded into memory once (they are small); camera frames are
decoded on demand from mp4 (seeking by timestamp) or from PNG bytes, and decoded video episodes are kept
in an LRU cache so that small datasets are decoded once per process, not once per sample.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from f1.data.features import IMAGE_DTYPE, FeatureSpec, camera_hwc
from f1.data.metadata import DatasetMetadata, EpisodeInfo, load_metadata, read_parquet
from f1.data.stats import (
    DatasetStats,
    FeatureStats,
    aggregate_feature_stats,
    compute_image_stats,
    compute_numeric_stats,
)
from f1.data.video import DEFAULT_TOLERANCE_S, decode_image_bytes, decode_video_frames
from f1.errors import DatasetFormatError


class _EpisodeFrameCache:
    """LRU cache of decoded episodes: (camera, episode position) -> uint8 (T, H, W, 3), bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        frames = self._entries.get(key)
        if frames is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return frames

    def put(self, key: tuple[str, int], frames: np.ndarray) -> None:
        if frames.nbytes > self.max_bytes:
            return
        self._entries[key] = frames
        self.bytes += frames.nbytes
        while self.bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= old.nbytes


def to_float_chw(frames: np.ndarray) -> torch.Tensor:
    """uint8 (K, H, W, 3) frames -> float32 (K, 3, H, W) in [0, 1].

    Done in numpy on purpose: torch's intra-op threads make this tiny per-sample op many times slower on
    a busy machine, and DataLoader workers gain nothing from them.
    """
    return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0)


def _image_bytes(column: pa.ChunkedArray, path: Path, key: str) -> pa.Array:
    """The encoded image bytes of an ``image`` column (LeRobot stores struct<bytes, path>)."""
    array = column.combine_chunks()
    if pa.types.is_struct(array.type) and array.type.get_field_index("bytes") >= 0:
        array = array.field("bytes")
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        raise DatasetFormatError(path, f"column {key!r} should hold image bytes, got type {column.type}")
    if array.null_count:
        raise DatasetFormatError(path, f"column {key!r} has {array.null_count} frames without image bytes")
    return array


def _column_to_numpy(column: pa.ChunkedArray, spec: FeatureSpec, path: Path) -> np.ndarray:
    """(N,) for scalar features, (N, D) for vectors; nulls and wrong widths are format errors."""
    array = column.combine_chunks()
    if array.null_count:
        raise DatasetFormatError(path, f"column {spec.name!r} has {array.null_count} missing values")
    n = len(array)
    if (
        pa.types.is_list(array.type)
        or pa.types.is_large_list(array.type)
        or pa.types.is_fixed_size_list(array.type)
    ):
        values = array.flatten().to_numpy(zero_copy_only=False)
        width = int(np.prod(spec.shape))
        if values.size != n * width:
            raise DatasetFormatError(
                path, f"column {spec.name!r} should hold {width} values per row (shape {list(spec.shape)})"
            )
        out = values.reshape(n, width)
        return out[:, 0] if spec.shape == (1,) else out
    out = array.to_numpy(zero_copy_only=False)
    if spec.shape != (1,):
        raise DatasetFormatError(
            path, f"column {spec.name!r} is scalar but info.json says {list(spec.shape)}"
        )
    return out


class LeRobotDataset(torch.utils.data.Dataset):
    """A LeRobot dataset on disk (v3.0 or v2.1 layout), indexed by frame.

    ``dataset[i]`` gives the i-th frame of the selected episodes as LeRobot does: numeric features as
    tensors (scalars as 0-d), cameras as float32 (3, H, W) in [0, 1], and ``"task"`` as a string.
    Windows of frames for training are built by :class:`f1.data.windows.WindowedDataset`.

    Args:
        root: dataset directory (holding ``meta/info.json``).
        episodes: episode indices to load (default all), in the order given.
        video_cache_mb: budget for decoded video episodes kept in memory (per process). Whole episodes are
            decoded and cached when every selected episode of every camera fits in it; otherwise only the
            frames asked for are decoded.
        tolerance_s: largest gap accepted between a frame's timestamp and the decoded video frame.
    """

    def __init__(
        self,
        root: str | Path,
        episodes: Sequence[int] | None = None,
        video_cache_mb: float = 512,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> None:
        super().__init__()
        if video_cache_mb < 0:
            raise ValueError(f"video_cache_mb: expected >= 0, got {video_cache_mb}")
        if tolerance_s <= 0:
            raise ValueError(f"tolerance_s: expected > 0, got {tolerance_s}")
        self.meta: DatasetMetadata = load_metadata(root)
        self.tolerance_s = tolerance_s
        self.episodes: tuple[EpisodeInfo, ...] = self._select(episodes)
        lengths = np.array([ep.length for ep in self.episodes], dtype=np.int64)
        # (E + 1,): position of each selected episode's first frame, then the total
        self.episode_starts = np.concatenate([[0], np.cumsum(lengths)])
        self._numeric_specs = {
            name: spec
            for name, spec in self.meta.features.items()
            if not spec.is_visual and spec.dtype != "string" and len(spec.shape) == 1
        }
        self._numeric: dict[str, np.ndarray] = {}
        self._images: dict[str, list[pa.Array]] = {}
        self._load_columns()
        camera_bytes = sum(
            int(np.prod(camera_hwc(self.meta.features[k]))) * self.num_frames for k in self.meta.video_keys
        )
        self._cache = _EpisodeFrameCache(int(video_cache_mb * 1024**2))
        self.cache_whole_episodes = camera_bytes <= self._cache.max_bytes

    # ------------------------------------------------------------------ description

    @property
    def root(self) -> Path:
        return self.meta.root

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def fps(self) -> float:
        return self.meta.fps

    @property
    def robot_type(self) -> str | None:
        return self.meta.robot_type

    @property
    def features(self) -> Mapping[str, FeatureSpec]:
        return self.meta.features

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.meta.tasks

    @property
    def stats(self) -> DatasetStats | None:
        """Statistics stored with the dataset (``meta/stats.json`` or aggregated episode stats)."""
        return self.meta.stats

    @property
    def camera_keys(self) -> list[str]:
        return self.meta.camera_keys

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return int(self.episode_starts[-1])

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (
            f"LeRobotDataset(root={str(self.root)!r}, version={self.version}, episodes={self.num_episodes}, "
            f"frames={self.num_frames}, fps={self.fps}, cameras={self.camera_keys})"
        )

    # ------------------------------------------------------------------ frame access

    def locate(self, index: int) -> tuple[int, int]:
        """(episode position, frame index inside the episode) of frame position ``index``."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"index: expected 0 <= index < {self.num_frames}, got {index}")
        episode = int(np.searchsorted(self.episode_starts, index, side="right")) - 1
        return episode, index - int(self.episode_starts[episode])

    def column(self, name: str) -> np.ndarray:
        """A numeric feature over all loaded frames: (N,) for scalars, (N, D) for vectors."""
        if name not in self._numeric:
            raise KeyError(f"name: expected one of {sorted(self._numeric)}, got {name!r}")
        return self._numeric[name]

    def task_of(self, episode: int, frame: int) -> str:
        """The task string of a frame (episode position, frame index)."""
        position = int(self.episode_starts[episode]) + frame
        return self.meta.tasks[int(self._numeric["task_index"][position])]

    def camera_frames(self, key: str, episode: int, frames: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames of one camera in one episode.

        Args:
            key: camera feature, e.g. ``"observation.images.front"``.
            episode: episode position (0 .. num_episodes - 1).
            frames: (K,) frame indices inside the episode (0 .. T - 1).

        Returns:
            (K, H, W, 3) uint8 RGB frames.
        """
        spec = self.meta.features.get(key)
        if spec is None or not spec.is_visual:
            raise KeyError(f"key: expected one of {self.camera_keys}, got {key!r}")
        if not 0 <= episode < self.num_episodes:
            raise IndexError(f"episode: expected 0 <= episode < {self.num_episodes}, got {episode}")
        idx = np.asarray(frames, dtype=np.int64)
        length = self.episodes[episode].length
        if idx.size == 0 or idx.min() < 0 or idx.max() >= length:
            raise IndexError(f"frames: expected indices in [0, {length}), got {idx.tolist()}")
        if spec.dtype == IMAGE_DTYPE:
            data = self._images[key][episode]
            source = self.episodes[episode].data_path
            return np.stack([decode_image_bytes(data[int(i)].as_py(), source) for i in idx])
        return self._video_frames(key, episode, idx)

    def __getitem__(self, index: int) -> dict[str, Any]:
        episode, frame = self.locate(int(index))
        position = int(self.episode_starts[episode]) + frame
        item: dict[str, Any] = {name: torch.as_tensor(col[position]) for name, col in self._numeric.items()}
        for key in self.camera_keys:
            item[key] = to_float_chw(self.camera_frames(key, episode, [frame]))[0]
        item["task"] = self.task_of(episode, frame)
        return item

    # ------------------------------------------------------------------ statistics

    def compute_stats(self, include_cameras: bool = False) -> DatasetStats:
        """Statistics recomputed from the loaded frames.

        Numeric features get exact statistics over all frames (exact quantiles, unlike the stored
        per-episode aggregate). Cameras, when asked for, are decoded episode by episode and combined as in
        LeRobot. Store them with :func:`f1.data.stats.write_stats_json` if wanted.
        """
        stats: DatasetStats = {name: compute_numeric_stats(col) for name, col in self._numeric.items()}
        if include_cameras:
            for key in self.camera_keys:
                parts: list[FeatureStats] = []
                for episode in range(self.num_episodes):
                    all_frames = np.arange(self.episodes[episode].length)
                    parts.append(compute_image_stats(self.camera_frames(key, episode, all_frames)))
                stats[key] = aggregate_feature_stats(parts)
        return stats

    # ------------------------------------------------------------------ loading

    def _select(self, episodes: Sequence[int] | None) -> tuple[EpisodeInfo, ...]:
        if episodes is None:
            return self.meta.episodes
        by_index = {ep.episode_index: ep for ep in self.meta.episodes}
        unknown = [e for e in episodes if e not in by_index]
        if unknown:
            raise ValueError(
                f"episodes: {unknown} not in the dataset at {self.meta.root}, whose episodes are "
                f"{min(by_index)}..{max(by_index)} ({len(by_index)} episodes)"
            )
        if len(set(episodes)) != len(episodes) or not episodes:
            raise ValueError(f"episodes: expected distinct episode indices, got {list(episodes)}")
        return tuple(by_index[e] for e in episodes)

    def _load_columns(self) -> None:
        by_file: dict[Path, list[int]] = {}
        for position, ep in enumerate(self.episodes):
            by_file.setdefault(ep.data_path, []).append(position)
        known = {ep.episode_index for ep in self.meta.episodes}
        image_keys = [k for k in self.camera_keys if self.meta.features[k].dtype == IMAGE_DTYPE]
        numeric_parts: dict[str, list[np.ndarray | None]] = {
            n: [None] * len(self.episodes) for n in self._numeric_specs
        }
        image_parts: dict[str, list[pa.Array | None]] = {k: [None] * len(self.episodes) for k in image_keys}
        for path, positions in by_file.items():
            table = read_parquet(path, [*self._numeric_specs, *image_keys])
            columns = {n: _column_to_numpy(table.column(n), s, path) for n, s in self._numeric_specs.items()}
            episode_column = columns.get("episode_index")
            if episode_column is None:
                raise DatasetFormatError(self.meta.root / "meta/info.json", "no 'episode_index' feature")
            strangers = sorted(set(np.unique(episode_column).tolist()) - known)
            if strangers:
                raise DatasetFormatError(
                    path, f"rows of episode(s) {strangers[:5]} which the episode metadata does not list"
                )
            image_bytes = {key: _image_bytes(table.column(key), path, key) for key in image_keys}
            for position in positions:
                rows = self._episode_rows(path, self.episodes[position], columns)
                for name in self._numeric_specs:
                    numeric_parts[name][position] = columns[name][rows]
                for key in image_keys:
                    image_parts[key][position] = image_bytes[key].take(pa.array(rows))
        self._numeric = {n: np.concatenate(parts) for n, parts in numeric_parts.items()}  # type: ignore[arg-type]
        self._images = {k: list(parts) for k, parts in image_parts.items()}  # type: ignore[misc]

    def _episode_rows(self, path: Path, ep: EpisodeInfo, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Row numbers of ``ep`` in a data file, ordered by frame; checked against the metadata."""
        rows = np.flatnonzero(columns["episode_index"] == ep.episode_index)
        if rows.size != ep.length:
            raise DatasetFormatError(
                path,
                f"episode {ep.episode_index} has {rows.size} rows but its metadata says length {ep.length}",
            )
        if "frame_index" in columns:
            frame_index = columns["frame_index"][rows]
            rows = rows[np.argsort(frame_index, kind="stable")]
            if not np.array_equal(columns["frame_index"][rows], np.arange(ep.length)):
                raise DatasetFormatError(
                    path, f"episode {ep.episode_index}: frame_index is not 0..{ep.length - 1}"
                )
        if "index" in columns:
            expected = np.arange(ep.dataset_from_index, ep.dataset_to_index)
            if not np.array_equal(columns["index"][rows], expected):
                raise DatasetFormatError(
                    path,
                    f"episode {ep.episode_index}: global 'index' does not match the metadata range "
                    f"[{ep.dataset_from_index}, {ep.dataset_to_index})",
                )
        return rows

    def _video_frames(self, key: str, episode: int, idx: np.ndarray) -> np.ndarray:
        cached = self._cache.get((key, episode)) if self.cache_whole_episodes else None
        if cached is not None:
            return cached[idx]
        ep = self.episodes[episode]
        segment = ep.videos[key]
        start = int(self.episode_starts[episode])
        if "timestamp" in self._numeric:
            timestamps = self._numeric["timestamp"][start : start + ep.length].astype(np.float64)
        else:
            timestamps = np.arange(ep.length) / self.fps
        if self.cache_whole_episodes:
            frames = decode_video_frames(segment.path, segment.from_timestamp + timestamps, self.tolerance_s)
            self._cache.put((key, episode), frames)
            return frames[idx]
        return decode_video_frames(segment.path, segment.from_timestamp + timestamps[idx], self.tolerance_s)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. for spawned DataLoader workers) without the decoded frames: each process decodes."""
        state = self.__dict__.copy()
        state["_cache"] = _EpisodeFrameCache(self._cache.max_bytes)
        return state

    def cache_info(self) -> dict[str, int]:
        """Decoded-video cache counters: hits, misses, bytes held."""
        return {"hits": self._cache.hits, "misses": self._cache.misses, "bytes": self._cache.bytes}
