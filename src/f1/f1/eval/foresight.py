"""The foresight picture and its numbers: what F1 imagines ``stride`` steps ahead against what happened.

Episodes of the scripted expert on held-out seeds give real frame sequences; at an anchor step t the
policy receives the history it would have had (frames t - (T-1)*stride .. t), samples its foresight and
decodes it. The imagined frame is compared with the real frame at t + stride (PSNR, at the tokenizer's
image size) and with two references: the real frame through the tokenizer (the best a foresight can reach)
and "nothing moves" (the current frame as the prediction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from f1.envs import TABLE_IMAGE_KEY, TableTaskConfig, TableTaskEnv, make_expert, rollout
from f1.eval.plots import ForesightRow
from f1.keys import camera_key
from f1.model import F1Policy
from f1.model.inputs import resize_frames
from var_foresight import psnr

__all__ = ["ForesightSamples", "collect_foresight"]


@dataclass(frozen=True)
class ForesightSamples:
    """Foresight examples and their mean PSNR (dB, at the tokenizer's image size).

    Attributes:
        rows: examples for :func:`f1.eval.plots.plot_foresight` (the first few samples).
        samples: number of anchors measured.
        psnr_imagined: imagined frame vs. the real next frame.
        psnr_tokenizer: the real next frame through the tokenizer vs. itself (upper reference).
        psnr_no_motion: the current frame vs. the real next frame (the "nothing moves" guess).
    """

    rows: list[ForesightRow]
    samples: int
    psnr_imagined: float
    psnr_tokenizer: float
    psnr_no_motion: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "psnr_imagined_db": self.psnr_imagined,
            "psnr_tokenizer_db": self.psnr_tokenizer,
            "psnr_no_motion_db": self.psnr_no_motion,
        }


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in [0, 1] -> uint8 ``(B, H, W, 3)``."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def collect_foresight(
    policy: F1Policy,
    task: TableTaskConfig,
    camera: str,
    seeds: list[int],
    *,
    examples: int = 3,
    seed: int = 0,
) -> ForesightSamples:
    """One anchor per seed (the middle of the expert's approach), all planned in one batch.

    Args:
        policy: a policy that foresees (mode ``f1``).
        task: the table task (embodiment and variant included) whose expert episodes give the frames.
        camera: the camera name under which ``policy`` reads the table view (``observation.images.<camera>``).
        seeds: one episode seed per anchor.
        examples: rows kept for the picture.
        seed: seeds the foresight's sampling.
    """
    config = policy.config
    if not config.has_foresight:
        raise ValueError(f"policy: mode {config.mode!r} predicts no foresight (mode 'f1' does)")
    if not seeds:
        raise ValueError("seeds: expected at least one episode seed")
    offsets, stride = config.history_offsets, config.future_offset
    assert stride is not None  # a policy with foresight imagines a future frame
    env = TableTaskEnv(task)
    expert = make_expert(env)
    current, history, future, states, tasks = [], [], [], [], []
    for episode_seed in seeds:
        record = rollout(env, expert.act, seed=episode_seed)
        images = record[TABLE_IMAGE_KEY]
        length = len(images)
        first, last = -offsets[0], length - 1 - stride
        if last < first:
            continue
        t = (first + last) // 2
        history.append(images[[t + offset for offset in offsets]])
        current.append(images[t])
        future.append(images[t + stride])
        states.append(record["observation.state"][t])
        tasks.append(record["task"])
    if not current:
        raise ValueError("seeds: no episode was long enough for a history and a future frame")

    def as_float(array: np.ndarray) -> torch.Tensor:  # (..., H, W, 3) uint8 -> (..., 3, H, W) in [0, 1]
        return torch.from_numpy(np.ascontiguousarray(array)).movedim(-1, -3).float() / 255.0

    history_t = as_float(np.stack(history))
    observation = {
        camera_key(camera): as_float(np.stack(current)),
        "observation.state": torch.from_numpy(np.stack(states)).float(),
        "task": tasks,
        "embodiment": task.embodiment,
        "history": history_t,
        "history_is_pad": torch.zeros(history_t.shape[:2], dtype=torch.bool),
    }
    policy.eval()
    plan = policy.plan(observation, seed=seed, decode_foresight=True)
    assert plan.foresight is not None
    assert plan.foresight.image is not None
    imagined = plan.foresight.image.float()  # (B, 3, Hg, Wg) in [0, 1]
    size = tuple(imagined.shape[-2:])
    real = resize_frames(as_float(np.stack(future)), size)
    now = resize_frames(as_float(np.stack(current)), size)
    generation = policy.model.generation
    assert generation is not None  # a policy that foresees encodes frames
    tokenizer = generation.tokenizer
    reconstructed = (tokenizer.decode_indices(tokenizer.encode_indices(real * 2 - 1)) + 1) / 2

    def mean_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
        values = psnr(a * 2 - 1, b * 2 - 1)
        return float(values[torch.isfinite(values)].mean()) if torch.isfinite(values).any() else float("inf")

    imagined_psnr = psnr(imagined * 2 - 1, real * 2 - 1)
    rows = []
    history_small = _to_uint8(resize_frames(history_t.flatten(0, 1), size)).reshape(
        len(current), -1, *size, 3
    )
    for i in range(min(examples, len(current))):
        rows.append(
            ForesightRow(
                history=list(history_small[i]),
                predicted=_to_uint8(imagined[i : i + 1])[0],
                real=_to_uint8(real[i : i + 1])[0],
                reconstructed=_to_uint8(reconstructed[i : i + 1])[0],
                caption=f"PSNR {float(imagined_psnr[i]):.1f} dB",
            )
        )
    return ForesightSamples(
        rows=rows,
        samples=len(current),
        psnr_imagined=mean_psnr(imagined, real),
        psnr_tokenizer=mean_psnr(reconstructed, real),
        psnr_no_motion=mean_psnr(now, real),
    )
