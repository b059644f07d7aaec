"""Read the metadata of a LeRobot dataset (v3.0 or v2.1) into one version-independent description.

Only ``meta/`` is read here; frame data is loaded by :mod:`f1.data.reader`. Every inconsistency found
raises :class:`~f1.errors.DatasetFormatError` naming the file at fault.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from f1.data import layout
from f1.data.features import FeatureSpec, parse_features
from f1.data.parquet_schema import PANDAS_INDEX_COLUMN, TASK_INDEX_COLUMN
from f1.data.stats import DatasetStats, aggregate_stats, load_stats_json, stats_from_json
from f1.errors import DatasetFormatError, UnsupportedVersionError

_REQUIRED_INFO_KEYS = ("codebase_version", "fps", "features", "data_path")


@dataclass(frozen=True)
class VideoSegment:
    """Where one episode of one camera lives: a span of an mp4 file (seconds)."""

    path: Path
    from_timestamp: float
    to_timestamp: float


@dataclass(frozen=True)
class EpisodeInfo:
    """One episode, as described by the metadata.

    Attributes:
        episode_index: the dataset's own episode id.
        length: number of frames T.
        tasks: instruction strings of the episode.
        dataset_from_index: global index of the first frame.
        dataset_to_index: global index one past the last frame.
        data_path: the parquet file holding its rows.
        videos: camera key -> its span of an mp4 file.
    """

    episode_index: int
    length: int
    tasks: tuple[str, ...]
    dataset_from_index: int
    dataset_to_index: int
    data_path: Path
    videos: Mapping[str, VideoSegment]


@dataclass(frozen=True)
class DatasetMetadata:
    """Everything in ``meta/`` that a reader needs, whatever the layout version.

    Attributes:
        root: dataset directory.
        version: ``"v3.0"`` or ``"v2.1"``.
        fps: frames per second.
        robot_type: as recorded (may be None).
        features: name -> :class:`FeatureSpec` (including the bookkeeping features).
        tasks: task strings; position = ``task_index``.
        episodes: episodes sorted by ``episode_index``.
        stats: dataset statistics (``meta/stats.json``, or aggregated per-episode stats), None if absent.
        info: the raw ``info.json`` content.
    """

    root: Path
    version: str
    fps: int
    robot_type: str | None
    features: Mapping[str, FeatureSpec]
    tasks: tuple[str, ...]
    episodes: tuple[EpisodeInfo, ...]
    stats: DatasetStats | None
    info: Mapping[str, Any]

    @property
    def video_keys(self) -> list[str]:
        return [name for name, spec in self.features.items() if spec.is_video]

    @property
    def camera_keys(self) -> list[str]:
        return [name for name, spec in self.features.items() if spec.is_visual]

    @property
    def total_frames(self) -> int:
        return sum(ep.length for ep in self.episodes)


def load_metadata(root: str | Path) -> DatasetMetadata:
    """Read ``meta/`` of the dataset at ``root``; the layout version comes from ``meta/info.json``."""
    root = Path(root)
    info_path = root / layout.INFO_PATH
    info = _read_json(info_path)
    if not isinstance(info, Mapping):
        raise DatasetFormatError(info_path, "expected a JSON object")
    for key in _REQUIRED_INFO_KEYS:
        if key not in info:
            raise DatasetFormatError(info_path, f"missing the key {key!r}")
    version = info["codebase_version"]
    if version not in layout.SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            info_path,
            f"codebase_version {version!r} is not supported; expected one of {layout.SUPPORTED_VERSIONS} "
            "(convert older datasets with LeRobot's conversion scripts)",
        )
    fps = info["fps"]
    if not isinstance(fps, int | float) or fps <= 0:
        raise DatasetFormatError(info_path, f"'fps' must be a positive number, got {fps!r}")
    features = parse_features(info["features"], info_path)
    if any(spec.is_video for spec in features.values()) and not info.get("video_path"):
        raise DatasetFormatError(info_path, "there are video features but no 'video_path'")
    if version == layout.CODEBASE_VERSION_V30:
        tasks = _load_tasks_v30(root)
        episodes = _load_episodes_v30(root, info, features)
    else:
        tasks = _load_tasks_v21(root)
        episodes = _load_episodes_v21(root, info, features, fps)
    _check_totals(info_path, info, episodes, tasks)
    return DatasetMetadata(
        root=root,
        version=version,
        fps=int(fps) if float(fps).is_integer() else fps,
        robot_type=info.get("robot_type"),
        features=features,
        tasks=tasks,
        episodes=episodes,
        stats=_load_stats(root, version),
        info=info,
    )


# ---------------------------------------------------------------------- shared helpers


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetFormatError(path, "file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetFormatError(path, f"not valid JSON ({err})") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetFormatError(path, "file not found")
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(path, f"line {line_no} is not valid JSON ({err})") from None
        if not isinstance(row, dict):
            raise DatasetFormatError(path, f"line {line_no} is not a JSON object")
        rows.append(row)
    return rows


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read a parquet file (optionally some columns); any failure names the file."""
    if not path.is_file():
        raise DatasetFormatError(path, "file not found")
    try:
        table = pq.read_table(path, columns=None if columns is None else _existing(path, columns))
    except (pa.ArrowException, OSError) as err:
        raise DatasetFormatError(path, f"cannot read parquet ({err})") from None
    return table


def _existing(path: Path, columns: list[str]) -> list[str]:
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as err:
        raise DatasetFormatError(path, f"cannot read parquet ({err})") from None
    missing = [c for c in columns if c not in names]
    if missing:
        raise DatasetFormatError(path, f"missing the column(s) {missing}")
    return columns


def _check_totals(
    info_path: Path, info: Mapping[str, Any], episodes: tuple[EpisodeInfo, ...], tasks: tuple[str, ...]
) -> None:
    expected = {
        "total_episodes": len(episodes),
        "total_frames": sum(ep.length for ep in episodes),
        "total_tasks": len(tasks),
    }
    for key, actual in expected.items():
        if key in info and info[key] != actual:
            raise DatasetFormatError(info_path, f"{key!r} says {info[key]} but the metadata holds {actual}")
    for ep in episodes:
        for task in ep.tasks:
            if task not in tasks:
                raise DatasetFormatError(
                    info_path, f"episode {ep.episode_index} uses an unknown task {task!r}"
                )


def _sorted_unique(episodes: list[EpisodeInfo], source: Path) -> tuple[EpisodeInfo, ...]:
    episodes = sorted(episodes, key=lambda ep: ep.episode_index)
    for a, b in itertools.pairwise(episodes):
        if a.episode_index == b.episode_index:
            raise DatasetFormatError(source, f"episode {a.episode_index} is listed twice")
    if not episodes:
        raise DatasetFormatError(source, "the dataset has no episodes")
    return tuple(episodes)


def _load_stats(root: Path, version: str) -> DatasetStats | None:
    stats_path = root / layout.STATS_PATH
    if stats_path.is_file():
        return load_stats_json(stats_path)
    if version == layout.CODEBASE_VERSION_V21:
        ep_stats_path = root / layout.EPISODES_STATS_JSONL_PATH
        if ep_stats_path.is_file():
            rows = _read_jsonl(ep_stats_path)
            per_episode = []
            for row in rows:
                if "stats" not in row:
                    raise DatasetFormatError(ep_stats_path, f"a line lacks 'stats': {sorted(row)}")
                per_episode.append(stats_from_json(row["stats"], ep_stats_path))
            return aggregate_stats(per_episode) if per_episode else None
    return None


# ---------------------------------------------------------------------- v3.0


def _load_tasks_v30(root: Path) -> tuple[str, ...]:
    path = root / layout.TASKS_PARQUET_PATH
    table = read_parquet(path)
    names = table.schema.names
    task_column = next((c for c in ("task", PANDAS_INDEX_COLUMN) if c in names), None)
    if task_column is None or TASK_INDEX_COLUMN not in names:
        raise DatasetFormatError(path, f"expected columns 'task_index' and the task string, got {names}")
    strings = table.column(task_column).to_pylist()
    indices = table.column(TASK_INDEX_COLUMN).to_pylist()
    if sorted(indices) != list(range(len(indices))):
        raise DatasetFormatError(path, f"task_index must be 0..{len(indices) - 1}, got {sorted(indices)}")
    by_index = dict(zip(indices, strings))
    return tuple(str(by_index[i]) for i in range(len(indices)))


def _episode_columns_v30(video_keys: list[str]) -> list[str]:
    columns = [
        "episode_index",
        "tasks",
        "length",
        "data/chunk_index",
        "data/file_index",
        "dataset_from_index",
        "dataset_to_index",
    ]
    for key in video_keys:
        columns += [
            f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
        ]
    return columns


def _load_episodes_v30(
    root: Path, info: Mapping[str, Any], features: Mapping[str, FeatureSpec]
) -> tuple[EpisodeInfo, ...]:
    episodes_dir = root / layout.EPISODES_DIR
    paths = sorted(episodes_dir.glob("chunk-*/file-*.parquet"))
    if not paths:
        raise DatasetFormatError(episodes_dir, "no episode metadata files (chunk-*/file-*.parquet)")
    video_keys = [name for name, spec in features.items() if spec.is_video]
    data_template, video_template = str(info["data_path"]), info.get("video_path")
    episodes: list[EpisodeInfo] = []
    for path in paths:
        rows = read_parquet(path, _episode_columns_v30(video_keys)).to_pylist()
        for row in rows:
            episodes.append(_episode_from_row_v30(root, path, row, video_keys, data_template, video_template))
    return _sorted_unique(episodes, episodes_dir)


def _episode_from_row_v30(
    root: Path,
    source: Path,
    row: Mapping[str, Any],
    video_keys: list[str],
    data_template: str,
    video_template: str | None,
) -> EpisodeInfo:
    index, length = row["episode_index"], row["length"]
    from_index, to_index = row["dataset_from_index"], row["dataset_to_index"]
    if None in (index, length, from_index, to_index) or length < 1 or to_index - from_index != length:
        raise DatasetFormatError(
            source,
            f"episode {index}: inconsistent length {length} and frame range [{from_index}, {to_index})",
        )
    try:
        data_path = root / data_template.format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )
    except (KeyError, ValueError, TypeError) as err:
        raise DatasetFormatError(source, f"episode {index}: cannot build its data path ({err})") from None
    videos = {}
    for key in video_keys:
        chunk, file_ = row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]
        t0, t1 = row[f"videos/{key}/from_timestamp"], row[f"videos/{key}/to_timestamp"]
        if None in (chunk, file_, t0, t1) or t1 < t0:
            raise DatasetFormatError(source, f"episode {index}: invalid video span for {key!r}")
        assert video_template is not None  # checked against info.json already
        video_path = root / video_template.format(video_key=key, chunk_index=chunk, file_index=file_)
        videos[key] = VideoSegment(video_path, float(t0), float(t1))
    return EpisodeInfo(
        episode_index=int(index),
        length=int(length),
        tasks=tuple(row["tasks"] or ()),
        dataset_from_index=int(from_index),
        dataset_to_index=int(to_index),
        data_path=data_path,
        videos=videos,
    )


# ---------------------------------------------------------------------- v2.1


def _load_tasks_v21(root: Path) -> tuple[str, ...]:
    path = root / layout.TASKS_JSONL_PATH
    rows = _read_jsonl(path)
    by_index: dict[int, str] = {}
    for row in rows:
        if "task_index" not in row or "task" not in row:
            raise DatasetFormatError(path, f"each line needs 'task_index' and 'task', got {sorted(row)}")
        by_index[int(row["task_index"])] = str(row["task"])
    if sorted(by_index) != list(range(len(by_index))):
        raise DatasetFormatError(path, f"task_index must be 0..{len(by_index) - 1}, got {sorted(by_index)}")
    return tuple(by_index[i] for i in range(len(by_index)))


def _load_episodes_v21(
    root: Path, info: Mapping[str, Any], features: Mapping[str, FeatureSpec], fps: float
) -> tuple[EpisodeInfo, ...]:
    path = root / layout.EPISODES_JSONL_PATH
    info_path = root / layout.INFO_PATH
    chunks_size = info.get("chunks_size", layout.DEFAULT_CHUNKS_SIZE)
    video_keys = [name for name, spec in features.items() if spec.is_video]
    rows = sorted(_read_jsonl(path), key=lambda r: r.get("episode_index", -1))
    episodes: list[EpisodeInfo] = []
    from_index = 0
    for row in rows:
        if "episode_index" not in row or "length" not in row:
            raise DatasetFormatError(path, f"each line needs 'episode_index' and 'length', got {sorted(row)}")
        index, length = int(row["episode_index"]), int(row["length"])
        if length < 1:
            raise DatasetFormatError(path, f"episode {index} has length {length}")
        chunk = index // chunks_size
        try:
            data_path = root / str(info["data_path"]).format(episode_chunk=chunk, episode_index=index)
            videos = {
                key: VideoSegment(
                    root
                    / str(info["video_path"]).format(episode_chunk=chunk, video_key=key, episode_index=index),
                    0.0,
                    length / fps,
                )
                for key in video_keys
            }
        except (KeyError, ValueError) as err:
            raise DatasetFormatError(info_path, f"cannot fill the path templates ({err})") from None
        episodes.append(
            EpisodeInfo(
                episode_index=index,
                length=length,
                tasks=tuple(row.get("tasks", ())),
                dataset_from_index=from_index,
                dataset_to_index=from_index + length,
                data_path=data_path,
                videos=videos,
            )
        )
        from_index += length
    return _sorted_unique(episodes, path)
