"""Demonstrations for the demo: scripted-expert episodes of the table tasks, written as LeRobot v3.0 datasets.

One dataset per embodiment (its own state and action spaces, its ``robot_type`` = the embodiment name),
holding episodes of the requested variants interleaved (static, dynamic, static, ...). Seeds come from
``seed_range("train")``, so no evaluation scene (``"test"``) is ever recorded.

With ``perturbation > 0`` the demonstrations are recorded the DART way (Laskey et al., 2017): on that
share of the steps a random action is executed instead of the expert's, while the recorded label is always
the expert's action at the frame. The data then hold the expert's corrections from states a slightly wrong
policy reaches (a gripper closed on nothing, an end effector beside the object), which plain demonstrations
never show; a behaviour-cloned policy that makes one such mistake otherwise cannot recover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from f1.data import LeRobotDatasetWriter, standard_features
from f1.envs import (
    EpisodeRecord,
    ScriptedExpert,
    TableTaskConfig,
    TableTaskEnv,
    episode_frames,
    make_env,
    make_expert,
    rollout,
    seed_range,
)

__all__ = ["CAMERA", "RecordedDataset", "TaskSpec", "expert_episode", "record_demonstrations"]

CAMERA = "top"
"""The camera name of the table view (``observation.images.top``)."""

# Per (embodiment, variant), the training seeds start at a different offset, so no two datasets share scenes.
_SEED_BLOCK = 100_000


@dataclass(frozen=True)
class TaskSpec:
    """Which member of the table task family the demo uses (see :class:`f1.envs.TableTaskConfig`).

    Attributes:
        resolution: image side in pixels.
        num_objects: objects on the table; the instruction names one.
        num_bins: target bins; the instruction names one.
        grasp_radius: how close (table widths) the end effector must be to an object's centre when the
            gripper closes for the grasp to take.
        object_size: side of an object's bounding square, table widths.
        conveyor_speed_range: (low, high) belt speed of the dynamic variant, table widths per step.

    The defaults are :class:`f1.envs.TableTaskConfig`'s.
    """

    resolution: int = TableTaskConfig.resolution
    num_objects: int = TableTaskConfig.num_objects
    num_bins: int = TableTaskConfig.num_bins
    grasp_radius: float = TableTaskConfig.grasp_radius
    object_size: float = TableTaskConfig.object_size
    conveyor_speed_range: tuple[float, float] = TableTaskConfig.conveyor_speed_range

    def make_env(self, embodiment: str, variant: str) -> TableTaskEnv:
        """The environment of this task for ``embodiment`` and ``variant``."""
        return make_env(
            embodiment,
            variant,
            resolution=self.resolution,
            num_objects=self.num_objects,
            num_bins=self.num_bins,
            grasp_radius=self.grasp_radius,
            object_size=self.object_size,
            conveyor_speed_range=self.conveyor_speed_range,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["conveyor_speed_range"] = list(self.conveyor_speed_range)
        return data


@dataclass(frozen=True)
class RecordedDataset:
    """A dataset written by :func:`record_demonstrations`.

    Attributes:
        root: its directory.
        embodiment: the embodiment that recorded it.
        variants: the variants it holds.
        episodes: episodes written.
        frames: frames written.
        expert_success_rate: share of recorded expert episodes that succeeded (only successes are kept).
    """

    root: Path
    embodiment: str
    variants: tuple[str, ...]
    episodes: int
    frames: int
    expert_success_rate: float


def _training_seeds(embodiment: str, variant: str) -> range:
    block = ("gripper", "arm").index(embodiment) * 2 + ("static", "dynamic").index(variant)
    start = seed_range("train").start + block * _SEED_BLOCK
    return range(start, start + _SEED_BLOCK)


def expert_episode(
    env: TableTaskEnv, expert: ScriptedExpert, seed: int, perturbation: float = 0.0
) -> EpisodeRecord:
    """One episode labelled by ``expert``: frame t holds the observation before step t and the expert's
    action there; on a ``perturbation`` share of the steps (drawn from ``seed``) a uniformly random action
    is executed instead (:func:`f1.envs.rollout` with a perturbed ``execute``)."""
    rng = np.random.default_rng([seed, 7])

    def perturbed(label: np.ndarray) -> np.ndarray:
        if perturbation and rng.random() < perturbation:
            return env.action_space.sample(rng)
        return label.astype(np.float32)

    return rollout(env, expert.act, seed, execute=perturbed)


def record_demonstrations(
    root: str | Path,
    task: TaskSpec,
    embodiment: str,
    variants: Sequence[str],
    episodes_per_variant: int,
    *,
    perturbation: float = 0.0,
    progress: bool = False,
) -> RecordedDataset:
    """Record ``episodes_per_variant`` successful expert episodes per variant into a new dataset at ``root``.

    Failed expert episodes (rare; none at the default settings) are skipped and replaced by the next seed.
    Images are stored losslessly (PNG) so that training frames are exactly what the policy sees at
    evaluation time. ``perturbation``: share of steps on which a random action is executed (the label stays
    the expert's action; see the module docstring).
    """
    if (
        isinstance(perturbation, bool)
        or not isinstance(perturbation, int | float)
        or not 0 <= perturbation < 1
    ):
        raise ValueError(f"perturbation: expected a share in [0, 1), received {perturbation!r}")
    variants = tuple(variants)
    if not variants:
        raise ValueError("variants: expected at least one of 'static', 'dynamic'")
    if isinstance(episodes_per_variant, bool) or not isinstance(episodes_per_variant, int):
        raise ValueError(f"episodes_per_variant: expected a positive int, received {episodes_per_variant!r}")
    if episodes_per_variant < 1:
        raise ValueError(f"episodes_per_variant: expected a positive int, received {episodes_per_variant}")
    envs = {variant: task.make_env(embodiment, variant) for variant in variants}
    experts = {variant: make_expert(env) for variant, env in envs.items()}
    seeds = {variant: iter(_training_seeds(embodiment, variant)) for variant in variants}
    first = envs[variants[0]]
    features = standard_features(
        {CAMERA: (task.resolution, task.resolution)},
        state_dim=first.state_space.dim,
        action_dim=first.action_space.dim,
        image_storage="image",
        state_names=first.state_space.names,
        action_names=first.action_space.names,
    )
    attempts = 0
    total = episodes_per_variant * len(variants)
    bar = tqdm(total=total, desc=f"demonstrations ({embodiment})", disable=not progress, leave=False)
    with LeRobotDatasetWriter(root, fps=first.fps, features=features, robot_type=embodiment) as writer:
        for _ in range(episodes_per_variant):
            for variant in variants:
                while True:
                    attempts += 1
                    record = expert_episode(
                        envs[variant], experts[variant], next(seeds[variant]), perturbation
                    )
                    if record["success"]:
                        break
                writer.add_episode(episode_frames(record), record["task"])
                bar.update(1)
        frames = writer.num_frames
    bar.close()
    return RecordedDataset(
        root=Path(root),
        embodiment=embodiment,
        variants=variants,
        episodes=total,
        frames=frames,
        expert_success_rate=total / attempts,
    )
