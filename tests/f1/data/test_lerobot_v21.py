"""Reading the older LeRobot v2.1 layout (what the published F1 trains on), written here by hand."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from f1.data import LeRobotDataset, WindowConfig, WindowedDataset
from f1.model import ConfigError, Embodiment

FPS = 10
SIZE = 32
CAMERA = "observation.images.top"
LENGTHS = (4, 6, 5)
TASKS = ("open the drawer", "close the drawer")


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=FPS, options={"crf": "0", "g": "2"})
        stream.pix_fmt, stream.width, stream.height = "yuv444p", SIZE, SIZE
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _stats(values: np.ndarray) -> dict[str, Any]:
    values = values.reshape(len(values), -1).astype(np.float64)
    return {
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "count": [len(values)],
    }


def write_v21_dataset(root: Path, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """One parquet and one mp4 per episode, meta/*.jsonl, info.json with codebase_version v2.1."""
    episodes = []
    global_index = 0
    (root / "meta").mkdir(parents=True)
    with (
        (root / "meta/episodes.jsonl").open("w") as ep_file,
        (root / "meta/episodes_stats.jsonl").open("w") as st,
    ):
        for e, length in enumerate(LENGTHS):
            state = rng.normal(size=(length, 2)).astype(np.float32)
            action = rng.normal(size=(length, 2)).astype(np.float32)
            frames = rng.integers(0, 256, size=(length, SIZE, SIZE, 3), dtype=np.uint8)
            task_index = e % 2
            table = pa.table(
                {
                    "observation.state": pa.array(state.tolist(), pa.list_(pa.float32())),
                    "action": pa.array(action.tolist(), pa.list_(pa.float32())),
                    "timestamp": pa.array(np.arange(length, dtype=np.float32) / FPS),
                    "frame_index": pa.array(np.arange(length, dtype=np.int64)),
                    "episode_index": pa.array(np.full(length, e, dtype=np.int64)),
                    "index": pa.array(np.arange(global_index, global_index + length, dtype=np.int64)),
                    "task_index": pa.array(np.full(length, task_index, dtype=np.int64)),
                }
            )
            data_path = root / f"data/chunk-000/episode_{e:06d}.parquet"
            data_path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, data_path)
            _write_mp4(root / f"videos/chunk-000/{CAMERA}/episode_{e:06d}.mp4", frames)
            ep_file.write(
                json.dumps({"episode_index": e, "tasks": [TASKS[task_index]], "length": length}) + "\n"
            )
            stats = {"observation.state": _stats(state), "action": _stats(action)}
            st.write(json.dumps({"episode_index": e, "stats": stats}) + "\n")
            episodes.append({"observation.state": state, "action": action, CAMERA: frames})
            global_index += length
    (root / "meta/tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(TASKS))
    )
    scalar = {"shape": [1], "names": None}
    info = {
        "codebase_version": "v2.1",
        "robot_type": "aloha",
        "total_episodes": len(LENGTHS),
        "total_frames": sum(LENGTHS),
        "total_tasks": len(TASKS),
        "total_videos": len(LENGTHS),
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": f"0:{len(LENGTHS)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {
            CAMERA: {
                "dtype": "video",
                "shape": [SIZE, SIZE, 3],
                "names": ["height", "width", "channel"],
                "info": {"video.fps": FPS, "video.codec": "h264", "video.pix_fmt": "yuv444p"},
            },
            "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
            "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]},
            "timestamp": {"dtype": "float32", **scalar},
            "frame_index": {"dtype": "int64", **scalar},
            "episode_index": {"dtype": "int64", **scalar},
            "index": {"dtype": "int64", **scalar},
            "task_index": {"dtype": "int64", **scalar},
        },
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return episodes


@pytest.fixture
def v21(tmp_path: Path) -> tuple[Path, list[dict[str, np.ndarray]]]:
    root = tmp_path / "v21"
    return root, write_v21_dataset(root, np.random.default_rng(3))


def test_reads_v21_layout(v21) -> None:
    root, episodes = v21
    ds = LeRobotDataset(root)
    assert ds.version == "v2.1"
    assert ds.robot_type == "aloha"
    assert ds.tasks == TASKS
    assert [ep.length for ep in ds.episodes] == list(LENGTHS)
    assert [ep.dataset_from_index for ep in ds.episodes] == [0, 4, 10]
    assert ds.episodes[2].data_path == root / "data/chunk-000/episode_000002.parquet"
    assert ds.episodes[1].videos[CAMERA].path == root / f"videos/chunk-000/{CAMERA}/episode_000001.mp4"
    for e, episode in enumerate(episodes):
        start = int(ds.episode_starts[e])
        np.testing.assert_array_equal(ds.column("action")[start : start + LENGTHS[e]], episode["action"])
        decoded = ds.camera_frames(CAMERA, e, np.arange(LENGTHS[e])).astype(np.int16)
        assert np.abs(decoded - episode[CAMERA]).max() <= 2  # lossless yuv444p, RGB<->YUV rounding only
        assert ds.task_of(e, 0) == TASKS[e % 2]
    assert ds[5]["task"] == TASKS[1]


def test_v21_stats_aggregate_episode_stats(v21) -> None:
    root, episodes = v21
    ds = LeRobotDataset(root)
    all_actions = np.concatenate([ep["action"] for ep in episodes]).astype(np.float64)
    np.testing.assert_allclose(ds.stats["action"]["mean"], all_actions.mean(0), rtol=1e-6)
    np.testing.assert_allclose(ds.stats["action"]["std"], all_actions.std(0), rtol=1e-6)
    np.testing.assert_allclose(ds.stats["action"]["min"], all_actions.min(0))
    assert int(ds.stats["action"]["count"][0]) == sum(LENGTHS)
    # v2.1 stores no quantiles: quantile normalization needs statistics recomputed from the data
    with pytest.raises(ConfigError, match=r"needs statistics \['q01', 'q99'\].*compute_stats"):
        Embodiment.from_dataset_stats("arm", ds.stats, control_hz=ds.fps, normalization="quantile")
    recomputed = ds.compute_stats()
    np.testing.assert_allclose(recomputed["action"]["q99"], np.quantile(all_actions, 0.99, axis=0))
    arm = Embodiment.from_dataset_stats("arm", recomputed, control_hz=ds.fps, normalization="quantile")
    q99 = torch.tensor(recomputed["action"]["q99"], dtype=torch.float32)
    torch.testing.assert_close(arm.normalize_action(q99), torch.ones_like(q99))


def test_v21_windows(v21) -> None:
    root, episodes = v21
    windows = WindowedDataset(LeRobotDataset(root), WindowConfig((-2, 0), future_offset=2, action_horizon=3))
    sample = windows[4 + 5]  # episode 1, last frame
    assert sample["embodiment"] == "aloha"
    assert sample["action_is_pad"].tolist() == [False, True, True]
    assert bool(sample["future_image_is_pad"])
    assert sample["history_is_pad"].tolist() == [False, False]
    np.testing.assert_array_equal(sample["action"][0].numpy(), episodes[1]["action"][5])
