"""Demonstrations for the demo: scripted-expert episodes of the table tasks, written as LeRobot v3.0 datasets.

One dataset per embodiment (its own state and action spaces, its ``robot_type`` = the embodiment name),
holding episodes of the requested variants interleaved (static, dynamic, static, ...). Seeds come from
``seed_range("train")``, so no evaluation scene (``"test"``) is ever recorded.

The demo's task is written as the :class:`f1.envs.TableTaskConfig` fields it sets (``task``, a mapping such as
``{"resolution": 64, "num_objects": 1}``); :func:`table_task` puts them on the family's defaults for one
embodiment and variant, so nothing here repeats the task's fields.

With ``perturbation > 0`` the demonstrations are recorded the DART way (Laskey et al., 2017): on that
share of the steps a random action is executed instead of the expert's, while the recorded label is always
the expert's action at the frame. The data then hold the expert's corrections from states a slightly wrong
policy reaches (a gripper closed on nothing, an end effector beside the object), which plain demonstrations
never show; a behaviour-cloned policy that makes one such mistake otherwise cannot recover.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from f1.data import LeRobotDatasetWriter, standard_features
from f1.envs import (
    EMBODIMENTS,
    TABLE_CAMERA,
    VARIANTS,
    EpisodeRecord,
    ScriptedExpert,
    TableTaskConfig,
    TableTaskEnv,
    episode_frames,
    make_expert,
    rollout,
    seed_range,
)

__all__ = [
    "CAMERA",
    "RecordedDataset",
    "expert_episode",
    "record_demonstrations",
    "table_task",
    "task_record",
]

CAMERA = TABLE_CAMERA
"""The demo policies' one camera: the table view (``observation.images.top``)."""

# Per (embodiment, variant), the training seeds start at a different offset, so no two datasets share scenes.
_SEED_BLOCK = 100_000


def table_task(task: Mapping[str, Any], embodiment: str, variant: str) -> TableTaskConfig:
    """The table task of ``embodiment`` and ``variant``: the fields ``task`` sets, on the family's defaults.

    ``task``: :class:`f1.envs.TableTaskConfig` fields other than ``embodiment`` and ``variant``. Unknown
    fields and out-of-range values raise ``ValueError`` naming the field.
    """
    chosen = sorted({"embodiment", "variant"} & set(task))
    if chosen:
        raise ValueError(f"task: {chosen} are chosen per environment, expected them absent from {dict(task)}")
    return TableTaskConfig.from_dict({**task, "embodiment": embodiment, "variant": variant})


def task_record(task: Mapping[str, Any]) -> dict[str, Any]:
    """The fields ``task`` sets, as a report records them (validated; tuples as lists)."""
    fields = table_task(task, EMBODIMENTS[0], VARIANTS[0]).to_dict()
    return {name: fields[name] for name in task}


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
    block = EMBODIMENTS.index(embodiment) * len(VARIANTS) + VARIANTS.index(variant)
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
    task: Mapping[str, Any],
    embodiment: str,
    variants: Sequence[str],
    episodes_per_variant: int,
    *,
    perturbation: float = 0.0,
    approach_margin: float | None = None,
    progress: bool = False,
) -> RecordedDataset:
    """Record ``episodes_per_variant`` successful expert episodes per variant into a new dataset at ``root``.

    ``task``: the :class:`f1.envs.TableTaskConfig` fields the demo sets (see :func:`table_task`).
    Failed expert episodes (rare; none at the default settings) are skipped and replaced by the next seed.
    Images are stored losslessly (PNG) so that training frames are exactly what the policy sees at
    evaluation time. ``perturbation``: share of steps on which a random action is executed (the label stays
    the expert's action; see the module docstring). ``approach_margin``: the expert's (see
    :class:`f1.envs.ScriptedExpert`; None intercepts from the first step, as the demo does).
    """
    if (
        isinstance(perturbation, bool)
        or not isinstance(perturbation, int | float)
        or not 0 <= perturbation < 1
    ):
        raise ValueError(f"perturbation: expected a share in [0, 1), received {perturbation!r}")
    variants = tuple(variants)
    if not variants:
        raise ValueError(f"variants: expected at least one of {list(VARIANTS)}")
    if isinstance(episodes_per_variant, bool) or not isinstance(episodes_per_variant, int):
        raise ValueError(f"episodes_per_variant: expected a positive int, received {episodes_per_variant!r}")
    if episodes_per_variant < 1:
        raise ValueError(f"episodes_per_variant: expected a positive int, received {episodes_per_variant}")
    envs = {variant: TableTaskEnv(table_task(task, embodiment, variant)) for variant in variants}
    experts = {variant: make_expert(env, approach_margin=approach_margin) for variant, env in envs.items()}
    seeds = {variant: iter(_training_seeds(embodiment, variant)) for variant in variants}
    first = envs[variants[0]]
    features = standard_features(
        {CAMERA: (first.config.resolution, first.config.resolution)},
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
