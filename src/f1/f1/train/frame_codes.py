"""Encoding a dataset's frames once with a model's frozen tokenizer (:class:`f1.data.FrameCodes`).

A frozen tokenizer gives every frame the same codes at every step; encoding each frame of the foresight
camera once, before training, removes the tokenizer from the training step (the history and the future of
every sample are then looked up). Any model with ``frame_codes(frames) -> (latents, indices)`` works (the
F1 model in the modes that encode frames).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from f1.data import FrameCodes, LeRobotDataset

__all__ = ["FrameEncoder", "encode_dataset_frames"]


class FrameEncoder(Protocol):
    """What :func:`encode_dataset_frames` needs of a model."""

    def frame_codes(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def encode_dataset_frames(
    model: FrameEncoder,
    dataset: LeRobotDataset,
    camera: str,
    *,
    batch_size: int = 256,
    progress: bool = False,
) -> FrameCodes:
    """The codes of every frame of ``camera`` in ``dataset``, in the dataset's global frame order.

    Args:
        model: e.g. an :class:`f1.model.F1Model` in mode ``f1`` or ``history_no_foresight``.
        dataset: the frames.
        camera: the camera key (``"observation.images.<camera>"``).
        batch_size: frames per tokenizer call.
        progress: a progress bar over episodes.
    """
    if camera not in dataset.camera_keys:
        raise ValueError(f"camera: {camera!r} is not one of the dataset's cameras {dataset.camera_keys}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, received {batch_size!r}")
    latents: list[torch.Tensor] = []
    indices: list[torch.Tensor] = []
    episodes = range(len(dataset.episodes))
    for episode in tqdm(episodes, desc="tokenizer codes", disable=not progress, leave=False):
        length = dataset.episodes[episode].length
        frames = dataset.camera_frames(camera, episode, np.arange(length))
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        for start in range(0, length, batch_size):
            f_hat, codes = model.frame_codes(pixels[start : start + batch_size])
            latents.append(f_hat.cpu())
            indices.append(codes.cpu())
    return FrameCodes(camera=camera, latents=torch.cat(latents), indices=torch.cat(indices))
