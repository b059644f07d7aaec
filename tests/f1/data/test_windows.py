"""Training windows: history offsets, future target, action chunk, pad flags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from f1.data import (
    LeRobotDataset,
    LeRobotDatasetWriter,
    WindowConfig,
    WindowedDataset,
    clamp_offsets,
    pad_collate,
    standard_features,
)

FRONT = "observation.images.front"
WRIST = "observation.images.wrist"


@given(
    length=st.integers(1, 40),
    data=st.data(),
    offsets=st.lists(st.integers(-60, 60), min_size=1, max_size=8),
)
def test_clamp_offsets_clamps_inside_and_flags_outside(length: int, data, offsets: list[int]) -> None:
    frame = data.draw(st.integers(0, length - 1))
    indices, is_pad = clamp_offsets(frame, length, offsets)
    raw = frame + np.array(offsets)
    assert ((indices >= 0) & (indices < length)).all()
    np.testing.assert_array_equal(is_pad, (raw < 0) | (raw >= length))
    np.testing.assert_array_equal(indices[~is_pad], raw[~is_pad])  # inside: untouched
    np.testing.assert_array_equal(indices[raw < 0], 0)  # before the start: first frame
    np.testing.assert_array_equal(indices[raw >= length], length - 1)  # past the end: last frame


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="history_offsets: expected a tuple of ints"):
        WindowConfig(history_offsets=(-1.5, 0))
    with pytest.raises(ValueError, match="pad_state_to"):
        WindowConfig(pad_state_to=0)
    with pytest.raises(ValueError, match="ascending offsets <= 0"):
        WindowConfig(history_offsets=(0, -3))
    with pytest.raises(ValueError, match="ascending offsets <= 0"):
        WindowConfig(history_offsets=(-3, 2))
    with pytest.raises(ValueError, match="future_offset"):
        WindowConfig(future_offset=0)
    with pytest.raises(ValueError, match="action_horizon"):
        WindowConfig(action_horizon=0)
    config = WindowConfig.from_delta_timestamps([-0.9, -0.6, -0.3, 0.0], 0.3, action_horizon=8, fps=10)
    assert config.history_offsets == (-9, -6, -3, 0)
    assert config.future_offset == 3
    with pytest.raises(ValueError, match="not a multiple"):
        WindowConfig.from_delta_timestamps([-0.05], None, action_horizon=1, fps=10)


@settings(max_examples=15, deadline=None)
@given(
    history=st.lists(st.integers(-6, 0), min_size=0, max_size=5, unique=True).map(sorted),
    future=st.one_of(st.none(), st.integers(1, 5)),
    horizon=st.integers(1, 8),
    index=st.integers(0, 14),
)
def test_window_content_matches_episodes(png_dataset, history, future, horizon, index) -> None:
    """Every field of a sample equals the written episode at the clamped offsets; pads flag the rest."""
    ds, episodes = png_dataset
    config = WindowConfig(tuple(history), future, horizon)
    sample = WindowedDataset(ds, config, embodiment="franka")[index]
    episode, frame = ds.locate(index)
    raw, length = episodes[episode], ds.episodes[episode].length

    def chw(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).permute(*range(images.ndim - 3), -1, -3, -2).float() / 255

    assert torch.equal(sample[WRIST], chw(raw[WRIST][frame]))  # the current frame
    if history:
        idx, pad = clamp_offsets(frame, length, history)
        assert torch.equal(sample["history"], chw(raw[WRIST][idx]))
        assert sample["history_is_pad"].tolist() == pad.tolist()
    else:
        assert "history" not in sample
    if future is None:
        assert "future_image" not in sample
    else:
        f_idx, f_pad = clamp_offsets(frame, length, [future])
        assert torch.equal(sample["future_image"], chw(raw[WRIST][f_idx[0]]))
        assert bool(sample["future_image_is_pad"]) == bool(f_pad[0])
    a_idx, a_pad = clamp_offsets(frame, length, np.arange(horizon))
    assert torch.equal(sample["action"], torch.from_numpy(raw["action"][a_idx]))
    assert sample["action_is_pad"].tolist() == a_pad.tolist()
    assert torch.equal(sample["observation.state"], torch.from_numpy(raw["observation.state"][frame]))
    assert sample["embodiment"] == "franka"
    assert (sample["episode_index"], sample["frame_index"]) == (episode, frame)


@pytest.fixture(scope="module")
def png_dataset(tmp_path_factory):
    """Cameras stored as PNG so frames compare exactly; episodes of 4, 6 and 5 frames."""
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("png") / "ds"
    features = standard_features({"wrist": (16, 16)}, 4, 3, image_storage="image")
    episodes = []
    with LeRobotDatasetWriter(root, fps=10, features=features, robot_type="sim") as writer:
        for length in (4, 6, 5):
            episode = {
                WRIST: rng.integers(0, 256, size=(length, 16, 16, 3), dtype=np.uint8),
                "observation.state": rng.normal(size=(length, 4)).astype(np.float32),
                "action": rng.normal(size=(length, 3)).astype(np.float32),
            }
            writer.add_episode(episode, task="stack")
            episodes.append(episode)
    return LeRobotDataset(root), episodes


def test_video_windows_batch_in_a_dataloader(write_dataset) -> None:
    root, _, tasks = write_dataset(lengths=(5, 7), storage={"front": "video", "wrist": "image"})
    windows = WindowedDataset(LeRobotDataset(root), WindowConfig((-9, -6, -3, 0), 3, action_horizon=4))
    assert windows.embodiment == "sim_arm"  # defaults to the dataset's robot_type
    loader = torch.utils.data.DataLoader(windows, batch_size=4, shuffle=False)
    batch = next(iter(loader))
    assert batch[FRONT].shape == (4, 3, 32, 32)  # every camera at t
    assert batch[WRIST].shape == (4, 3, 32, 32)
    assert batch["history"].shape == (4, 4, 3, 32, 32)  # the foresight camera (the first one) over time
    torch.testing.assert_close(batch["history"][:, -1], batch[FRONT])  # offset 0 is the current frame
    assert batch["future_image"].shape == (4, 3, 32, 32)
    assert batch["history_is_pad"][0].tolist() == [True, True, True, False]
    assert batch["action"].shape == (4, 4, 3)
    assert batch["action_is_pad"][3].tolist() == [False, False, True, True]  # frame 3 of a 5-frame episode
    assert batch["task"] == [tasks[0]] * 4
    assert batch["embodiment"] == ["sim_arm"] * 4


def test_windowed_dataset_validates_its_arguments(write_dataset) -> None:
    root, _, _ = write_dataset(robot_type=None)
    ds = LeRobotDataset(root)
    with pytest.raises(ValueError, match="embodiment: expected a non-empty name"):
        WindowedDataset(ds)
    with pytest.raises(ValueError, match=r"config\.camera_keys"):
        WindowedDataset(ds, WindowConfig(camera_keys=("observation.images.side",)), embodiment="x")
    with pytest.raises(ValueError, match="'joint_pos' is not in the dataset"):
        WindowedDataset(ds, WindowConfig(state_key="joint_pos"), embodiment="x")


def test_pad_collate_pads_state_and_action_widths() -> None:
    a = {"observation.state": torch.ones(2), "action": torch.ones(3, 2), "task": "x"}
    b = {"observation.state": torch.ones(4), "action": torch.ones(3, 5), "task": "y"}
    batch = pad_collate([a, b])
    assert batch["observation.state"].shape == (2, 4)
    assert batch["action"].shape == (2, 3, 5)
    assert batch["action_dim_mask"].tolist() == [[True, True, False, False, False], [True] * 5]
    assert batch["observation.state"][0].tolist() == [1, 1, 0, 0]
    assert batch["task"] == ["x", "y"]


def test_windows_load_in_worker_processes(write_dataset) -> None:
    """Two DataLoader workers (each with its own decode cache) give the same batches as the main process."""
    root, _, _ = write_dataset(lengths=(5, 6))
    windows = WindowedDataset(LeRobotDataset(root), WindowConfig((-3, 0), 2, action_horizon=3))
    serial = list(torch.utils.data.DataLoader(windows, batch_size=4))
    parallel = list(torch.utils.data.DataLoader(windows, batch_size=4, num_workers=2))
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        assert torch.equal(a["history"], b["history"])
        assert torch.equal(a["action"], b["action"])
        assert a["task"] == b["task"]


def test_padding_to_a_common_width_and_foresight_camera_choice(write_dataset) -> None:
    root, episodes, _ = write_dataset(lengths=(4,), storage={"front": "video", "wrist": "image"})
    config = WindowConfig((-1, 0), 1, 2, foresight_camera=WRIST, pad_state_to=6, pad_action_to=5)
    sample = WindowedDataset(LeRobotDataset(root), config)[1]
    assert sample["observation.state"].shape == (6,)
    assert sample["observation.state"][4:].tolist() == [0.0, 0.0]
    assert torch.equal(sample["action"][:, :3], torch.from_numpy(episodes[0]["action"][1:3]))
    assert torch.all(sample["action"][:, 3:] == 0)
    wrist_now = torch.from_numpy(episodes[0][WRIST][1]).permute(2, 0, 1).float() / 255
    assert torch.equal(sample["history"][-1], wrist_now)
    with pytest.raises(ValueError, match="more than the padded width 2"):
        WindowedDataset(LeRobotDataset(root), WindowConfig(pad_action_to=2))
    with pytest.raises(ValueError, match=r"config\.foresight_camera"):
        WindowedDataset(LeRobotDataset(root), WindowConfig(foresight_camera="observation.images.side"))
