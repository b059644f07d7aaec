"""The two embodiments of the table tasks: a point gripper and a two-link planar arm.

An embodiment owns its kinematic state (where the end effector is, how the joints stand), turns a
clipped action into motion and reports its proprioception. Grasping and the scene belong to the
environment; the last action dimension of both embodiments is the grip command (> 0 closes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from f1.envs.arm_kinematics import TwoLinkGeometry, forward_kinematics, inverse_kinematics
from f1.envs.box_space import BoxSpace
from f1.envs.task_config import EMBODIMENTS


class Embodiment(ABC):
    """A robot body: action space, proprioception and end-effector kinematics.

    Attributes:
        name: registry name (``"gripper"`` or ``"arm"``).
        fps: control rate in steps per second.
        action_space: bounds and names of the action, shape (action_dim,).
        state_space: bounds and names of the proprioceptive state, shape (state_dim,).
    """

    name: ClassVar[str]
    action_space: BoxSpace
    state_space: BoxSpace

    def __init__(self, fps: int) -> None:
        self.fps = fps
        self.grip_closed = False

    @property
    def action_dim(self) -> int:
        """Number of action dimensions."""
        return self.action_space.dim

    @property
    def state_dim(self) -> int:
        """Number of proprioceptive state dimensions."""
        return self.state_space.dim

    @property
    def action_names(self) -> tuple[str, ...]:
        """Name of each action dimension."""
        return self.action_space.names

    @property
    def state_names(self) -> tuple[str, ...]:
        """Name of each state dimension."""
        return self.state_space.names

    @property
    @abstractmethod
    def ee_position(self) -> tuple[float, float]:
        """End-effector position (x, y) in table widths."""

    @abstractmethod
    def reset(self, ee_start: tuple[float, float]) -> None:
        """Place the end effector at ``ee_start`` (table widths) with the gripper open."""

    @abstractmethod
    def move(self, action: np.ndarray) -> None:
        """Move by a clipped action of shape (action_dim,); the grip entry is handled by the environment."""

    @abstractmethod
    def state_vector(self) -> np.ndarray:
        """Proprioception, float32 of shape (state_dim,)."""

    def link_polyline(self) -> tuple[tuple[float, float], ...]:
        """Points (table widths) of the visible links from the base to the end effector; empty if none."""
        return ()


class PointGripper(Embodiment):
    """A gripper that translates in the table plane: action ``(dx, dy, grip)``, state ``(x, y, grip)``.

    dx and dy are displacements in table widths per step, at most :attr:`MAX_STEP` each; the end
    effector stays on the table. ``grip`` > 0 closes the gripper. The state's grip entry is 1.0 when
    closed and 0.0 when open.
    """

    name: ClassVar[str] = "gripper"
    MAX_STEP: ClassVar[float] = 0.04

    def __init__(self, fps: int) -> None:
        super().__init__(fps)
        step = self.MAX_STEP
        self.action_space = BoxSpace(
            np.array([-step, -step, -1.0]), np.array([step, step, 1.0]), ("dx", "dy", "grip")
        )
        self.state_space = BoxSpace(np.zeros(3), np.ones(3), ("x", "y", "grip"))
        self._x = 0.5
        self._y = 0.5

    @property
    def ee_position(self) -> tuple[float, float]:
        return self._x, self._y

    def reset(self, ee_start: tuple[float, float]) -> None:
        self._x, self._y = float(ee_start[0]), float(ee_start[1])
        self.grip_closed = False

    def move(self, action: np.ndarray) -> None:
        self._x = min(max(self._x + float(action[0]), 0.0), 1.0)
        self._y = min(max(self._y + float(action[1]), 0.0), 1.0)

    def state_vector(self) -> np.ndarray:
        return np.array([self._x, self._y, float(self.grip_closed)], dtype=np.float32)


class TwoLinkArm(Embodiment):
    """A two-link planar arm mounted below the table: action ``(dq_shoulder, dq_elbow, grip)``.

    Joint deltas are radians per step, at most :attr:`MAX_JOINT_STEP` each; angles are clipped to the
    joint limits, and a move that would take the end effector off the table is shortened (to 1/2, then
    1/4 of it) or refused, so the end effector always stays on the table.
    State ``(q_shoulder, q_elbow, dq_shoulder, dq_elbow, ee_x, ee_y, grip)``: angles in radians, joint
    velocities in radians per second (over the last step), end effector in table widths, grip 1.0 closed.
    """

    name: ClassVar[str] = "arm"
    MAX_JOINT_STEP: ClassVar[float] = 0.08
    _BACKOFF_FRACTIONS: ClassVar[tuple[float, ...]] = (1.0, 0.5, 0.25)

    def __init__(self, fps: int, geometry: TwoLinkGeometry | None = None) -> None:
        super().__init__(fps)
        self.geometry = geometry or TwoLinkGeometry()
        step = self.MAX_JOINT_STEP
        self.action_space = BoxSpace(
            np.array([-step, -step, -1.0]), np.array([step, step, 1.0]), ("dq_shoulder", "dq_elbow", "grip")
        )
        (s_low, s_high), (e_low, e_high) = self.geometry.shoulder_limits, self.geometry.elbow_limits
        max_speed = step * fps
        self.state_space = BoxSpace(
            np.array([s_low, e_low, -max_speed, -max_speed, 0.0, 0.0, 0.0]),
            np.array([s_high, e_high, max_speed, max_speed, 1.0, 1.0, 1.0]),
            ("q_shoulder", "q_elbow", "dq_shoulder", "dq_elbow", "ee_x", "ee_y", "grip"),
        )
        self.joint_angles = (0.0, 0.0)
        self.joint_velocities = (0.0, 0.0)
        self._elbow = (0.0, 0.0)
        self._ee = (0.0, 0.0)

    @property
    def ee_position(self) -> tuple[float, float]:
        return self._ee

    def reset(self, ee_start: tuple[float, float]) -> None:
        joints = inverse_kinematics(self.geometry, float(ee_start[0]), float(ee_start[1]))
        if joints is None:
            raise ValueError(f"ee_start: expected a point the arm reaches, received {tuple(ee_start)}")
        self._set_joints(*joints)
        self.joint_velocities = (0.0, 0.0)
        self.grip_closed = False

    def move(self, action: np.ndarray) -> None:
        q1, q2 = self.joint_angles
        (s_low, s_high), (e_low, e_high) = self.geometry.shoulder_limits, self.geometry.elbow_limits
        dq1, dq2 = float(action[0]), float(action[1])
        for fraction in self._BACKOFF_FRACTIONS:
            n1 = min(max(q1 + fraction * dq1, s_low), s_high)
            n2 = min(max(q2 + fraction * dq2, e_low), e_high)
            elbow, (x, y) = forward_kinematics(self.geometry, n1, n2)
            if 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0:
                self.joint_angles, self._elbow, self._ee = (n1, n2), elbow, (x, y)
                self.joint_velocities = ((n1 - q1) * self.fps, (n2 - q2) * self.fps)
                return
        self.joint_velocities = (0.0, 0.0)

    def state_vector(self) -> np.ndarray:
        (q1, q2), (v1, v2), (x, y) = self.joint_angles, self.joint_velocities, self._ee
        return np.array([q1, q2, v1, v2, x, y, float(self.grip_closed)], dtype=np.float32)

    def link_polyline(self) -> tuple[tuple[float, float], ...]:
        return (self.geometry.base, self._elbow, self._ee)

    def _set_joints(self, shoulder: float, elbow: float) -> None:
        self.joint_angles = (shoulder, elbow)
        self._elbow, self._ee = forward_kinematics(self.geometry, shoulder, elbow)


_REGISTRY: dict[str, type[Embodiment]] = {"gripper": PointGripper, "arm": TwoLinkArm}


def make_embodiment(name: str, fps: int = 10) -> Embodiment:
    """A fresh embodiment by registry name (``"gripper"`` or ``"arm"``)."""
    if name not in _REGISTRY:
        raise ValueError(f"embodiment: expected one of {list(EMBODIMENTS)}, received {name!r}")
    return _REGISTRY[name](fps)
