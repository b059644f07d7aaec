"""Agents: what acts in a batch of table environments during evaluation.

An agent sees the observations of ``B`` environments at once and returns ``B`` actions, so a learned policy
runs one batched forward pass per step instead of ``B``. Three kinds ship here:

- :class:`PolicyAgent`: any LeRobot-style policy (``reset(seed)`` and batched ``select_action``), e.g.
  :class:`f1.model.F1Policy`;
- :class:`ExpertAgent`: the scripted expert of :mod:`f1.envs` (reads privileged state: an upper reference);
- :class:`RandomAgent`: uniform actions from the action space (the floor).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from f1.envs import Observation, ScriptedExpert, TableTaskEnv, make_expert
from f1.keys import camera_key
from f1.model import F1Policy

__all__ = [
    "Agent",
    "ExpertAgent",
    "LeRobotStylePolicy",
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
    observations: Sequence[Observation], camera: str, embodiment: str
) -> dict[str, Any]:
    """Environment observations -> one policy batch.

    Returns ``observation.images.<camera>``: uint8 ``(B, 3, H, W)``, ``observation.state``: float32
    ``(B, S)``, ``task``: ``list[str]`` and ``embodiment``: the name.
    """
    if not observations:
        raise ValueError("observations: expected at least one observation")
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
    object is now instead of where it will be)."""

    def __init__(self, name: str = "expert", lead_aware: bool = True) -> None:
        self.name = name
        self.lead_aware = lead_aware
        self._experts: list[ScriptedExpert] = []

    def reset(self, envs: Sequence[TableTaskEnv], seeds: Sequence[int]) -> None:
        self._experts = [make_expert(env, lead_aware=self.lead_aware) for env in envs]

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
        self._envs = list(envs)
        self._rngs = [np.random.default_rng([int(seed), 1]) for seed in seeds]

    def act(self, observations: Sequence[Observation]) -> np.ndarray:
        if len(observations) != len(self._envs):
            raise ValueError(
                f"observations: expected {len(self._envs)} (one per environment), received "
                f"{len(observations)}; call reset() first"
            )
        return np.stack([env.action_space.sample(rng) for env, rng in zip(self._envs, self._rngs)])


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
