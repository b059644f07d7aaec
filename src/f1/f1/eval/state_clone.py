"""Behaviour clones on privileged true state: reference rows that measure how much the task needs motion.

A state clone is a small MLP regressing the scripted expert's action from the environment's true state
(:class:`f1.envs.TaskState`), one action per step in closed loop. Two variants differ only in one input:

- ``with_velocity=False``: proprioception, the named object's and bin's current positions and the grasp
  status: strictly single-frame information, the most any policy could read off one image;
- ``with_velocity=True``: the same plus the conveyor velocity, the motion a policy must infer from
  consecutive frames.

If the first clone fails on the conveyor where the second succeeds, the task needs motion information;
the gap between them is what a policy that predicts the next frames can hope to close. Demonstrations are
recorded the DART way: on a share of the steps a uniformly random action is executed while the expert's
action there is the label, so the clone sees (and learns to leave) states off the expert's path.

Quick start::

    from f1.envs import TableTaskConfig, TableTaskEnv, seed_range
    from f1.eval import StateCloneAgent, evaluate, train_state_clone

    task = TableTaskConfig(embodiment="gripper", variant="dynamic")
    clone = train_state_clone(task, with_velocity=True)
    result = evaluate(StateCloneAgent(clone), lambda: TableTaskEnv(task), seed_range("val")[:200])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from f1.envs import (
    Observation,
    ScriptedExpert,
    TableTaskConfig,
    TableTaskEnv,
    TaskState,
    make_expert,
    rollout,
    seed_range,
)

__all__ = [
    "StateClone",
    "StateCloneAgent",
    "StateCloneTraining",
    "state_features",
    "train_state_clone",
]

EnvFactory = Callable[[], TableTaskEnv]


def state_features(proprio: np.ndarray, task_state: TaskState, with_velocity: bool) -> np.ndarray:
    """The clone's input for one environment, float32 of shape ``(feature_dim(S, with_velocity),)``.

    Layout: proprioception (S), named object (x, y), named bin centre (x, y), object minus end effector
    (2), bin minus end effector (2), named object held (1), another object held (1) and, only with
    ``with_velocity``, the conveyor velocity (vx, vy). Positions in table widths, velocity in table widths
    per step. Without velocity everything is read from the current frame's state; the velocity is not read.
    """
    ex, ey = task_state.ee_position
    ox, oy = task_state.object_positions[task_state.target_object]
    bx, by = task_state.bins[task_state.target_bin].centre
    held = task_state.held_object
    parts = [
        np.asarray(proprio, dtype=np.float64).reshape(-1),
        [ox, oy, bx, by, ox - ex, oy - ey, bx - ex, by - ey],
        [float(held == task_state.target_object), float(held >= 0 and held != task_state.target_object)],
    ]
    if with_velocity:
        parts.append(task_state.conveyor_velocity)
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(np.float32)


def feature_dim(state_dim: int, with_velocity: bool) -> int:
    """Length of :func:`state_features` for proprioception of length ``state_dim``."""
    return state_dim + 10 + (2 if with_velocity else 0)


class StateClone(nn.Module):
    """An MLP from :func:`state_features` to one action, with the normalization it was trained with.

    Args:
        state_dim: proprioception length S.
        action_scale: the action space's upper bounds, shape (A,): actions are regressed divided by it.
        with_velocity: whether the features include the conveyor velocity.
        hidden: width of the two hidden layers.
        embodiment: the embodiment name the clone acts for.
    """

    def __init__(
        self,
        state_dim: int,
        action_scale: np.ndarray,
        with_velocity: bool,
        hidden: int = 256,
        embodiment: str = "gripper",
    ) -> None:
        super().__init__()
        self.with_velocity = with_velocity
        self.embodiment = embodiment
        self.state_dim = state_dim
        self.training_record: StateCloneTraining | None = None
        dim = feature_dim(state_dim, with_velocity)
        scale = torch.as_tensor(np.asarray(action_scale, dtype=np.float32))
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, len(scale)),
        )
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))
        self.register_buffer("action_scale", scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Normalized actions ``(B, A)`` (action / ``action_scale``) from features ``(B, F)``."""
        return self.net((features - self.feature_mean) / self.feature_std)

    @torch.no_grad()
    def predict(self, features: np.ndarray) -> np.ndarray:
        """Actions float32 ``(B, A)`` in the environment's units from features ``(B, F)``."""
        normalized = self(torch.from_numpy(np.asarray(features, dtype=np.float32)))
        return (normalized * self.action_scale).numpy()


@dataclass(frozen=True)
class StateCloneTraining:
    """How a state clone was trained.

    Attributes:
        losses: training MSE (normalized actions) per optimizer step.
        samples: labelled frames trained on.
        episodes: demonstration episodes recorded.
        seconds: wall-clock time of recording and training.
    """

    losses: tuple[float, ...]
    samples: int
    episodes: int
    seconds: float


class StateCloneAgent:
    """A :class:`StateClone` acting in a batch of environments (an :class:`f1.eval.Agent`).

    It reads each environment's privileged :meth:`~f1.envs.TableTaskEnv.task_state` every step (closed
    loop, one action per step), like :class:`f1.eval.ExpertAgent`.

    Args:
        clone: the trained clone.
        name: label in reports (default ``"state_clone_velocity"`` or ``"state_clone_no_velocity"``).
    """

    def __init__(self, clone: StateClone, name: str | None = None) -> None:
        if not isinstance(clone, StateClone):
            raise ValueError(f"clone: expected a StateClone, received {type(clone).__name__}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name: expected a non-empty string or None, received {name!r}")
        self.clone = clone.eval()
        default = "state_clone_velocity" if clone.with_velocity else "state_clone_no_velocity"
        self.name = name or default
        self._envs: list[TableTaskEnv] = []

    def reset(self, envs: Sequence[TableTaskEnv], seeds: Sequence[int]) -> None:
        for env in envs:
            if env.config.embodiment != self.clone.embodiment:
                raise ValueError(
                    f"envs: expected {self.clone.embodiment!r} environments (the clone's embodiment), "
                    f"received {env.config.embodiment!r}"
                )
        self._envs = list(envs)

    def act(self, observations: Sequence[Observation]) -> np.ndarray:
        if len(observations) != len(self._envs):
            raise ValueError(
                f"observations: expected {len(self._envs)} (one per environment), received "
                f"{len(observations)}; call reset() first"
            )
        features = np.stack(
            [
                state_features(obs["state"], env.task_state(), self.clone.with_velocity)
                for env, obs in zip(self._envs, observations)
            ]
        )
        return self.clone.predict(features)


def train_state_clone(
    task: TableTaskConfig | EnvFactory,
    *,
    with_velocity: bool,
    episodes: int = 150,
    steps: int = 1500,
    seed: int = 0,
    perturbation: float = 0.1,
    perturb_grip: bool = True,
    approach_margin: float | None = None,
    batch_size: int = 256,
    lr: float = 3e-3,
    hidden: int = 256,
    progress: bool = False,
) -> StateClone:
    """Record DART demonstrations of the scripted expert on ``"train"`` seeds and fit a clone to them.

    Args:
        task: the task, as a config or a factory of environments.
        with_velocity: give the clone the conveyor velocity (True) or single-frame state only (False).
        episodes: demonstration episodes, on distinct seeds of ``seed_range("train")`` drawn from ``seed``.
        steps: optimizer steps (AdamW, cosine-decayed learning rate).
        seed: seeds the episode draw, the perturbations, the initialization and the batches.
        perturbation: share of steps executed as a uniformly random action (label: the expert's action).
        perturb_grip: whether a perturbed step's grip command is random too (True) or the expert's (False:
            only the motion is perturbed, so that under ``missed_grasp_ends_episode`` a random close does
            not end the demonstration before the grasp and carry are shown).
        approach_margin: the scripted expert's (:class:`f1.envs.ScriptedExpert`; None intercepts from the
            first step).
        batch_size: frames per optimizer step.
        lr: peak learning rate.
        hidden: width of the MLP's two hidden layers.
        progress: show progress bars.

    Returns:
        The clone, in eval mode; ``clone.training_record`` says how it was trained.
    """
    started = time.perf_counter()
    env = _make_env(task)
    if not isinstance(with_velocity, bool):
        raise ValueError(f"with_velocity: expected a bool, received {with_velocity!r}")
    for name, value in (
        ("episodes", episodes),
        ("steps", steps),
        ("batch_size", batch_size),
        ("hidden", hidden),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, received {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, received {seed!r}")
    if (
        isinstance(perturbation, bool)
        or not isinstance(perturbation, int | float)
        or not 0 <= perturbation < 1
    ):
        raise ValueError(f"perturbation: expected a share in [0, 1), received {perturbation!r}")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a positive finite number, received {lr!r}")
    if not isinstance(perturb_grip, bool):
        raise ValueError(f"perturb_grip: expected a bool, received {perturb_grip!r}")
    if not isinstance(progress, bool):
        raise ValueError(f"progress: expected a bool, received {progress!r}")

    expert = make_expert(env, approach_margin=approach_margin)  # checks approach_margin
    features, actions = _record(
        env, expert, with_velocity, episodes, seed, float(perturbation), perturb_grip, progress
    )
    scale = env.action_space.high.astype(np.float32)
    torch.manual_seed(seed)
    clone = StateClone(env.state_space.shape[0], scale, with_velocity, hidden, env.config.embodiment)
    x = torch.from_numpy(features)
    y = torch.from_numpy(actions / scale)
    clone.feature_mean.copy_(x.mean(0))
    clone.feature_std.copy_(x.std(0).clamp_min(1e-6))
    optimizer = torch.optim.AdamW(clone.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    clone.train()
    for _ in tqdm(range(steps), desc="state clone", disable=not progress, leave=False):
        index = torch.randint(len(x), (min(batch_size, len(x)),), generator=generator)
        loss = nn.functional.mse_loss(clone(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    clone.eval()
    clone.training_record = StateCloneTraining(tuple(losses), len(x), episodes, time.perf_counter() - started)
    return clone


def _make_env(task: TableTaskConfig | EnvFactory) -> TableTaskEnv:
    if isinstance(task, TableTaskConfig):
        return TableTaskEnv(task)
    if callable(task):
        env = task()
        if isinstance(env, TableTaskEnv):
            return env
        raise ValueError(f"task: expected the factory to build a TableTaskEnv, it built {type(env).__name__}")
    raise ValueError(
        f"task: expected a TableTaskConfig or a factory of TableTaskEnv, received {type(task).__name__}"
    )


def _record(
    env: TableTaskEnv,
    expert: ScriptedExpert,
    with_velocity: bool,
    episodes: int,
    seed: int,
    perturbation: float,
    perturb_grip: bool,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(N, F)`` and ``expert``'s labels ``(N, A)`` of ``episodes`` DART demonstrations."""
    train = seed_range("train")
    rng = np.random.default_rng([seed, 14])
    chosen = rng.choice(len(train), size=episodes, replace=False)
    features: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    for index in tqdm(chosen.tolist(), desc="demonstrations", disable=not progress, leave=False):
        frames, labels = _record_episode(
            env, expert, train[index], seed, with_velocity, perturbation, perturb_grip
        )
        features += frames
        actions.append(labels)
    return np.stack(features), np.concatenate(actions).astype(np.float32)


def _record_episode(
    env: TableTaskEnv,
    expert: ScriptedExpert,
    episode_seed: int,
    seed: int,
    with_velocity: bool,
    perturbation: float,
    perturb_grip: bool,
) -> tuple[list[np.ndarray], np.ndarray]:
    """One DART episode: the features before each step and the expert's (clipped) action there ``(T, A)``."""
    noise = np.random.default_rng([episode_seed, seed, 7])
    frames: list[np.ndarray] = []

    def labelled(observation: Observation) -> np.ndarray:
        frames.append(state_features(observation["state"], env.task_state(), with_velocity))
        return expert.act(observation)

    def perturbed(label: np.ndarray) -> np.ndarray:
        if noise.random() < perturbation:
            random = env.action_space.sample(noise)
            if not perturb_grip:
                random[-1] = label[-1]
            return random
        return label

    record = rollout(env, labelled, episode_seed, execute=perturbed)
    return frames, record["action"]
