"""The embedded table tasks as gymnasium environments (needs the optional ``gymnasium``: ``pip install
f1[gym]``), so that they run through the same path as any other simulator (``f1 eval --env``).

Observations are a ``Dict`` of ``image`` (uint8 ``(H, W, 3)``), ``state`` (float32 ``(S,)``) and
``instruction`` (text); ``info["success"]`` reports success. The adapter that maps them onto a policy with
camera ``top``::

    cameras: {top: image}
    state: state
    instruction_key: instruction
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

try:
    import gymnasium as gym
    from gymnasium import spaces
    from gymnasium.envs.registration import EnvSpec
except ImportError as error:  # the optional extra; the rest of f1 works without it
    raise ImportError("f1.envs.gymnasium_env needs gymnasium: pip install 'f1[gym]'") from error

from f1.envs.table_env import TableTaskEnv
from f1.envs.task_config import TableTaskConfig

__all__ = ["TableTaskGymEnv"]


class TableTaskGymEnv(gym.Env):
    """A :class:`f1.envs.TableTaskEnv` behind gymnasium's ``Env`` interface.

    Args:
        embodiment, variant, resolution, **overrides: the :class:`f1.envs.TableTaskConfig` fields.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(
        self, embodiment: str = "gripper", variant: str = "static", resolution: int = 64, **overrides: Any
    ) -> None:
        config = TableTaskConfig(embodiment=embodiment, variant=variant, resolution=resolution, **overrides)
        self.task = TableTaskEnv(config)
        action, state = self.task.action_space, self.task.state_space
        self.action_space = spaces.Box(action.low, action.high, dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, self.task.image_shape, dtype=np.uint8),
                "state": spaces.Box(state.low, state.high, dtype=np.float32),
                "instruction": spaces.Text(max_length=256),
            }
        )
        self.spec = EnvSpec(id="f1/TableTask-v0", max_episode_steps=config.max_steps)
        self.render_mode = "rgb_array"

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        observation, info = self.task.reset(seed=seed, options=options)
        return dict(observation), info

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.task.step(action)
        return dict(observation), reward, terminated, truncated, info

    def render(self) -> np.ndarray:
        return self.task.render()
