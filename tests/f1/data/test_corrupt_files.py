"""Corrupt or inconsistent datasets fail with a DatasetFormatError that names the file at fault."""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from f1.data import DatasetFormatError, LeRobotDataset, UnsupportedVersionError
from f1.data.video import VideoEncoding, VideoStreamWriter

FRONT = "observation.images.front"
DATA_FILE = "data/chunk-000/file-000.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
VIDEO_FILE = f"videos/{FRONT}/chunk-000/file-000.mp4"


def _raises_naming(
    path: Path, match: str
) -> AbstractContextManager[pytest.ExceptionInfo[DatasetFormatError]]:
    return pytest.raises(DatasetFormatError, match=re.escape(str(path)) + ".*" + match)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_data_parquet(write_dataset) -> None:
    root, _, _ = write_dataset()
    _truncate(root / DATA_FILE)
    with _raises_naming(root / DATA_FILE, "cannot read parquet") as info:
        LeRobotDataset(root)
    assert info.value.path == root / DATA_FILE


def test_truncated_episodes_parquet(write_dataset) -> None:
    root, _, _ = write_dataset()
    _truncate(root / EPISODES_FILE)
    with _raises_naming(root / EPISODES_FILE, "cannot read parquet"):
        LeRobotDataset(root)


def test_truncated_tasks_parquet(write_dataset) -> None:
    root, _, _ = write_dataset()
    _truncate(root / "meta/tasks.parquet")
    with _raises_naming(root / "meta/tasks.parquet", "cannot read parquet"):
        LeRobotDataset(root)


@pytest.mark.parametrize("key", ["fps", "features", "data_path", "codebase_version"])
def test_info_json_missing_key(write_dataset, key: str) -> None:
    root, _, _ = write_dataset()
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    del info[key]
    info_path.write_text(json.dumps(info))
    with _raises_naming(info_path, f"missing the key '{key}'"):
        LeRobotDataset(root)


def test_info_json_not_json_and_missing(write_dataset) -> None:
    root, _, _ = write_dataset()
    info_path = root / "meta/info.json"
    info_path.write_text("{ not json")
    with _raises_naming(info_path, "not valid JSON"):
        LeRobotDataset(root)
    info_path.unlink()
    with _raises_naming(info_path, "file not found"):
        LeRobotDataset(root)


def test_feature_missing_shape(write_dataset) -> None:
    root, _, _ = write_dataset()
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    del info["features"]["action"]["shape"]
    info_path.write_text(json.dumps(info))
    with _raises_naming(info_path, "feature 'action' is missing the key 'shape'"):
        LeRobotDataset(root)


def test_unsupported_version(write_dataset) -> None:
    root, _, _ = write_dataset()
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["codebase_version"] = "v2.0"
    info_path.write_text(json.dumps(info))
    with pytest.raises(
        UnsupportedVersionError, match=re.escape(str(info_path)) + ".*'v2.0' is not supported"
    ):
        LeRobotDataset(root)


def test_totals_disagree_with_episodes(write_dataset) -> None:
    root, _, _ = write_dataset(lengths=(3, 4))
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["total_frames"] = 99
    info_path.write_text(json.dumps(info))
    with _raises_naming(info_path, "'total_frames' says 99 but the metadata holds 7"):
        LeRobotDataset(root)


def test_video_shorter_than_episode(write_dataset, tmp_path: Path) -> None:
    """Re-encode the mp4 without its last 3 frames: the last episode cannot be decoded in full."""
    root, _, _ = write_dataset(lengths=(4, 5))
    video = root / VIDEO_FILE
    full = LeRobotDataset(root)
    frames = np.concatenate([full.camera_frames(FRONT, e, np.arange(n)) for e, n in enumerate((4, 5))])
    short = VideoStreamWriter(tmp_path / "short.mp4", 10, 32, 32, VideoEncoding())
    short.append(frames[:-3])
    short.close()
    video.write_bytes((tmp_path / "short.mp4").read_bytes())
    ds = LeRobotDataset(root)
    ds.camera_frames(FRONT, 0, [0, 3])  # the first episode is intact
    with _raises_naming(video, "video shorter than the episode"):
        ds.camera_frames(FRONT, 1, [4])
    with _raises_naming(video, "video shorter than the episode"):
        ds[8]


def test_video_file_missing(write_dataset) -> None:
    root, _, _ = write_dataset()
    (root / VIDEO_FILE).unlink()
    with _raises_naming(root / VIDEO_FILE, "cannot decode video"):
        LeRobotDataset(root)[0]


def _rewrite_column(path: Path, name: str, values: list) -> None:
    table = pq.read_table(path)
    column = pa.array(values, type=table.schema.field(name).type)
    table = table.set_column(table.schema.get_field_index(name), name, column)
    pq.write_table(table, path)


def test_data_rows_of_an_episode_index_out_of_range(write_dataset) -> None:
    root, _, _ = write_dataset(lengths=(3, 4))
    episode_index = pq.read_table(root / DATA_FILE).column("episode_index").to_pylist()
    episode_index[-1] = 7  # a row claims an episode the metadata does not have
    _rewrite_column(root / DATA_FILE, "episode_index", episode_index)
    with _raises_naming(root / DATA_FILE, r"episode\(s\) \[7\] which the episode metadata does not list"):
        LeRobotDataset(root)


def test_episode_metadata_range_out_of_range(write_dataset) -> None:
    root, _, _ = write_dataset(lengths=(3, 4))
    to_index = pq.read_table(root / EPISODES_FILE).column("dataset_to_index").to_pylist()
    to_index[-1] = 12  # beyond the 7 frames of the dataset
    _rewrite_column(root / EPISODES_FILE, "dataset_to_index", to_index)
    with _raises_naming(root / EPISODES_FILE, r"episode 1: inconsistent length 4 and frame range \[3, 12\)"):
        LeRobotDataset(root)


def test_episode_length_disagrees_with_data_rows(write_dataset) -> None:
    root, _, _ = write_dataset(lengths=(3, 4))
    table = pq.read_table(root / DATA_FILE)
    pq.write_table(table.slice(0, 6), root / DATA_FILE)  # drop the last row
    with _raises_naming(root / DATA_FILE, "episode 1 has 3 rows but its metadata says length 4"):
        LeRobotDataset(root)


def test_episode_metadata_missing_column(write_dataset) -> None:
    root, _, _ = write_dataset()
    table = pq.read_table(root / EPISODES_FILE)
    pq.write_table(table.drop_columns(["dataset_from_index"]), root / EPISODES_FILE)
    with _raises_naming(root / EPISODES_FILE, r"missing the column\(s\) \['dataset_from_index'\]"):
        LeRobotDataset(root)


def test_v21_jsonl_errors(write_dataset, tmp_path: Path) -> None:
    """A v2.1 episodes.jsonl with a broken line names the file and the line."""
    root, _, _ = write_dataset()
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["codebase_version"] = "v2.1"
    info_path.write_text(json.dumps(info))
    (root / "meta/tasks.jsonl").write_text('{"task_index": 0, "task": "a"}\n')
    (root / "meta/episodes.jsonl").write_text('{"episode_index": 0, "length": 3}\n{broken\n')
    with _raises_naming(root / "meta/episodes.jsonl", "line 2 is not valid JSON"):
        LeRobotDataset(root)
