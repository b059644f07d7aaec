"""encode_dataset_frames: every frame of a camera through a model's frozen tokenizer, once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from f1.data import LeRobotDataset, LeRobotDatasetWriter, standard_features
from f1.model import F1Model, preset
from f1.train import encode_dataset_frames

TOP = "observation.images.top"


def _dataset(tmp_path, lengths=(3, 4)) -> LeRobotDataset:
    rng = np.random.default_rng(0)
    features = standard_features({"top": (64, 64)}, 8, 7, image_storage="image")
    with LeRobotDatasetWriter(tmp_path / "ds", fps=10, features=features, robot_type="sim_arm") as writer:
        for length in lengths:
            writer.add_episode(
                {
                    TOP: rng.integers(0, 255, size=(length, 64, 64, 3), dtype=np.uint8),
                    "observation.state": rng.normal(size=(length, 8)).astype(np.float32),
                    "action": rng.normal(size=(length, 7)).astype(np.float32),
                },
                "a task",
            )
    return LeRobotDataset(tmp_path / "ds")


def test_every_frame_is_encoded_in_the_datasets_order(tmp_path):
    torch.set_num_threads(1)
    dataset = _dataset(tmp_path)
    torch.manual_seed(0)
    model = F1Model(preset("tiny", cameras=("top",))).eval()
    codes = encode_dataset_frames(model, dataset, TOP, batch_size=2)
    assert codes.num_frames == dataset.num_frames == 7
    assert codes.camera == TOP
    episode, frame = dataset.locate(5)
    pixels = torch.from_numpy(dataset.camera_frames(TOP, episode, [frame])).permute(0, 3, 1, 2)
    latents, indices = model.frame_codes(pixels)
    torch.testing.assert_close(codes.latents[5:6], latents)
    torch.testing.assert_close(codes.indices[5:6], indices)


def test_bad_arguments_are_refused(tmp_path):
    dataset = _dataset(tmp_path, lengths=(2,))
    model = F1Model(preset("tiny", cameras=("top",)))
    with pytest.raises(ValueError, match=r"camera: 'observation\.images\.wrist' is not one of"):
        encode_dataset_frames(model, dataset, "observation.images.wrist")
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        encode_dataset_frames(model, dataset, TOP, batch_size=0)
