"""A tiny gymnasium task for the evaluation tests (and the docs' commands): move a point to a target.

The agent at ``agent_pos`` in [-1, 1]^2 moves by actions in [-0.5, 0.5]^2; the target is drawn from the
reset seed. An episode succeeds (``info["success"]``) when the agent is within 0.3 of the target; it lasts
at most ``max_steps`` (the spec's ``max_episode_steps``). The 32 x 32 RGB image shows the target in red and
the agent in blue. ``to_target`` (target - agent) lets the scripted policy below succeed every time.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

SIZE = 32
REACH = 0.3


class Reach2D(gym.Env):
    def __init__(self, max_steps: int = 8, report_success: bool = True, size: int = SIZE) -> None:
        self.size = size
        self.report_success = report_success
        self.observation_space = spaces.Dict(
            {
                "pixels": spaces.Box(0, 255, (size, size, 3), dtype=np.uint8),
                "agent_pos": spaces.Box(-1, 1, (2,), dtype=np.float32),
                "to_target": spaces.Box(-2, 2, (2,), dtype=np.float32),
            }
        )
        self.action_space = spaces.Box(-0.5, 0.5, (2,), dtype=np.float32)
        self.spec = EnvSpec(id="Reach2D-v0", max_episode_steps=max_steps)
        self._agent = np.zeros(2, np.float32)
        self._target = np.zeros(2, np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self._target = self.np_random.uniform(-0.8, 0.8, 2).astype(np.float32)
        self._agent = np.zeros(2, np.float32)
        return self._observation(), {}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        self._agent = np.clip(self._agent + np.asarray(action, np.float32), -1, 1)
        success = float(np.linalg.norm(self._agent - self._target)) < REACH
        info = {"success": success} if self.report_success else {"distance": 0.0}
        return self._observation(), float(success), success, False, info

    def _observation(self) -> dict:
        image = np.full((self.size, self.size, 3), 255, np.uint8)
        for position, colour in ((self._target, (255, 0, 0)), (self._agent, (0, 0, 255))):
            col, row = ((position + 1) / 2 * (self.size - 1)).round().astype(int)
            image[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2] = colour
        return {"pixels": image, "agent_pos": self._agent.copy(), "to_target": self._target - self._agent}


def make_reach_env(**kwargs: Any) -> Reach2D:
    return Reach2D(**kwargs)


NOT_CALLABLE = 3


class ScriptedReachPolicy:
    """A LeRobot-style policy that moves straight to the target (reads ``observation.state`` =
    ``to_target``, as the tests' adapter maps it): it always succeeds."""

    def reset(self, seed: int | None = None) -> None:
        pass

    def select_action(self, observation: dict) -> torch.Tensor:
        return observation["observation.state"].clamp(-0.5, 0.5)


def tiny_reach_policy(state_dim: int = 2, image_size: int = SIZE) -> Any:
    """A tiny untrained F1 policy (mode no_gen) that reads camera ``front`` and robot ``reach2d``."""
    from f1.model import Embodiment, F1Policy, preset

    torch.manual_seed(0)
    reach = Embodiment(name="reach2d", state_dim=state_dim, action_dim=2)
    config = preset("tiny", mode="no_gen", vision={"image_size": image_size}, embodiments=(reach,))
    return F1Policy(config).eval()
