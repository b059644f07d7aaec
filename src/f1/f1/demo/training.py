"""Training steps of the demo: the VQ-VAE tokenizer on the demonstration frames, then the F1 stages.

The released F1 starts from a pretrained VAR tokenizer; the demo has none for its table images, so it first
trains a small one on the gripper demonstrations (reconstruction + VAR's quantizer loss) and gives the same
frozen tokenizer to every policy that encodes frames (F1 and History-No-Foresight).

Each stage is the library's :class:`f1.train.Trainer` with a shipped stage config (I, II, III) whose step
count, batch size, learning rate and warm-up are scaled to the demo's budget; each stage starts from a fresh
copy of the previous stage's saved policy, because the trainer only ever freezes parameters (stage I freezes
everything but the generation expert).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from f1.data import FrameCodes, LeRobotDataset, WindowedDataset
from f1.demo.policy import demo_window_config
from f1.model import F1Config, F1Model, F1Policy
from f1.model.inputs import resize_frames
from f1.train import (
    MetricsLogger,
    SeededBatchStream,
    Trainer,
    encode_dataset_frames,
    load_stage_config,
)
from f1.train.lora import ADAPTER_DIR, merged_model, save_adapter
from var_foresight import VQVAE, TokenizerTrainer

__all__ = [
    "StagePlan",
    "dataset_codes",
    "frame_tokenizer",
    "measure_step_seconds",
    "run_stage",
    "train_tokenizer",
]


@dataclass(frozen=True)
class StagePlan:
    """One training stage of the demo.

    Attributes:
        stage: the shipped stage config (1, 2 or 3).
        steps: optimizer steps.
        batch_size: samples per step.
        lr: peak learning rate of every trained group (the vision tower gets half, as in the paper).
        loss_weights: None keeps the stage's weights; the controls, which have no foresight, train the
            flow loss only.
        frozen: None keeps the stage's frozen groups; the demo's stage I freezes only what the generation
            loss cannot train (nothing is pretrained, so the vision and understanding side learn from it).
        lora: None trains the weights themselves; a mapping of :class:`f1.train.LoraSettings` fields
            (e.g. ``{"rank": 8}``) trains LoRA adapters instead (``benchmarks/lora_stage3.py``).
    """

    stage: int
    steps: int
    batch_size: int
    lr: float
    loss_weights: Mapping[str, float] | None = None
    frozen: tuple[str, ...] | None = None
    lora: Mapping[str, Any] | None = None

    def overrides(self) -> dict[str, Any]:
        """Overrides of the shipped stage config."""
        values: dict[str, Any] = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "optimizer.lr": self.lr,
            "optimizer.group_lr": {"vision": self.lr / 2},
            "schedule.warmup_steps": max(1, self.steps // 10),
            "schedule.min_lr_ratio": 0.1,
            "log_interval": max(1, min(10, self.steps // 20)),
            "checkpoint_interval": self.steps,
            "keep_checkpoints": 1,
        }
        if self.loss_weights is not None:
            values["loss_weights"] = dict(self.loss_weights)
        if self.frozen is not None:
            values["frozen"] = list(self.frozen)
        if self.lora is not None:
            values["lora"] = dict(self.lora)
        return values


def frame_tokenizer(policy: F1Policy) -> VQVAE:
    """The VQ-VAE that ``policy`` encodes frames with (modes that read a history: ``f1``,
    ``history_no_foresight``). The one place the demo reaches into a policy's modules."""
    generation = policy.model.generation
    if generation is None:
        raise ValueError(
            f"policy: mode {policy.config.mode!r} encodes no frames, so it has no VQ-VAE tokenizer"
        )
    return generation.tokenizer


def train_tokenizer(
    vqvae: VQVAE,
    dataset: LeRobotDataset,
    camera_key: str,
    *,
    steps: int,
    batch_size: int,
    lr: float = 2e-3,
    seed: int = 0,
    output_dir: Path | None = None,
    progress: bool = False,
) -> list[float]:
    """Train ``vqvae`` on random frames of ``dataset`` (resized to its image size); returns the step losses.

    Writes ``metrics.jsonl`` (``loss``, ``loss/reconstruction``, ``loss/quantizer``) to ``output_dir``.
    """
    from tqdm.auto import tqdm

    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps, batch_size: expected positive ints, received {steps}, {batch_size}")
    rng = np.random.default_rng(seed)
    size = tuple(vqvae.config.image_size)
    parameters = [p for p in vqvae.parameters()]
    for p in parameters:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr / 10)
    trainer = TokenizerTrainer(vqvae, optimizer, generator=torch.Generator().manual_seed(seed))
    logger = MetricsLogger(output_dir, tensorboard=False) if output_dir is not None else None
    losses: list[float] = []
    bar = tqdm(range(steps), desc="tokenizer (VQ-VAE)", disable=not progress, leave=False)
    try:
        for step in bar:
            frames = _random_frames(dataset, camera_key, batch_size, rng)
            images = resize_frames(frames, size) * 2 - 1
            report = trainer.step(images)
            schedule.step()
            losses.append(report.loss)
            if logger is not None:
                logger.log(
                    step + 1,
                    {
                        "loss": report.loss,
                        "loss/reconstruction": report.reconstruction_loss,
                        "loss/quantizer": report.quantizer_loss,
                    },
                )
            bar.set_postfix(loss=f"{report.loss:.4g}", refresh=False)
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    vqvae.eval()
    for p in parameters:
        p.requires_grad_(False)
    return losses


def _random_frames(
    dataset: LeRobotDataset, camera_key: str, count: int, rng: np.random.Generator
) -> torch.Tensor:
    indices = rng.integers(0, len(dataset), size=count)
    frames = []
    for index in indices.tolist():
        episode, frame = dataset.locate(index)
        frames.append(dataset.camera_frames(camera_key, episode, [frame])[0])
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0


def dataset_codes(policy: F1Policy, dataset: LeRobotDataset) -> FrameCodes:
    """The codes of every frame of ``dataset``'s table camera under ``policy``'s frozen tokenizer (modes
    that encode frames), computed once and shared by every stage and policy with that tokenizer."""
    window = demo_window_config(policy.config)
    assert window.foresight_camera is not None
    return encode_dataset_frames(policy.model, dataset, window.foresight_camera)


def _windows(model: F1Model, dataset: LeRobotDataset, codes: FrameCodes | None = None) -> WindowedDataset:
    """Training windows of ``dataset``; in the modes that encode frames the history and the future are
    read from the frozen tokenizer's ``codes`` (encoded here when not given)."""
    window = demo_window_config(model.config)
    if model.config.has_history and codes is None:
        assert window.foresight_camera is not None
        codes = encode_dataset_frames(model, dataset, window.foresight_camera)
    return WindowedDataset(dataset, window, frame_codes=codes if model.config.has_history else None)


def _placeholder_codes(model: F1Model, dataset: LeRobotDataset) -> FrameCodes | None:
    """Zero codes of the right shapes: a step's time does not depend on the codes' values."""
    if not model.config.has_history:
        return None
    vqvae = model.config.generation.vqvae
    height, width = vqvae.schedule.sizes[-1]
    window = demo_window_config(model.config)
    assert window.foresight_camera is not None
    frames = dataset.num_frames
    return FrameCodes(
        camera=window.foresight_camera,
        latents=torch.zeros(frames, vqvae.z_channels, height, width),
        indices=torch.zeros(frames, vqvae.schedule.total_tokens, dtype=torch.int64),
    )


def run_stage(
    policy: F1Policy,
    dataset: LeRobotDataset,
    plan: StagePlan,
    output_dir: Path,
    *,
    seed: int = 0,
    progress: bool = False,
    codes: FrameCodes | None = None,
) -> F1Policy:
    """Train ``policy`` through ``plan`` on ``dataset``; metrics and the final policy go to ``output_dir``.

    ``codes``: the dataset's frame codes under the policy's tokenizer (:func:`dataset_codes`; encoded here
    when None, in the modes that encode frames).

    Returns a fresh policy loaded from ``output_dir / "policy"`` (its parameters all trainable again, except
    what the policy itself freezes), ready for the next stage or for evaluation. A LoRA plan also writes
    ``output_dir / "adapter"`` (:func:`f1.train.lora.save_adapter`); its policy folder is the merged policy.
    """
    name = f"{policy.config.mode} stage {plan.stage}"
    config = load_stage_config(plan.stage, {**plan.overrides(), "seed": seed, "name": name})
    batches = SeededBatchStream(_windows(policy.model, dataset, codes), plan.batch_size, seed=seed)
    trainer = Trainer(
        policy.model, batches, config, output_dir=output_dir, progress=progress, tensorboard=False
    )
    trainer.fit()
    if config.lora is not None:
        save_adapter(policy.model, output_dir / ADAPTER_DIR)
        policy = F1Policy(merged_model(policy.model))
    policy.save(output_dir / "policy")
    return F1Policy.load(output_dir / "policy")


def measure_step_seconds(
    config: F1Config, dataset: LeRobotDataset, plan: StagePlan, *, steps: int = 3
) -> float:
    """Seconds per optimizer step of ``plan`` for a fresh policy of ``config`` (median of ``steps`` after a
    warm-up step), to size the stages to a wall-clock budget."""
    model = F1Model(config)
    stage = load_stage_config(plan.stage, plan.overrides())
    windows = _windows(model, dataset, _placeholder_codes(model, dataset))
    batches = SeededBatchStream(windows, plan.batch_size, seed=0)
    trainer = Trainer(model, batches, stage, output_dir=None, progress=False, tensorboard=False)
    stream = iter(trainer.batches)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        trainer.train_step(next(stream))
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))
