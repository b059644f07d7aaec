"""Agents: what acts in a batch of table environments during evaluation.

An agent sees the observations of ``B`` environments at once and returns ``B`` actions, so a learned policy
runs one batched forward pass per step instead of ``B``. Three kinds ship here:

- :class:`PolicyAgent`: any LeRobot-style policy (``reset(seed)`` and batched ``select_action``), e.g.
  :class:`f1.model.F1Policy`;
- :class:`ExpertAgent`: the scripted expert of :mod:`f1.envs` (reads privileged state: an upper reference);
- :class:`RandomAgent`: uniform actions from the action space (the floor);
- :class:`MeanActionAgent`: the dataset's mean action at every step (what a policy that ignores its
  observations would do at best; read from a LeRobot dataset's statistics).

The environments are the embedded table tasks or any gymnasium environment seen through a
:class:`f1.eval.gym_adapter.GymTask` (which hands out observations already in the policy's layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from f1.envs import Observation, ScriptedExpert, TableTaskEnv, make_expert
from f1.keys import ACTION_KEY, STATE_KEY, TASK_KEY, camera_key
from f1.model import F1Policy

__all__ = [
    "Agent",
    "ExpertAgent",
    "LeRobotStylePolicy",
    "MeanActionAgent",
    "PolicyAgent",
    "RandomAgent",
    "load_agent",
    "observations_to_batch",
]


@runtime_checkable
class Agent(Protocol):
    """Acts in ``B`` environments at once.

    ``reset(envs, seeds)`` starts ``B`` episodes (the environments are already reset with ``seeds``);
    ``act(observations)`` returns float32 actions of shape ``(B, action_dim)``, one per environment, for
    all ``B`` environments (finished ones included; their actions are ignored).
    """

    name: str

    def reset(self, envs: Sequence[TableTaskEnv], seeds: Sequence[int]) -> None: ...

    def act(self, observations: Sequence[Observation]) -> np.ndarray: ...


class LeRobotStylePolicy(Protocol):
    """The inference interface of :class:`f1.model.F1Policy` (and of LeRobot policies)."""

    def reset(self, seed: int | None = None) -> None: ...

    def select_action(self, observation: dict[str, Any]) -> torch.Tensor: ...


def observations_to_batch(
    observations: Sequence[Observation] | Sequence[dict[str, Any]], camera: str, embodiment: str
) -> dict[str, Any]:
    """Environment observations -> one policy batch.

    Table-task observations (``image`` ``(H, W, 3)``, ``state``, ``instruction``) become
    ``observation.images.<camera>``: uint8 ``(B, 3, H, W)``, ``observation.state``: float32 ``(B, S)``,
    ``task``: ``list[str]`` and ``embodiment``: the name. Observations already in the policy's layout (one
    sample each: ``observation.images.<cam>`` ``(3, H, W)``, ``observation.state`` ``(S,)``, ``task``; what
    :class:`f1.eval.gym_adapter.GymTask` returns) are stacked key by key and ``camera`` is not used.
    """
    if not observations:
        raise ValueError("observations: expected at least one observation")
    if STATE_KEY in observations[0]:
        first = observations[0]
        batch: dict[str, Any] = {
            key: torch.from_numpy(np.stack([o[key] for o in observations]))
            for key in first
            if key != TASK_KEY
        }
        batch[TASK_KEY] = [o[TASK_KEY] for o in observations]
        batch["embodiment"] = embodiment
        return batch
    images = np.stack([o["image"] for o in observations])  # (B, H, W, 3)
    states = np.stack([o["state"] for o in observations]).astype(np.float32)
    return {
        camera_key(camera): torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        "observation.state": torch.from_numpy(states),
        "task": [o["instruction"] for o in observations],
        "embodiment": embodiment,
    }


class PolicyAgent:
    """A learned policy acting through batched ``select_action`` calls.

    Args:
        policy: ``reset(seed)`` + ``select_action(batch) -> (B, A)`` (the policy keeps its own action queue
            and frame history, so one agent serves one batch of episodes at a time).
        name: label in reports.
        camera: the camera name the policy reads (``observation.images.<camera>``).
        embodiment: the embodiment name the policy knows the environment's robot by.
    """

    def __init__(self, policy: LeRobotStylePolicy, name: str, camera: str, embodiment: str) -> None:
        for argument, value in (("name", name), ("camera", camera), ("embodiment", embodiment)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{argument}: expected a non-empty string, received {value!r}")
        self.policy = policy
        self.name = name
        self.camera = camera
        self.embodiment = embodiment

    def reset(self, envs: Sequence[TableTaskEnv], seeds: Sequence[int]) -> None:
        self.policy.reset(seed=int(seeds[0]) if seeds else None)

    @torch.no_grad()
    def act(self, observations: Sequence[Observation]) -> np.ndarray:
        batch = observations_to_batch(observations, self.camera, self.embodiment)
        actions = self.policy.select_action(batch)
        return actions.detach().float().cpu().numpy().reshape(len(observations), -1)


class ExpertAgent:
    """The scripted expert of each environment (privileged state; ``lead_aware=False`` aims at where the
    object is now instead of where it will be; ``approach_margin``: see :class:`f1.envs.ScriptedExpert`)."""

    def __init__(
        self, name: str = "expert", lead_aware: bool = True, approach_margin: float | None = None
    ) -> None:
        self.name = name
        self.lead_aware = lead_aware
        self.approach_margin = approach_margin
        self._experts: list[ScriptedExpert] = []

    def reset(self, envs: Sequence[TableTaskEnv], seeds: Sequence[int]) -> None:
        self._experts = [
            make_expert(env, lead_aware=self.lead_aware, approach_margin=self.approach_margin) for env in envs
        ]

    def act(self, observations: Sequence[Observation]) -> np.ndarray:
        if len(observations) != len(self._experts):
            raise ValueError(
                f"observations: expected {len(self._experts)} (one per environment), received "
                f"{len(observations)}; call reset() first"
            )
        return np.stack([expert.act(obs) for expert, obs in zip(self._experts, observations)])


class RandomAgent:
    """Uniform random actions from each environment's action space, one generator per episode seeded by
    the episode's seed (so results do not depend on how episodes are batched)."""

    def __init__(self, name: str = "random") -> None:
        self.name = name
        self._envs: list[TableTaskEnv] = []
        self._rngs: list[np.random.Generator] = []

    def reset(self, envs: Sequence[TableTaskEnv], seeds: Sequence[int]) -> None:
        for env in envs:
            space = env.action_space
            if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
                raise ValueError(
                    f"action_space: random actions need finite bounds, received low={space.low.tolist()}, "
                    f"high={space.high.tolist()}"
                )
        self._envs = list(envs)
        self._rngs = [np.random.default_rng([int(seed), 1]) for seed in seeds]

    def act(self, observations: Sequence[Observation]) -> np.ndarray:
        if len(observations) != len(self._envs):
            raise ValueError(
                f"observations: expected {len(self._envs)} (one per environment), received "
                f"{len(observations)}; call reset() first"
            )
        return np.stack([env.action_space.sample(rng) for env, rng in zip(self._envs, self._rngs)])


class MeanActionAgent:
    """The same action at every step of every episode: a dataset's mean action (a floor that knows the
    data's action distribution but ignores the observations).

    Args:
        mean: the action, float ``(A,)``; it must match each environment's action space (checked at reset).
        name: label in reports.
    """

    def __init__(self, mean: Sequence[float] | np.ndarray, name: str = "mean_action") -> None:
        array = np.asarray(mean, dtype=np.float32)
        if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
            raise ValueError(f"mean: expected a finite vector (A,), received {np.asarray(mean).tolist()!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a non-empty string, received {name!r}")
        self.mean = array
        self.name = name
        self._count = 0

    @classmethod
    def from_dataset(cls, root: str | Path, name: str = "mean_action") -> MeanActionAgent:
        """The mean of ``action`` in the statistics of the LeRobot dataset at ``root``
        (``meta/stats.json``, or its aggregated episode statistics)."""
        from f1.data import load_metadata

        stats = load_metadata(root).stats
        return cls(_action_mean(stats, f"dataset {root}"), name)

    @classmethod
    def from_stats(cls, path: str | Path, name: str = "mean_action") -> MeanActionAgent:
        """The mean of ``action`` in a LeRobot ``stats.json`` file."""
        from f1.data.stats import load_stats_json

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"stats: expected a stats.json file, {str(path)!r} does not exist")
        return cls(_action_mean(load_stats_json(path), f"stats file {path}"), name)

    def reset(self, envs: Sequence[TableTaskEnv], seeds: Sequence[int]) -> None:
        for env in envs:
            expected = tuple(env.action_space.shape)
            if expected != self.mean.shape:
                raise ValueError(
                    f"mean: the environment's actions have shape {expected}, the mean action has shape "
                    f"{self.mean.shape}"
                )
        self._count = len(envs)

    def act(self, observations: Sequence[Any]) -> np.ndarray:
        if len(observations) != self._count:
            raise ValueError(
                f"observations: expected {self._count} (one per environment), received "
                f"{len(observations)}; call reset() first"
            )
        return np.repeat(self.mean[None], len(observations), axis=0)


def _action_mean(stats: Any, source: str) -> np.ndarray:
    if not stats or ACTION_KEY not in stats or stats[ACTION_KEY].get("mean") is None:
        raise ValueError(f"{source}: expected statistics with an {ACTION_KEY!r} mean, found none")
    return np.asarray(stats[ACTION_KEY]["mean"], dtype=np.float32).reshape(-1)


def load_agent(policy: str, embodiment: str, *, device: str = "cpu") -> Agent:
    """An agent by name: ``"expert"``, ``"random"``, or the directory of a policy saved with
    :meth:`f1.model.F1Policy.save` (it must know ``embodiment`` under that name; it reads its first camera).
    """
    if policy == "expert":
        return ExpertAgent()
    if policy == "random":
        return RandomAgent()
    path = Path(policy)
    if not path.exists():
        raise ValueError(
            "policy: expected 'expert', 'random' or the directory of a saved policy, "
            f"{policy!r} does not exist"
        )
    loaded = F1Policy.load(path, device=device)
    if embodiment not in loaded.model.embodiments:
        raise ValueError(
            f"embodiment: the policy at {policy!r} knows {list(loaded.model.embodiments.names)}, "
            f"received {embodiment!r}"
        )
    loaded.eval()
    return PolicyAgent(loaded, loaded.config.mode, loaded.config.cameras[0], embodiment)
