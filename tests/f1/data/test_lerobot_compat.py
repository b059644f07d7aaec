"""A dataset written by LeRobot 0.4.4 itself loads without conversion (see artifacts/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from f1.data import LeRobotDataset, WindowConfig, WindowedDataset
from f1.model import Embodiment

ARTIFACTS = Path(__file__).parent / "artifacts"
ROOT = ARTIFACTS / "lerobot_0_4_4_v30"
LENGTHS = (5, 7, 6)


def test_reads_a_dataset_written_by_lerobot() -> None:
    ds = LeRobotDataset(ROOT)
    assert (ds.version, ds.fps, ds.robot_type) == ("v3.0", 10, "koch")
    assert ds.tasks == ("task 0", "task 1")
    assert [ep.length for ep in ds.episodes] == list(LENGTHS)
    np.testing.assert_array_equal(ds.column("action"), np.load(ARTIFACTS / "lerobot_0_4_4_v30_actions.npy"))
    for e, length in enumerate(LENGTHS):
        expected = 20 * np.arange(length) + 40 * e
        png = ds.camera_frames("observation.images.png", e, np.arange(length))
        np.testing.assert_array_equal(png[:, 0, 0, 0], expected)
        video = ds.camera_frames("observation.images.cam", e, np.arange(length)).astype(np.int16)
        assert np.abs(video - expected[:, None, None, None]).max() <= 2
        assert ds.task_of(e, 0) == f"task {e % 2}"


def test_lerobot_statistics_drive_an_embodiments_normalization() -> None:
    ds = LeRobotDataset(ROOT)
    actions = ds.column("action").astype(np.float64)
    np.testing.assert_allclose(ds.stats["action"]["mean"], actions.mean(0), rtol=1e-5)
    koch = Embodiment.from_dataset_stats("koch", ds.stats, control_hz=ds.fps, normalization="quantile")
    sample = WindowedDataset(ds, WindowConfig(action_horizon=4))[0]
    normalized = koch.normalize_action(sample["action"])
    q01, q99 = (torch.tensor(ds.stats["action"][k], dtype=torch.float32) for k in ("q01", "q99"))
    torch.testing.assert_close(normalized, (sample["action"] - (q01 + q99) / 2) / ((q99 - q01) / 2))
    torch.testing.assert_close(koch.unnormalize_action(normalized), sample["action"])
    assert sample["history"].shape == (4, 3, 32, 32)
    assert sample["observation.images.png"].shape == (3, 32, 32)
    assert sample["embodiment"] == "koch"


@pytest.mark.parametrize("lerobot_key", ["video.codec", "video.pix_fmt", "video.fps", "video.channels"])
def test_our_video_info_matches_lerobot(write_dataset, lerobot_key: str) -> None:
    """The per-camera info block our writer puts in info.json is the one LeRobot writes."""
    root, _, _ = write_dataset()
    ours = json.loads((root / "meta/info.json").read_text())["features"]["observation.images.front"]["info"]
    theirs = json.loads((ROOT / "meta/info.json").read_text())["features"]["observation.images.cam"]["info"]
    assert set(ours) == set(theirs)
    assert ours[lerobot_key] == theirs[lerobot_key]


def _schema_with_generic_cameras(path: Path, cameras: dict[str, str]) -> list[tuple[str, str]]:
    fields = []
    for field in pq.read_schema(path):
        name = field.name
        for camera, generic in cameras.items():
            name = name.replace(camera, generic)
        fields.append((name, str(field.type)))
    return fields


def test_our_episode_metadata_has_lerobots_columns_and_types(write_dataset) -> None:
    """Same columns, same order, same Arrow types as LeRobot's meta/episodes file (cameras renamed)."""
    root, _, _ = write_dataset(storage={"front": "video", "wrist": "image"})
    episodes_file = "meta/episodes/chunk-000/file-000.parquet"
    ours = _schema_with_generic_cameras(
        root / episodes_file, {"observation.images.front": "VIDEO", "observation.images.wrist": "PNG"}
    )
    theirs = _schema_with_generic_cameras(
        ROOT / episodes_file, {"observation.images.cam": "VIDEO", "observation.images.png": "PNG"}
    )
    assert ours == theirs
