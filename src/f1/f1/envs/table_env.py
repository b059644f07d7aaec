"""The table task environment: gymnasium-style ``reset``/``step`` over a rendered top-down table.

One episode: the instruction names an object (by colour and shape) and a bin (by colour); the policy
reaches the object, closes the gripper on it (grasp), carries it and opens the gripper over the bin
(release). Success is the named object released inside the named bin; releasing it in another bin ends
the episode as a failure, and so does, with ``missed_grasp_ends_episode``, closing the gripper without
grasping the named object. In the dynamic variant every object on the belt moves by the conveyor velocity
each step and wraps around the table's left and right edges; without wrap-around
(``TableTaskConfig.conveyor_wraps=False``) an object whose centre crosses an edge falls off the table, and
losing the named object ends the episode as a failure.

Step order: the embodiment moves, then the conveyor moves the objects, then the grip command acts. A
grasp therefore needs the end effector where the object will be after this step's conveyor motion,
which a policy aiming at the object's position in the current frame misses at higher conveyor speeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from f1.checks import reject_unknown_keys
from f1.envs.box_space import BoxSpace
from f1.envs.embodiments import Embodiment, make_embodiment
from f1.envs.table_render import (
    ARM_RGB,
    GRIPPER_CLOSED_RGB,
    GRIPPER_OPEN_RGB,
    TableRenderer,
    eye_in_hand_view,
)
from f1.envs.table_scene import Bin, SceneLayout, is_on_belt, sample_scene
from f1.envs.task_config import MAX_CONVEYOR_SPEED, TableTaskConfig

HOLDING_STATE_NAME = "holding"
"""The name of the grasp sensor's state entry (``TableTaskConfig.grasp_sensor``)."""
BELT_RUNNING_STATE_NAME = "belt_running"
"""The name of the belt sensor's state entry (``TableTaskConfig.belt_sensor``)."""


class Observation(TypedDict):
    """What a policy sees.

    Keys:
        image: top-down RGB view, uint8 of shape (H, W, 3) with H = W = resolution.
        state: proprioception, float32 of shape (state_dim,) (see ``env.state_space.names``).
        instruction: the language instruction.
    """

    image: np.ndarray
    state: np.ndarray
    instruction: str


@dataclass(frozen=True, eq=False)
class TaskState:
    """Privileged snapshot of the scene, for scripted experts and evaluation (not for policies).

    Attributes:
        step: steps taken in this episode.
        ee_position: end effector (x, y), table widths.
        grip_closed: whether the gripper is closed.
        held_object: index of the held object, or -1.
        object_positions: object centres, float64 of shape (N, 2), table widths (a copy).
        object_on_belt: whether each object rides the conveyor, bool of shape (N,).
        conveyor_velocity: (vx, vy), table widths per step.
        target_object: index of the object the instruction names.
        target_bin: index of the bin the instruction names.
        bins: the bins.
        conveyor_wraps: whether objects leaving the table's left or right edge come back at the other one.
        object_lost: whether each object has fallen off the table (never with wrap-around), bool of
            shape (N,).
    """

    step: int
    ee_position: tuple[float, float]
    grip_closed: bool
    held_object: int
    object_positions: np.ndarray
    object_on_belt: np.ndarray
    conveyor_velocity: tuple[float, float]
    target_object: int
    target_bin: int
    bins: tuple[Bin, ...]
    conveyor_wraps: bool
    object_lost: np.ndarray

    def predicted_position(self, index: int, steps_ahead: int) -> tuple[float, float]:
        """Where object ``index`` will be after ``steps_ahead`` steps if nobody touches it.

        Without wrap-around the position may lie beyond the table's left or right edge: the object will
        have fallen off by then (:meth:`stays_on_table`).
        """
        x, y = self.object_positions[index]
        if self.object_on_belt[index] and index != self.held_object:
            x = x + steps_ahead * self.conveyor_velocity[0]
            if self.conveyor_wraps:
                x %= 1.0
            y = y + steps_ahead * self.conveyor_velocity[1]
        return float(x), float(y)

    def stays_on_table(self, index: int, steps_ahead: int) -> bool:
        """Whether object ``index`` is still on the table after ``steps_ahead`` steps if nobody touches it."""
        if self.object_lost[index]:
            return False
        return self.conveyor_wraps or 0.0 <= self.predicted_position(index, steps_ahead)[0] <= 1.0


class TableTaskEnv:
    """Pick-and-place on a top-down table, static or on a conveyor, for a point gripper or a planar arm.

    Gymnasium-style API without depending on gymnasium: ``reset(seed=...) -> (obs, info)`` and
    ``step(action) -> (obs, reward, terminated, truncated, info)``. ``info["success"]`` says whether the
    named object lies in the named bin. The reward is 1.0 on the successful step and 0.0 otherwise.

    Args:
        config: which task of the family.
    """

    def __init__(self, config: TableTaskConfig | None = None) -> None:
        self.config = config or TableTaskConfig()
        self.embodiment: Embodiment = make_embodiment(self.config.embodiment, self.config.fps)
        self.renderer = TableRenderer(self.config.resolution, self.config.object_size)
        self._rng = np.random.default_rng()
        self._scene: SceneLayout | None = None
        self._done = True
        self._dynamic = self.config.variant == "dynamic"
        self._wraps = self.config.conveyor_wraps

    # -- public description ---------------------------------------------------------------------------

    @property
    def action_space(self) -> BoxSpace:
        """The embodiment's action bounds and names, shape (action_dim,)."""
        return self.embodiment.action_space

    @property
    def state_space(self) -> BoxSpace:
        """The proprioception's bounds and names, shape (state_dim,): the embodiment's, then ``holding``
        with ``config.grasp_sensor``, then ``belt_running`` with ``config.belt_sensor`` (each in [0, 1])."""
        space = self.embodiment.state_space
        sensors = [name for name, _ in self._sensors()]
        if not sensors:
            return space
        zeros, ones = np.zeros(len(sensors)), np.ones(len(sensors))
        return BoxSpace(np.append(space.low, zeros), np.append(space.high, ones), (*space.names, *sensors))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of the observed image."""
        return (self.config.resolution, self.config.resolution, 3)

    @property
    def fps(self) -> int:
        """Control rate, steps per second."""
        return self.config.fps

    @property
    def instruction(self) -> str:
        """The current episode's instruction."""
        self._require_scene()
        return self._instruction

    # -- episode ----------------------------------------------------------------------------------------

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Start an episode; with ``seed`` everything (scene, conveyor, start pose) is reproducible.

        Without a seed the environment's generator continues (reseeded from entropy on first use).
        ``options`` may hold ``"conveyor_velocity"``: a signed belt speed in table widths per step that
        replaces the drawn one (dynamic variant only), e.g. to measure success against conveyor speed.
        """
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
                raise ValueError(f"seed: expected a non-negative integer or None, received {seed!r}")
            self._rng = np.random.default_rng(int(seed))
        scene = sample_scene(self._rng, self.config)
        if options:
            scene = self._apply_options(scene, options)
        self._scene = scene
        self._instruction = scene.instruction
        self._positions = scene.object_positions.copy()
        self._on_belt = np.array([is_on_belt(y) for y in self._positions[:, 1]], dtype=bool)
        self._lost = np.zeros(len(self._positions), dtype=bool)
        self._object_rgb = [self.renderer.colour_rgb[c] for c in scene.object_colours]
        self._object_masks = [self.renderer.masks[s] for s in scene.object_shapes]
        self._background = self.renderer.background(scene.bins)
        self.embodiment.reset(scene.ee_start)
        self._held = -1
        self._steps = 0
        self._success = False
        self._target_grasped = False
        self._failure: str | None = None
        self._done = False
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Apply one action of shape (action_dim,); values outside the bounds are clipped."""
        if self._done:
            raise RuntimeError("step: the episode is over (or never started); call reset() first")
        applied = self.validate_action(action)
        embodiment = self.embodiment
        embodiment.move(applied)
        ex, ey = embodiment.ee_position
        if self._dynamic:
            moving = self._on_belt.copy()
            if self._held >= 0:
                moving[self._held] = False
            vx, vy = self._require_scene().conveyor_velocity
            self._positions[moving, 0] += vx
            self._positions[moving, 1] += vy
            if self._wraps:
                self._positions[moving, 0] %= 1.0
            else:
                self._drop_off_edges()
        terminated = False
        close = applied[-1] > 0.0
        if self._lost[self._require_scene().target_object]:
            # The named object fell off the table before the grip acted: nothing left to do.
            terminated = True
            self._failure = "object_lost"
        elif close and not embodiment.grip_closed:
            embodiment.grip_closed = True
            self._held = self._nearest_object_within(ex, ey, self.config.grasp_radius)
            if self._held == self._require_scene().target_object:
                self._target_grasped = True
            elif self.config.missed_grasp_ends_episode:
                terminated = True
                self._failure = "missed_grasp"
        elif not close and embodiment.grip_closed:
            embodiment.grip_closed = False
            if self._held >= 0:
                terminated = self._release(ex, ey)
        if self._held >= 0:
            self._positions[self._held] = (ex, ey)
        self._steps += 1
        truncated = not terminated and self._steps >= self.config.max_steps
        self._done = terminated or truncated
        reward = 1.0 if self._success else 0.0
        return self._observation(), reward, terminated, truncated, self._info()

    def validate_action(self, action: Any) -> np.ndarray:
        """The action as float64 of shape (action_dim,), clipped into the action space.

        Raises ``ValueError`` for a wrong shape or non-finite values.
        """
        space = self.embodiment.action_space
        try:
            array = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"action: expected numbers of shape {space.shape}, received {type(action).__name__}"
            ) from error
        if array.shape != space.shape:
            raise ValueError(
                f"action: expected shape {space.shape} {space.names} for embodiment "
                f"{self.embodiment.name!r}, received shape {array.shape}"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"action: expected finite values, received {array.tolist()}")
        return space.clip(array)

    def render(self) -> np.ndarray:
        """The current top-down view, uint8 of shape (H, W, 3): the table camera's, or the eye-in-hand
        camera's (``config.view``, :func:`~f1.envs.table_render.eye_in_hand_view`)."""
        self._require_scene()
        renderer = self.renderer
        image = self._background.copy()
        wrap = self._dynamic and self._wraps
        for i, (x, y) in enumerate(self._positions.tolist()):
            if i != self._held and not self._lost[i]:
                renderer.stamp(
                    image, self._object_masks[i], x, y, self._object_rgb[i], wrap and self._on_belt[i]
                )
        ex, ey = self.embodiment.ee_position
        if self._held >= 0:
            renderer.stamp(image, self._object_masks[self._held], ex, ey, self._object_rgb[self._held])
        links = self.embodiment.link_polyline()
        if links:
            renderer.polyline(image, links, ARM_RGB)
        marker_rgb = GRIPPER_CLOSED_RGB if self.embodiment.grip_closed else GRIPPER_OPEN_RGB
        renderer.stamp(image, renderer.marker, ex, ey, marker_rgb)
        if self.config.view == "eye_in_hand":
            return eye_in_hand_view(image, ex, ey)
        return image

    def task_state(self) -> TaskState:
        """Privileged snapshot of the scene (object positions, conveyor velocity, targets)."""
        scene = self._require_scene()
        return TaskState(
            step=self._steps,
            ee_position=self.embodiment.ee_position,
            grip_closed=self.embodiment.grip_closed,
            held_object=self._held,
            object_positions=self._positions.copy(),
            object_on_belt=self._on_belt.copy(),
            conveyor_velocity=scene.conveyor_velocity,
            target_object=scene.target_object,
            target_bin=scene.target_bin,
            bins=scene.bins,
            conveyor_wraps=self._wraps,
            object_lost=self._lost.copy(),
        )

    # -- internals --------------------------------------------------------------------------------------

    def _apply_options(self, scene: SceneLayout, options: dict[str, Any]) -> SceneLayout:
        reject_unknown_keys("options", options, ("conveyor_velocity",))
        if "conveyor_velocity" not in options:
            return scene
        velocity = options["conveyor_velocity"]
        if not self._dynamic:
            raise ValueError("options: 'conveyor_velocity' needs the 'dynamic' variant, received 'static'")
        if (
            isinstance(velocity, bool)
            or not isinstance(velocity, int | float)
            or abs(velocity) > MAX_CONVEYOR_SPEED
        ):
            raise ValueError(
                f"options['conveyor_velocity']: expected a number in [-{MAX_CONVEYOR_SPEED}, "
                f"{MAX_CONVEYOR_SPEED}] table widths per step, received {velocity!r}"
            )
        return dataclasses.replace(scene, conveyor_velocity=(float(velocity), 0.0))

    def _drop_off_edges(self) -> None:
        """Objects whose centre has left the table's left or right edge fall off: lost, and off the belt."""
        gone = self._on_belt & ((self._positions[:, 0] < 0.0) | (self._positions[:, 0] > 1.0))
        self._lost |= gone
        self._on_belt &= ~gone

    def _nearest_object_within(self, x: float, y: float, radius: float) -> int:
        best, best_distance = -1, radius
        for i, (ox, oy) in enumerate(self._positions):
            if self._lost[i]:
                continue
            distance = math.hypot(ox - x, oy - y)
            if distance <= best_distance:
                best, best_distance = i, distance
        return best

    def _release(self, x: float, y: float) -> bool:
        """Drop the held object at (x, y); True when this ends the episode (it went into a bin)."""
        scene = self._require_scene()
        index, self._held = self._held, -1
        self._positions[index] = (x, y)
        self._on_belt[index] = is_on_belt(y)
        if index != scene.target_object:
            return False
        for b, bin_ in enumerate(scene.bins):
            if bin_.contains(x, y):
                self._success = b == scene.target_bin
                return True
        return False

    def _sensors(self) -> list[tuple[str, Callable[[], bool]]]:
        """The switched-on sensors after the embodiment's state, in order: (state name, reading)."""
        sensors: list[tuple[str, Callable[[], bool]]] = []
        if self.config.grasp_sensor:
            sensors.append((HOLDING_STATE_NAME, lambda: self._held >= 0))
        if self.config.belt_sensor:
            sensors.append((BELT_RUNNING_STATE_NAME, self._belt_running))
        return sensors

    def _belt_running(self) -> bool:
        vx, vy = self._require_scene().conveyor_velocity
        return bool(vx != 0 or vy != 0)

    def _state_vector(self) -> np.ndarray:
        state = self.embodiment.state_vector()
        readings = [np.float32(read()) for _, read in self._sensors()]
        return np.append(state, readings).astype(state.dtype, copy=False) if readings else state

    def _observation(self) -> Observation:
        return {
            "image": self.render(),
            "state": self._state_vector(),
            "instruction": self._instruction,
        }

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "success": self._success,
            "holding": self._held,
            "target_grasped": self._target_grasped,
        }
        if self._failure is not None:
            info["failure"] = self._failure
        return info

    def _require_scene(self) -> SceneLayout:
        if self._scene is None:
            raise RuntimeError("the environment has no episode yet; call reset() first")
        return self._scene


def make_env(
    embodiment: str = "gripper", variant: str = "static", resolution: int = 64, **overrides: Any
) -> TableTaskEnv:
    """A table task environment; ``overrides`` are further :class:`TableTaskConfig` fields."""
    return TableTaskEnv(
        TableTaskConfig(embodiment=embodiment, variant=variant, resolution=resolution, **overrides)
    )
