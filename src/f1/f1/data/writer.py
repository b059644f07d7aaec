"""Write LeRobot v3.0 datasets (the layout LeRobot 0.4.x writes), with pyarrow and PyAV only.

Layout written::

    meta/info.json, meta/stats.json, meta/tasks.parquet
    meta/episodes/chunk-000/file-000.parquet      one row per episode
    data/chunk-000/file-000.parquet               many episodes per file, rotated by size
    videos/<camera>/chunk-000/file-000.mp4        many episodes per file, rotated by size
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from f1.data import layout
from f1.data.features import (
    FeatureSpec,
    camera_hwc,
    default_feature_specs,
    validate_user_features,
)
from f1.data.parquet_schema import data_schema, rows_to_table, tasks_table
from f1.data.stats import (
    STAT_KEYS,
    FeatureStats,
    aggregate_stats,
    compute_image_stats,
    compute_numeric_stats,
    write_stats_json,
)
from f1.data.video import VideoEncoding, VideoStreamWriter, encode_png, probe_video_info

_MB = 1024**2


@dataclass(frozen=True)
class FileRotation:
    """When files rotate (LeRobot 0.4.x defaults).

    Attributes:
        chunks_size: files per ``chunk-XXX`` directory.
        data_files_size_in_mb: a data (or episode metadata) parquet file closes before exceeding this.
        video_files_size_in_mb: an mp4 file is closed before it would exceed this.
    """

    chunks_size: int = layout.DEFAULT_CHUNKS_SIZE
    data_files_size_in_mb: float = layout.DEFAULT_DATA_FILE_SIZE_MB
    video_files_size_in_mb: float = layout.DEFAULT_VIDEO_FILE_SIZE_MB

    def __post_init__(self) -> None:
        if not isinstance(self.chunks_size, int) or self.chunks_size < 1:
            raise ValueError(f"chunks_size: expected a positive int, got {self.chunks_size!r}")
        for name in ("data_files_size_in_mb", "video_files_size_in_mb"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name}: expected a positive number, got {value!r}")


@dataclass
class _FileCursor:
    """The file currently being appended to, and how much it holds."""

    chunk_index: int = 0
    file_index: int = 0
    frames: int = 0
    size_bytes: int = 0

    def would_overflow(self, new_frames: int, limit_mb: float) -> bool:
        if self.frames == 0:
            return False
        per_frame = self.size_bytes / self.frames
        return self.size_bytes + per_frame * new_frames >= limit_mb * _MB

    def advance(self, chunks_size: int) -> None:
        self.chunk_index, self.file_index = layout.next_chunk_file(
            self.chunk_index, self.file_index, chunks_size
        )
        self.frames = 0
        self.size_bytes = 0


@dataclass
class _VideoOutput:
    cursor: _FileCursor = field(default_factory=_FileCursor)
    writer: VideoStreamWriter | None = None


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError):
        raise ValueError(f"frames[{name!r}]: expected an array, got {type(value).__name__}") from None


class LeRobotDatasetWriter:
    """Writes episodes into a new LeRobot v3.0 dataset directory.

    Example::

        features = standard_features({"front": (64, 64)}, state_dim=8, action_dim=7)
        with LeRobotDatasetWriter(root, fps=10, features=features, robot_type="sim_arm") as writer:
            writer.add_episode({"observation.images.front": rgb,       # uint8 (T, 64, 64, 3)
                                "observation.state": state,            # float32 (T, 8)
                                "action": action}, task="stack the red block")  # float32 (T, 7)

    Args:
        root: directory to create; it must not exist or be empty.
        fps: frames per second of the recordings.
        features: LeRobot feature dictionary (see :func:`f1.data.features.standard_features`); cameras
            with dtype ``"video"`` go to mp4 files, with dtype ``"image"`` to PNG bytes in the data parquet.
        robot_type: free-form robot name stored in ``info.json``.
        video_encoding: codec settings for video cameras.
        rotation: file size limits and files per chunk.
    """

    def __init__(
        self,
        root: str | Path,
        fps: int,
        features: Mapping[str, Mapping[str, Any]],
        robot_type: str | None = None,
        video_encoding: VideoEncoding | None = None,
        rotation: FileRotation | None = None,
    ) -> None:
        root = Path(root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ValueError(f"root: expected a new or empty directory, got existing {root}")
        if not isinstance(fps, int) or isinstance(fps, bool) or fps <= 0:
            raise ValueError(f"fps: expected a positive int, got {fps!r}")
        if robot_type is not None and not isinstance(robot_type, str):
            raise ValueError(f"robot_type: expected a string or None, got {robot_type!r}")
        user_specs = validate_user_features(features)
        self.root = root
        self.fps = fps
        self.robot_type = robot_type
        self.video_encoding = video_encoding or VideoEncoding()
        self.rotation = rotation or FileRotation()
        self.features: dict[str, FeatureSpec] = {**user_specs, **default_feature_specs()}
        self._user_specs = user_specs
        self._stored_specs = [s for s in self.features.values() if not s.is_video]
        self._video_keys = [name for name, s in user_specs.items() if s.is_video]
        self._schema = data_schema(self._stored_specs)
        self._tasks: dict[str, int] = {}
        self._episode_rows: list[dict[str, Any]] = []
        self._episode_stats: list[dict[str, FeatureStats]] = []
        self._total_frames = 0
        self._data_cursor = _FileCursor()
        self._data_writer: pq.ParquetWriter | None = None
        self._videos = {key: _VideoOutput() for key in self._video_keys}
        self._finalized = False
        root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ public API

    @property
    def num_episodes(self) -> int:
        return len(self._episode_rows)

    @property
    def num_frames(self) -> int:
        return self._total_frames

    def add_episode(self, frames: Mapping[str, Any], task: str) -> int:
        """Append one episode.

        Args:
            frames: one array per user feature, frames first: cameras uint8 (T, H, W, 3), vectors (T, D),
                scalars (T,) or (T, 1). Numpy arrays or torch tensors.
            task: the instruction for the whole episode, e.g. ``"put the cup on the plate"``.

        Returns:
            the episode index (0, 1, 2, ...).
        """
        if self._finalized:
            raise RuntimeError("add_episode: the writer is finalized")
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task: expected a non-empty string, got {task!r}")
        arrays, length = self._validated_episode(frames)
        episode_index = len(self._episode_rows)
        task_index = self._tasks.setdefault(task, len(self._tasks))
        from_index = self._total_frames
        frame_index = np.arange(length, dtype=np.int64)
        arrays["timestamp"] = (frame_index / self.fps).astype(np.float32)
        arrays["frame_index"] = frame_index
        arrays["episode_index"] = np.full(length, episode_index, dtype=np.int64)
        arrays["index"] = np.arange(from_index, from_index + length, dtype=np.int64)
        arrays["task_index"] = np.full(length, task_index, dtype=np.int64)

        row: dict[str, Any] = {"episode_index": episode_index, "tasks": [task], "length": length}
        row.update(self._write_data(arrays, length))
        row["dataset_from_index"] = from_index
        row["dataset_to_index"] = from_index + length
        for key in self._video_keys:
            row.update(self._write_video(key, arrays[key]))
        stats = self._compute_episode_stats(arrays)
        for name, fstats in stats.items():
            for stat in STAT_KEYS:
                row[f"stats/{name}/{stat}"] = np.asarray(fstats[stat]).tolist()
        self._episode_rows.append(row)
        self._episode_stats.append(stats)
        self._total_frames += length
        return episode_index

    def finalize(self) -> Path:
        """Close every file and write the metadata; the dataset is readable afterwards.

        Returns:
            the dataset root.
        """
        if self._finalized:
            raise RuntimeError("finalize: the writer is already finalized")
        if not self._episode_rows:
            raise RuntimeError("finalize: no episode was added")
        self._finalized = True
        if self._data_writer is not None:
            self._data_writer.close()
        for out in self._videos.values():
            if out.writer is not None:
                out.writer.close()
        self._write_episodes_metadata()
        pq.write_table(tasks_table(list(self._tasks)), self.root / layout.TASKS_PARQUET_PATH)
        write_stats_json(aggregate_stats(self._episode_stats), self.root / layout.STATS_PATH)
        self._write_info()
        return self.root

    def __enter__(self) -> LeRobotDatasetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and not self._finalized:
            self.finalize()

    # ------------------------------------------------------------------ validation

    def _validated_episode(self, frames: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        if not isinstance(frames, Mapping):
            raise ValueError(f"frames: expected a mapping of feature -> array, got {type(frames).__name__}")
        missing = [k for k in self._user_specs if k not in frames]
        extra = [k for k in frames if k not in self._user_specs]
        if missing or extra:
            raise ValueError(
                f"frames: expected exactly the features {list(self._user_specs)}; missing {missing}, "
                f"unexpected {extra}"
            )
        arrays: dict[str, np.ndarray] = {}
        length: int | None = None
        for name, spec in self._user_specs.items():
            arr = _to_numpy(frames[name], name)
            if spec.is_visual:
                h, w, c = camera_hwc(spec)
                if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (h, w, c):
                    raise ValueError(
                        f"frames[{name!r}]: expected uint8 (T, {h}, {w}, {c}), got {arr.dtype} {arr.shape}"
                    )
            else:
                if spec.shape == (1,) and arr.ndim == 1:
                    arr = arr[:, None]
                if arr.ndim != 1 + len(spec.shape) or arr.shape[1:] != spec.shape:
                    raise ValueError(
                        f"frames[{name!r}]: expected shape (T, {', '.join(map(str, spec.shape))}), "
                        f"got {arr.shape}"
                    )
                if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                    raise ValueError(f"frames[{name!r}]: expected numbers, got dtype {arr.dtype}")
                if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                    raise ValueError(f"frames[{name!r}]: contains NaN or infinite values")
                arr = arr.astype(spec.dtype, copy=False)
                if spec.shape == (1,):
                    arr = arr[:, 0]
            if length is None:
                length = arr.shape[0]
            elif arr.shape[0] != length:
                raise ValueError(
                    f"frames[{name!r}]: every feature must have the same number of frames; "
                    f"expected {length}, got {arr.shape[0]}"
                )
            arrays[name] = arr
        if not length:
            raise ValueError("frames: an episode needs at least one frame, got 0")
        return arrays, length

    # ------------------------------------------------------------------ files

    def _write_data(self, arrays: Mapping[str, np.ndarray], length: int) -> dict[str, int]:
        cursor = self._data_cursor
        if self._data_writer is not None and cursor.would_overflow(
            length, self.rotation.data_files_size_in_mb
        ):
            self._data_writer.close()
            self._data_writer = None
            cursor.advance(self.rotation.chunks_size)
        path = self.root / layout.DATA_PATH_V30.format(
            chunk_index=cursor.chunk_index, file_index=cursor.file_index
        )
        if self._data_writer is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer = pq.ParquetWriter(path, self._schema, compression="snappy")
        columns = []
        for spec in self._stored_specs:
            arr = arrays[spec.name]
            if spec.is_visual:
                images = [{"bytes": encode_png(im), "path": f"frame-{i:06d}.png"} for i, im in enumerate(arr)]
                columns.append(pa.array(images, type=self._schema.field(spec.name).type))
            elif arr.ndim == 1:
                columns.append(pa.array(arr, type=self._schema.field(spec.name).type))
            else:
                flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
                columns.append(
                    pa.FixedSizeListArray.from_arrays(flat, type=self._schema.field(spec.name).type)
                )
        self._data_writer.write_table(pa.Table.from_arrays(columns, schema=self._schema))
        cursor.frames += length
        cursor.size_bytes = os.path.getsize(path)
        return {"data/chunk_index": cursor.chunk_index, "data/file_index": cursor.file_index}

    def _write_video(self, key: str, frames: np.ndarray) -> dict[str, Any]:
        out = self._videos[key]
        cursor = out.cursor
        if out.writer is not None and cursor.would_overflow(
            frames.shape[0], self.rotation.video_files_size_in_mb
        ):
            out.writer.close()
            out.writer = None
            cursor.advance(self.rotation.chunks_size)
        if out.writer is None:
            path = self.root / layout.VIDEO_PATH_V30.format(
                video_key=key, chunk_index=cursor.chunk_index, file_index=cursor.file_index
            )
            h, w, _ = camera_hwc(self._user_specs[key])
            out.writer = VideoStreamWriter(path, self.fps, h, w, self.video_encoding)
        from_ts = out.writer.duration_s
        out.writer.append(frames)
        cursor.frames = out.writer.num_frames
        cursor.size_bytes = out.writer.bytes_written
        return {
            f"videos/{key}/chunk_index": cursor.chunk_index,
            f"videos/{key}/file_index": cursor.file_index,
            f"videos/{key}/from_timestamp": from_ts,
            f"videos/{key}/to_timestamp": out.writer.duration_s,
        }

    def _compute_episode_stats(self, arrays: Mapping[str, np.ndarray]) -> dict[str, FeatureStats]:
        stats: dict[str, FeatureStats] = {}
        for name, spec in self.features.items():
            fstats = (
                compute_image_stats(arrays[name]) if spec.is_visual else compute_numeric_stats(arrays[name])
            )
            stats[name] = {k: fstats[k] for k in STAT_KEYS}
        return stats

    def _write_episodes_metadata(self) -> None:
        """Episode rows go to ``meta/episodes/chunk-*/file-*.parquet``, split by the data size limit."""
        cursor = _FileCursor()
        batch: list[dict[str, Any]] = []
        batch_bytes = 0
        limit = self.rotation.data_files_size_in_mb * _MB
        row_bytes = [len(json.dumps(r)) for r in self._episode_rows]  # a size estimate, not exact

        def flush() -> None:
            path = self.root / layout.EPISODES_PATH_V30.format(
                chunk_index=cursor.chunk_index, file_index=cursor.file_index
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(rows_to_table(batch), path, compression="snappy")

        for row, size in zip(self._episode_rows, row_bytes):
            if batch and batch_bytes + size >= limit:
                flush()
                batch, batch_bytes = [], 0
                cursor.advance(self.rotation.chunks_size)
            row["meta/episodes/chunk_index"] = cursor.chunk_index
            row["meta/episodes/file_index"] = cursor.file_index
            batch.append(row)
            batch_bytes += size
        flush()

    def _write_info(self) -> None:
        features_json: dict[str, Any] = {}
        for name, spec in self.features.items():
            entry = spec.to_json()
            if spec.is_video:
                entry["info"] = probe_video_info(
                    self.root / layout.VIDEO_PATH_V30.format(video_key=name, chunk_index=0, file_index=0)
                )
            features_json[name] = entry
        num_episodes = len(self._episode_rows)
        info = {
            "codebase_version": layout.CODEBASE_VERSION_V30,
            "robot_type": self.robot_type,
            "total_episodes": num_episodes,
            "total_frames": self._total_frames,
            "total_tasks": len(self._tasks),
            "chunks_size": self.rotation.chunks_size,
            "data_files_size_in_mb": _json_number(self.rotation.data_files_size_in_mb),
            "video_files_size_in_mb": _json_number(self.rotation.video_files_size_in_mb),
            "fps": self.fps,
            "splits": {"train": f"0:{num_episodes}"},
            "data_path": layout.DATA_PATH_V30,
            "video_path": layout.VIDEO_PATH_V30 if self._video_keys else None,
            "features": features_json,
        }
        path = self.root / layout.INFO_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=4, ensure_ascii=False))


def _json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
