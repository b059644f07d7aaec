"""Writing and reading the LeRobot v3.0 layout."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from f1.data import (
    FileRotation,
    LeRobotDataset,
    LeRobotDatasetWriter,
    VideoEncoding,
    standard_features,
)

STATE_DIM, ACTION_DIM, SIZE = 4, 3, 32
FRONT, WRIST = "observation.images.front", "observation.images.wrist"

# The info.json keys LeRobot 0.4.x writes (create_empty_dataset_info).
LEROBOT_INFO_KEYS = {
    "codebase_version",
    "robot_type",
    "total_episodes",
    "total_frames",
    "total_tasks",
    "chunks_size",
    "data_files_size_in_mb",
    "video_files_size_in_mb",
    "fps",
    "splits",
    "data_path",
    "video_path",
    "features",
}


def test_layout_matches_lerobot_v30(write_dataset) -> None:
    root, episodes, _ = write_dataset(lengths=(5, 7, 6), storage={"front": "video", "wrist": "image"})
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        f"videos/{FRONT}/chunk-000/file-000.mp4",
    ]
    info = json.loads((root / "meta/info.json").read_text())
    assert set(info) == LEROBOT_INFO_KEYS
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 18, 2)
    assert info["splits"] == {"train": "0:3"}
    assert list(info["features"])[-5:] == ["timestamp", "frame_index", "episode_index", "index", "task_index"]
    video_info = info["features"][FRONT]["info"]
    assert video_info["video.codec"] == "h264"
    assert video_info["video.pix_fmt"] == "yuv420p"
    assert (video_info["video.height"], video_info["video.width"], video_info["video.fps"]) == (
        SIZE,
        SIZE,
        10,
    )
    assert "info" not in info["features"][WRIST]

    episodes_table = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet")
    rows = episodes_table.to_pylist()
    assert [r["dataset_from_index"] for r in rows] == [0, 5, 12]
    assert [r["dataset_to_index"] for r in rows] == [5, 12, 18]
    assert [r[f"videos/{FRONT}/from_timestamp"] for r in rows] == pytest.approx([0.0, 0.5, 1.2])
    assert [r[f"videos/{FRONT}/to_timestamp"] for r in rows] == pytest.approx([0.5, 1.2, 1.8])
    assert rows[1]["tasks"] == ["task 1"]
    assert np.array(rows[0]["stats/observation.state/mean"]) == pytest.approx(
        episodes[0]["observation.state"].mean(axis=0), abs=1e-6
    )
    assert np.array(rows[0][f"stats/{FRONT}/q50"]).shape == (3, 1, 1)
    assert {"meta/episodes/chunk_index", "meta/episodes/file_index"} <= set(episodes_table.column_names)

    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.column("__index_level_0__").to_pylist() == ["task 0", "task 1"]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["__index_level_0__"]

    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert FRONT not in data.column_names  # video frames live in the mp4
    state_type = data.schema.field("observation.state").type  # as `datasets` writes a fixed-length List
    assert pa.types.is_fixed_size_list(state_type)
    assert state_type.list_size == STATE_DIM
    assert state_type.value_type == pa.float32()
    hf_features = json.loads(data.schema.metadata[b"huggingface"])["info"]["features"]
    assert hf_features[WRIST] == {"_type": "Image"}
    assert data.column("index").to_pylist() == list(range(18))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_write_read_round_trip(tmp_path_factory, episode_maker, lengths: list[int], seed: int) -> None:
    """Numbers come back exactly, PNG frames exactly, H.264 frames closely; tasks and indices intact."""
    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("rt") / "ds"
    features = standard_features({"front": (SIZE, SIZE), "wrist": (SIZE, SIZE)}, STATE_DIM, ACTION_DIM)
    features[WRIST]["dtype"] = "image"
    episodes = [episode_maker(rng, n, (FRONT, WRIST)) for n in lengths]
    tasks = [f"do thing {rng.integers(3)}" for _ in lengths]
    with LeRobotDatasetWriter(root, fps=15, features=features, robot_type="arm") as writer:
        for episode, task in zip(episodes, tasks):
            writer.add_episode(episode, task)

    ds = LeRobotDataset(root)
    assert (ds.version, ds.fps, ds.robot_type, ds.num_episodes, len(ds)) == (
        "v3.0",
        15,
        "arm",
        len(lengths),
        sum(lengths),
    )
    assert list(ds.tasks) == list(dict.fromkeys(tasks))
    for e, (episode, task) in enumerate(zip(episodes, tasks)):
        start, length = int(ds.episode_starts[e]), lengths[e]
        np.testing.assert_array_equal(
            ds.column("observation.state")[start : start + length], episode["observation.state"]
        )
        np.testing.assert_array_equal(ds.column("action")[start : start + length], episode["action"])
        np.testing.assert_array_equal(ds.column("frame_index")[start : start + length], np.arange(length))
        assert ds.task_of(e, length - 1) == task
        np.testing.assert_array_equal(ds.camera_frames(WRIST, e, np.arange(length)), episode[WRIST])
        decoded = ds.camera_frames(FRONT, e, np.arange(length)).astype(np.int16)
        assert np.abs(decoded - episode[FRONT]).mean() < 6.0  # lossy H.264 at LeRobot's crf 30


def test_getitem_matches_lerobot_item_format(write_dataset) -> None:
    root, episodes, tasks = write_dataset(lengths=(4, 5))
    ds = LeRobotDataset(root)
    item = ds[6]  # episode 1, frame 2
    assert item[FRONT].shape == (3, SIZE, SIZE)
    assert item[FRONT].dtype == torch.float32
    assert float(item[FRONT].min()) >= 0.0
    assert float(item[FRONT].max()) <= 1.0
    assert torch.equal(item["observation.state"], torch.from_numpy(episodes[1]["observation.state"][2]))
    assert int(item["episode_index"]) == 1
    assert int(item["frame_index"]) == 2
    assert int(item["index"]) == 6
    assert float(item["timestamp"]) == pytest.approx(0.2)
    assert item["task"] == tasks[1]
    with pytest.raises(IndexError, match="index"):
        ds[9]


def test_lossless_video_encoding_round_trips_exactly(write_dataset) -> None:
    root, episodes, _ = write_dataset(lengths=(3, 4), video_encoding=VideoEncoding(pix_fmt="yuv444p", crf=0))
    ds = LeRobotDataset(root)
    for e, episode in enumerate(episodes):
        decoded = ds.camera_frames(FRONT, e, np.arange(len(episode["action"]))).astype(np.int16)
        assert np.abs(decoded - episode[FRONT]).max() <= 2  # only RGB<->YUV rounding remains


def test_files_rotate_by_size_and_chunks(write_dataset) -> None:
    """A tiny size limit gives one file per episode; chunks_size=2 spills into chunk-001."""
    rotation = FileRotation(chunks_size=2, data_files_size_in_mb=1e-6, video_files_size_in_mb=1e-6)
    root, episodes, _ = write_dataset(lengths=(3, 4, 5), rotation=rotation)
    assert sorted(str(p.relative_to(root / "data")) for p in (root / "data").rglob("*.parquet")) == [
        "chunk-000/file-000.parquet",
        "chunk-000/file-001.parquet",
        "chunk-001/file-000.parquet",
    ]
    assert len(list((root / "videos" / FRONT).rglob("*.mp4"))) == 3
    assert len(list((root / "meta/episodes").rglob("*.parquet"))) == 3
    ds = LeRobotDataset(root)
    assert [ep.videos[FRONT].from_timestamp for ep in ds.episodes] == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(ds.column("action")[7:], episodes[2]["action"])
    assert ds.camera_frames(FRONT, 2, [4]).shape == (1, SIZE, SIZE, 3)


def test_episode_subset_and_unknown_episode(write_dataset) -> None:
    root, episodes, _ = write_dataset(lengths=(3, 4, 5))
    ds = LeRobotDataset(root, episodes=[2, 0])
    assert [ep.episode_index for ep in ds.episodes] == [2, 0]
    assert len(ds) == 8
    np.testing.assert_array_equal(ds.column("action")[:5], episodes[2]["action"])
    with pytest.raises(ValueError, match=r"episodes: \[7\] not in the dataset"):
        LeRobotDataset(root, episodes=[7])


def test_decoded_episodes_are_cached(write_dataset) -> None:
    root, _, _ = write_dataset(lengths=(6, 6))
    ds = LeRobotDataset(root)
    assert ds.cache_whole_episodes
    for i in range(len(ds)):
        episode, frame = ds.locate(i)
        ds.camera_frames(FRONT, episode, [frame])
    assert ds.cache_info()["misses"] == 2
    assert ds.cache_info()["hits"] == 10
    copy = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives
    assert copy.cache_info() == {"hits": 0, "misses": 0, "bytes": 0}
    np.testing.assert_array_equal(copy.camera_frames(FRONT, 1, [2]), ds.camera_frames(FRONT, 1, [2]))
    uncached = LeRobotDataset(root, video_cache_mb=0)
    assert not uncached.cache_whole_episodes
    np.testing.assert_array_equal(uncached.camera_frames(FRONT, 1, [3]), ds.camera_frames(FRONT, 1, [3]))


def test_writer_rejects_bad_input(tmp_path: Path, episode_maker) -> None:
    features = standard_features({"front": (SIZE, SIZE)}, STATE_DIM, ACTION_DIM)
    writer = LeRobotDatasetWriter(tmp_path / "w", fps=10, features=features)
    episode = episode_maker(np.random.default_rng(0), 3)
    with pytest.raises(ValueError, match="task"):
        writer.add_episode(episode, task="")
    with pytest.raises(
        ValueError, match=r"frames\['observation.images.front'\]: expected uint8 \(T, 32, 32, 3\)"
    ):
        writer.add_episode({**episode, FRONT: episode[FRONT].astype(np.float32)}, task="t")
    with pytest.raises(ValueError, match=r"frames\['action'\]: every feature must have the same number"):
        writer.add_episode({**episode, "action": episode["action"][:2]}, task="t")
    with pytest.raises(ValueError, match="missing \\['action'\\]"):
        writer.add_episode({k: v for k, v in episode.items() if k != "action"}, task="t")
    with pytest.raises(ValueError, match="NaN"):
        writer.add_episode({**episode, "action": np.full((3, ACTION_DIM), np.nan, np.float32)}, task="t")
    with pytest.raises(RuntimeError, match="no episode"):
        writer.finalize()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("not a dataset")
    with pytest.raises(ValueError, match="root: expected a new or empty directory"):
        LeRobotDatasetWriter(tmp_path / "used", fps=10, features=features)
    with pytest.raises(ValueError, match="fps"):
        LeRobotDatasetWriter(tmp_path / "x", fps=0, features=features)
    odd = standard_features({"front": (31, 32)}, STATE_DIM, ACTION_DIM)
    with pytest.raises(ValueError, match="even height and width"):
        LeRobotDatasetWriter(tmp_path / "y", fps=10, features=odd)


def test_writer_accepts_torch_tensors(tmp_path: Path, episode_maker) -> None:
    features = standard_features({"front": (SIZE, SIZE)}, STATE_DIM, ACTION_DIM)
    episode = {k: torch.from_numpy(v) for k, v in episode_maker(np.random.default_rng(1), 3).items()}
    writer = LeRobotDatasetWriter(tmp_path / "t", fps=10, features=features)
    assert writer.add_episode(episode, task="pick") == 0
    writer.finalize()
    with pytest.raises(RuntimeError, match="finalized"):
        writer.add_episode(episode, task="pick")
    assert torch.equal(torch.from_numpy(LeRobotDataset(tmp_path / "t").column("action")), episode["action"])


def test_av1_video_round_trip(tmp_path: Path) -> None:
    """AV1 (LeRobot 0.4's default codec, SVT-AV1 encoder, dav1d decoder) writes and reads back."""
    features = standard_features({"front": (64, 64)}, 2, 2)
    levels = [np.arange(6) * 30, np.arange(5) * 30 + 10]
    with LeRobotDatasetWriter(
        tmp_path / "av1", fps=10, features=features, video_encoding=VideoEncoding(codec="libsvtav1")
    ) as writer:
        for level in levels:
            frames = np.broadcast_to(level.astype(np.uint8)[:, None, None, None], (len(level), 64, 64, 3))
            zeros = np.zeros((len(level), 2), np.float32)
            writer.add_episode({FRONT: frames.copy(), "observation.state": zeros, "action": zeros}, "t")
    ds = LeRobotDataset(tmp_path / "av1")
    assert ds.features[FRONT].info["video.codec"] == "av1"
    for e, level in enumerate(levels):
        decoded = ds.camera_frames(FRONT, e, np.arange(len(level)))[:, 32, 32, 0].astype(int)
        assert np.abs(decoded - level).max() <= 3
