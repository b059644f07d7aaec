"""FrameCodes: per-frame tokenizer codes, saved and loaded as tensors, read by WindowedDataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from f1.data import FrameCodes, LeRobotDataset, WindowConfig, WindowedDataset

FRONT = "observation.images.front"


def _codes(frames: int, camera: str = FRONT) -> FrameCodes:
    # frame n's codes hold n everywhere, so a window's rows name the frames they came from
    latents = torch.arange(frames, dtype=torch.float32)[:, None, None, None].expand(frames, 2, 2, 2).clone()
    indices = torch.arange(frames, dtype=torch.int64)[:, None].expand(frames, 5).clone()
    return FrameCodes(camera=camera, latents=latents, indices=indices)


def test_windows_read_history_and_future_from_the_codes(write_dataset):
    root, _, _ = write_dataset(lengths=(5, 7), storage={"front": "image"})
    dataset = LeRobotDataset(root)
    config = WindowConfig(history_offsets=(-2, 0), future_offset=2, action_horizon=3)
    plain = WindowedDataset(dataset, config)
    coded = WindowedDataset(dataset, config, frame_codes=_codes(dataset.num_frames))
    for index in (0, 3, 5, 6, 11):  # episode starts, middles, ends
        a, b = plain[index], coded[index]
        episode, frame = dataset.locate(index)
        start = int(dataset.episode_starts[episode])
        length = dataset.episodes[episode].length
        history = [start + min(max(frame + o, 0), length - 1) for o in (-2, 0)]
        future = start + min(frame + 2, length - 1)
        assert "history" not in b
        assert "future_image" not in b
        assert b["history.latents"][:, 0, 0, 0].tolist() == history
        assert float(b["future_image.latents"][0, 0, 0]) == future
        assert b["future_image.indices"].tolist() == [future] * 5
        torch.testing.assert_close(b["history_is_pad"], a["history_is_pad"])
        torch.testing.assert_close(b["future_image_is_pad"], a["future_image_is_pad"])
        torch.testing.assert_close(b[FRONT], a[FRONT])  # the current frame is still decoded
        torch.testing.assert_close(b["action"], a["action"])


def test_codes_of_another_camera_or_length_are_refused(write_dataset):
    root, _, _ = write_dataset(lengths=(5, 7), storage={"front": "image"})
    dataset = LeRobotDataset(root)
    config = WindowConfig(history_offsets=(0,), future_offset=1, action_horizon=2)
    with pytest.raises(ValueError, match=r"frame_codes: codes of 'observation\.images\.wrist'"):
        WindowedDataset(dataset, config, frame_codes=_codes(12, "observation.images.wrist"))
    with pytest.raises(ValueError, match="expected codes of the dataset's 12 frames, got 11"):
        WindowedDataset(dataset, config, frame_codes=_codes(11))
    with pytest.raises(ValueError, match="frame_codes: expected FrameCodes"):
        WindowedDataset(dataset, config, frame_codes={"latents": 0})  # type: ignore[arg-type]


def test_codes_round_trip_through_a_file(tmp_path: Path):
    codes = _codes(4)
    path = codes.save(tmp_path / "codes" / "front.safetensors")
    loaded = FrameCodes.load(path)
    assert loaded.camera == FRONT
    torch.testing.assert_close(loaded.latents, codes.latents)
    torch.testing.assert_close(loaded.indices, codes.indices)
    assert not list(path.parent.glob("*.partial"))


def test_foreign_truncated_and_missing_files_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="no frame-codes file"):
        FrameCodes.load(tmp_path / "absent.safetensors")
    path = _codes(4).save(tmp_path / "codes.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        FrameCodes.load(truncated)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="holds no frame codes"):
        FrameCodes.load(foreign)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"camera": ""}, "camera: expected a camera key"),
        ({"latents": torch.zeros(4, 2, 2)}, r"latents: expected a tensor \(N, Cz, h, w\)"),
        ({"latents": torch.zeros(4, 2, 2, 2, dtype=torch.int64)}, "latents: expected floating-point"),
        ({"latents": torch.full((4, 2, 2, 2), float("nan"))}, "latents: expected finite"),
        ({"indices": torch.zeros(4, 5, dtype=torch.int32)}, "indices: expected int64"),
        ({"indices": torch.zeros(4, dtype=torch.int64)}, r"indices: expected a tensor \(N, L\)"),
        ({"indices": torch.zeros(3, 5, dtype=torch.int64)}, "indices: expected one row per frame"),
    ],
)
def test_bad_codes_are_refused_naming_the_field(kwargs, message):
    good = _codes(4)
    fields = {"camera": good.camera, "latents": good.latents, "indices": good.indices, **kwargs}
    with pytest.raises(ValueError, match=message):
        FrameCodes(**fields)


def test_numpy_frames_are_not_codes():
    with pytest.raises(ValueError, match="latents"):
        FrameCodes(camera=FRONT, latents=np.zeros((4, 2, 2, 2)), indices=torch.zeros(4, 5, dtype=torch.int64))  # type: ignore[arg-type]
