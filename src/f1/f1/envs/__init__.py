"""Embedded table tasks for F1: a rendered pick-and-place family, its embodiments and scripted experts.

Quick start::

    from f1.envs import make_env, make_expert, rollout, seed_range

    env = make_env("arm", "dynamic", resolution=64)
    expert = make_expert(env)
    episode = rollout(env, expert.act, seed=seed_range("train")[0])
    episode["observation.images.top"].shape  # (T, 64, 64, 3)
"""

from f1.envs.arm_kinematics import TwoLinkGeometry, forward_kinematics, inverse_kinematics
from f1.envs.box_space import BoxSpace
from f1.envs.embodiments import Embodiment, PointGripper, TwoLinkArm, make_embodiment
from f1.envs.episode_rollout import (
    FRAME_KEYS,
    TABLE_CAMERA,
    TABLE_IMAGE_KEY,
    EpisodeRecord,
    episode_frames,
    rollout,
)
from f1.envs.scripted_experts import ScriptedExpert, make_expert
from f1.envs.seed_splits import SEED_SPLITS, seed_range, split_of_seed
from f1.envs.table_env import Observation, TableTaskEnv, TaskState, make_env
from f1.envs.table_scene import (
    COLOURS,
    SHAPES,
    Bin,
    SceneLayout,
    all_instructions,
    format_instruction,
    sample_scene,
)
from f1.envs.task_config import EMBODIMENTS, VARIANTS, VIEWS, TableTaskConfig

__all__ = [
    "COLOURS",
    "EMBODIMENTS",
    "FRAME_KEYS",
    "SEED_SPLITS",
    "SHAPES",
    "TABLE_CAMERA",
    "TABLE_IMAGE_KEY",
    "VARIANTS",
    "VIEWS",
    "Bin",
    "BoxSpace",
    "Embodiment",
    "EpisodeRecord",
    "Observation",
    "PointGripper",
    "SceneLayout",
    "ScriptedExpert",
    "TableTaskConfig",
    "TableTaskEnv",
    "TaskState",
    "TwoLinkArm",
    "TwoLinkGeometry",
    "all_instructions",
    "episode_frames",
    "format_instruction",
    "forward_kinematics",
    "inverse_kinematics",
    "make_embodiment",
    "make_env",
    "make_expert",
    "rollout",
    "sample_scene",
    "seed_range",
    "split_of_seed",
]
