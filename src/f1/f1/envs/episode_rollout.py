"""Closed-loop rollout of a policy in a table environment, recorded as one dataset episode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np

from f1.envs.table_env import Observation, TableTaskEnv
from f1.keys import ACTION_KEY, STATE_KEY, camera_key

EpisodeRecord = TypedDict(
    "EpisodeRecord",
    {
        "observation.images.top": np.ndarray,
        "observation.state": np.ndarray,
        "action": np.ndarray,
        "task": str,
        "success": bool,
    },
)
EpisodeRecord.__doc__ = """One episode in the per-frame layout of a LeRobot dataset.

Keys:
    observation.images.top: the frames the policy saw, uint8 of shape (T, H, W, 3).
    observation.state: the proprioception at each frame, float32 of shape (T, state_dim).
    action: the action taken at each frame, as applied (clipped), float32 of shape (T, action_dim).
    task: the language instruction.
    success: whether the episode ended in success.
"""


TABLE_CAMERA = "top"
"""The camera of the table tasks' rendered view."""

TABLE_IMAGE_KEY = camera_key(TABLE_CAMERA)
"""``observation.images.top``: the key of that view's frames in an :data:`EpisodeRecord`."""

FRAME_KEYS: tuple[str, ...] = (TABLE_IMAGE_KEY, STATE_KEY, ACTION_KEY)
"""The per-frame arrays of an :data:`EpisodeRecord`: the features a dataset writer stores."""


def episode_frames(record: EpisodeRecord) -> dict[str, np.ndarray]:
    """The per-frame arrays of ``record`` (keys :data:`FRAME_KEYS`), e.g. for
    ``LeRobotDatasetWriter.add_episode(episode_frames(record), record["task"])``."""
    return {key: record[key] for key in FRAME_KEYS}  # type: ignore[literal-required]


def rollout(
    env: TableTaskEnv,
    policy_fn: Callable[[Observation], Any],
    seed: int,
    max_steps: int | None = None,
    execute: Callable[[np.ndarray], np.ndarray] | None = None,
) -> EpisodeRecord:
    """Run ``policy_fn`` from ``env.reset(seed=seed)`` until the episode ends or ``max_steps`` steps.

    Frame t holds the observation before action t; the observation after the last action is not
    recorded. ``max_steps`` defaults to (and cannot extend) the environment's ``max_steps``.
    ``execute`` maps the recorded (validated) action to the one sent to the environment, e.g. to
    perturb demonstrations while keeping the policy's action as the label; by default they are the same.
    """
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise ValueError(f"max_steps: expected a positive integer or None, received {max_steps!r}")
    limit = env.config.max_steps if max_steps is None else min(max_steps, env.config.max_steps)
    observation, info = env.reset(seed=seed)
    task = observation["instruction"]
    images, states, actions = [], [], []
    for _ in range(limit):
        action = env.validate_action(policy_fn(observation))
        images.append(observation["image"])
        states.append(observation["state"])
        actions.append(action.astype(np.float32))
        observation, _, terminated, truncated, info = env.step(action if execute is None else execute(action))
        if terminated or truncated:
            break
    return {
        "observation.images.top": np.stack(images),
        "observation.state": np.stack(states),
        "action": np.stack(actions),
        "task": task,
        "success": bool(info["success"]),
    }
