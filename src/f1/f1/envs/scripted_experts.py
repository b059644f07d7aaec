"""Scripted experts for the table tasks: reach, grasp, carry, release, with lead-aware interception.

The experts read the privileged :class:`~f1.envs.table_env.TaskState` (object positions, conveyor
velocity, targets). On the conveyor they intercept: they search the earliest number of steps k after
which the end effector can be where the object will be, head for that predicted point, and close the
gripper on the step they arrive, when the object arrives too. Each embodiment has a controller that
knows how many steps a point takes and which action heads there; the phase logic is shared.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from f1.envs.arm_kinematics import inverse_kinematics
from f1.envs.embodiments import PointGripper, TwoLinkArm
from f1.envs.table_env import TableTaskEnv, TaskState

OPEN, CLOSE = -1.0, 1.0
MAX_LOOKAHEAD_STEPS = 200  # an object on the slowest belt loops the table in about 100 steps
_UNREACHABLE = 10**9
# A joint move counts as feasible in one step only with this margin below the bound, so that float32
# rounding of the action can never push it past the clipping bound.
_BOUND_MARGIN = 1.0 - 1e-5


class EndEffectorController(Protocol):
    """Embodiment-specific motion: how far a point is in steps, and the action heading there."""

    def steps_to_reach(self, point: tuple[float, float]) -> int:
        """Steps (>= 1) the end effector needs to arrive exactly at ``point`` (table widths)."""
        ...

    def action_toward(self, point: tuple[float, float], grip: float) -> np.ndarray:
        """Action of shape (action_dim,) toward ``point``, landing on it when reachable in one step."""
        ...


class PointGripperController:
    """Moves the point gripper straight at the point, up to ``MAX_STEP`` per axis."""

    def __init__(self, gripper: PointGripper) -> None:
        self.gripper = gripper
        self.max_step = PointGripper.MAX_STEP

    def steps_to_reach(self, point: tuple[float, float]) -> int:
        x, y = self.gripper.ee_position
        longest = max(abs(point[0] - x), abs(point[1] - y))
        return max(1, math.ceil(longest / (self.max_step * _BOUND_MARGIN)))

    def action_toward(self, point: tuple[float, float], grip: float) -> np.ndarray:
        x, y = self.gripper.ee_position
        step = self.max_step
        dx = min(max(point[0] - x, -step), step)
        dy = min(max(point[1] - y, -step), step)
        return np.array([dx, dy, grip], dtype=np.float32)


class TwoLinkArmController:
    """Moves the arm's end effector along a straight line in the table plane, via inverse kinematics.

    Straight lines keep the end effector on the (convex) table; each step goes at most
    ``cartesian_step`` table widths, and the final step lands exactly on the point.
    """

    def __init__(self, arm: TwoLinkArm, cartesian_step: float = PointGripper.MAX_STEP) -> None:
        self.arm = arm
        self.cartesian_step = cartesian_step
        self.max_joint_step = TwoLinkArm.MAX_JOINT_STEP

    def steps_to_reach(self, point: tuple[float, float]) -> int:
        joints = inverse_kinematics(self.arm.geometry, point[0], point[1])
        if joints is None:
            return _UNREACHABLE
        q1, q2 = self.arm.joint_angles
        x, y = self.arm.ee_position
        joint_steps = max(abs(joints[0] - q1), abs(joints[1] - q2)) / (self.max_joint_step * _BOUND_MARGIN)
        cartesian_steps = math.hypot(point[0] - x, point[1] - y) / self.cartesian_step
        return max(1, math.ceil(joint_steps), math.ceil(cartesian_steps))

    def action_toward(self, point: tuple[float, float], grip: float) -> np.ndarray:
        x, y = self.arm.ee_position
        distance = math.hypot(point[0] - x, point[1] - y)
        if distance > self.cartesian_step:
            fraction = self.cartesian_step / distance
            point = (x + fraction * (point[0] - x), y + fraction * (point[1] - y))
        joints = inverse_kinematics(self.arm.geometry, point[0], point[1])
        if joints is None:  # outside the arm's reach: stay put
            return np.array([0.0, 0.0, grip], dtype=np.float32)
        q1, q2 = self.arm.joint_angles
        step = self.max_joint_step
        dq1 = min(max(joints[0] - q1, -step), step)
        dq2 = min(max(joints[1] - q2, -step), step)
        return np.array([dq1, dq2, grip], dtype=np.float32)


class ScriptedExpert:
    """Pick-and-place expert bound to one environment.

    ``act`` is a stateless function of the environment's privileged state, so it can take over an
    episode at any step. Phases: with the gripper empty it reaches (intercepts) the named object and
    closes on arrival (grasp); holding it, it carries it to the named bin's centre (carry) and opens
    there (release). A wrongly held object is dropped, and a gripper closed on nothing is reopened.

    Args:
        env: the environment whose privileged state the expert reads.
        lead_aware: aim where the object will be when the gripper gets there (True), or at the object's
            current position (False: a baseline that shows why the dynamic variant needs prediction).
        approach_margin: None intercepts from the first step. A distance (table widths) first approaches
            the object's *current* position, as on a static table, until the end effector is within
            ``approach_margin`` of the object's height (y), and intercepts from there. On a belt faster
            than the end effector the intercepting reach heads away from where the object is now, so in one
            frame (where a running belt looks like a stopped one) the two variants' reaches disagree; with
            an approach phase they agree until the end effector reaches the belt
            (``docs/results/demo/NOTES.md``, round 7). Only the lead-aware expert approaches.
    """

    def __init__(
        self, env: TableTaskEnv, lead_aware: bool = True, approach_margin: float | None = None
    ) -> None:
        if approach_margin is not None and (
            isinstance(approach_margin, bool)
            or not isinstance(approach_margin, int | float)
            or not 0 < approach_margin <= 1
        ):
            raise ValueError(
                f"approach_margin: expected None or a distance in (0, 1] table widths, "
                f"received {approach_margin!r}"
            )
        self.env = env
        self.lead_aware = lead_aware
        self.approach_margin = None if approach_margin is None else float(approach_margin)
        embodiment = env.embodiment
        if isinstance(embodiment, PointGripper):
            self.controller: EndEffectorController = PointGripperController(embodiment)
        elif isinstance(embodiment, TwoLinkArm):
            self.controller = TwoLinkArmController(embodiment)
        else:
            raise ValueError(
                f"env: expected an environment with a 'gripper' or 'arm' embodiment, received "
                f"{type(embodiment).__name__}"
            )

    def __call__(self, observation: Any = None) -> np.ndarray:
        """Same as :meth:`act`, so the expert is a ``policy_fn``."""
        return self.act(observation)

    def act(self, observation_or_state: Any = None) -> np.ndarray:
        """The next action, float32 of shape (action_dim,).

        Accepts a :class:`TaskState`, or anything else (an observation, None) in which case the state is
        read from the bound environment.
        """
        state = observation_or_state if isinstance(observation_or_state, TaskState) else self.env.task_state()
        target = state.target_object
        controller = self.controller
        if state.held_object == target:
            bin_centre = state.bins[state.target_bin].centre
            if _close(state.ee_position, bin_centre):
                return controller.action_toward(bin_centre, OPEN)
            return controller.action_toward(bin_centre, CLOSE)
        if state.held_object >= 0:
            return controller.action_toward(state.ee_position, OPEN)
        steps, point = self._interception(state, target)
        grip = CLOSE if steps == 1 and not state.grip_closed else OPEN
        return controller.action_toward(point, grip)

    def _interception(self, state: TaskState, index: int) -> tuple[int, tuple[float, float]]:
        """Earliest k with the object's position after k steps reachable in k steps, and that position.

        Without wrap-around only the steps before the object falls off the table count. In the approach
        phase (see ``approach_margin``) the object's current position, never closing there (k >= 2).
        """
        if not self.lead_aware:
            point = state.predicted_position(index, 0)
            return self.controller.steps_to_reach(point), point
        if self.approach_margin is not None:
            height = float(state.object_positions[index, 1])
            if abs(state.ee_position[1] - height) > self.approach_margin:
                point = state.predicted_position(index, 0)
                return max(2, self.controller.steps_to_reach(point)), point
        last = 0
        for steps_ahead in range(1, MAX_LOOKAHEAD_STEPS + 1):
            if not state.stays_on_table(index, steps_ahead):
                break  # without wrap-around: the object falls off first, so head for where it leaves
            last = steps_ahead
            point = state.predicted_position(index, steps_ahead)
            if self.controller.steps_to_reach(point) <= steps_ahead:
                return steps_ahead, point
        # No interception: make for the last point reached before it falls off (or its last lookahead).
        return MAX_LOOKAHEAD_STEPS, state.predicted_position(index, last)


def _close(a: tuple[float, float], b: tuple[float, float], tolerance: float = 1e-6) -> bool:
    return abs(a[0] - b[0]) <= tolerance and abs(a[1] - b[1]) <= tolerance


def make_expert(
    env: TableTaskEnv, lead_aware: bool = True, approach_margin: float | None = None
) -> ScriptedExpert:
    """The scripted expert for ``env``'s embodiment and variant (arguments: see :class:`ScriptedExpert`)."""
    return ScriptedExpert(env, lead_aware=lead_aware, approach_margin=approach_margin)
