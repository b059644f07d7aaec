"""Configuration of one member of the embedded table task family."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from f1.checks import reject_unknown_keys

VARIANTS: tuple[str, ...] = ("static", "dynamic")
VIEWS: tuple[str, ...] = ("table", "eye_in_hand")
EMBODIMENTS: tuple[str, ...] = ("gripper", "arm")
MIN_RESOLUTION = 32
MAX_RESOLUTION = 128
MAX_OBJECTS = 4
MAX_BINS = 3
# A belt may run up to three times as fast as the point gripper moves (0.04 per axis per step): the belt
# loops, so an object the gripper cannot chase is still caught by waiting ahead of it (the experts do).
MAX_CONVEYOR_SPEED = 0.12


@dataclass(frozen=True)
class TableTaskConfig:
    """A table task: which embodiment, static or conveyor scene, image size and task difficulty.

    Lengths are in table widths (the table is the unit square, x to the right and y downwards as in the
    image); speeds are in table widths per control step; one step lasts ``1 / fps`` seconds.

    Attributes:
        embodiment: ``"gripper"`` (point gripper, action ``(dx, dy, grip)``) or ``"arm"`` (two-link planar
            arm, action ``(dq_shoulder, dq_elbow, grip)``).
        variant: ``"static"`` (objects stand still) or ``"dynamic"`` (objects ride a conveyor whose speed
            and direction are drawn per episode).
        resolution: side of the square RGB observation in pixels, 32 to 128.
        num_objects: objects on the table (distinct colours), 1 to 4.
        num_bins: coloured target bins (distinct colours), 1 to 3.
        max_steps: steps after which an episode is truncated.
        object_size: side of an object's bounding square, table widths.
        grasp_radius: closing the gripper grasps the nearest object whose centre is within this distance
            of the end effector at that moment (after this step's conveyor motion), table widths.
        conveyor_speed_range: (low, high) conveyor speed in the dynamic variant, table widths per step;
            the direction (left or right) is drawn per episode too.
        fps: control rate in steps per second (sets the units of the arm's joint velocities).
        missed_grasp_ends_episode: closing the gripper without grasping the named object (nothing within
            ``grasp_radius``, or another object nearest) ends the episode as a failure (reward 0,
            ``terminated=True``, ``info["failure"] == "missed_grasp"``) instead of leaving the gripper
            closed on nothing to be reopened. With it, a policy cannot sit in the object's lane and retry
            closing on every lap of the belt: the first close must be timed right.
        view: the camera. ``"table"``: fixed above the table, the table filling the image. ``"eye_in_hand"``:
            mounted on the end effector, looking down, with a field of view of two table widths: the end
            effector stays at the image centre and the whole table stays in view (at half the table view's
            scale) wherever it goes, so where an object lies relative to the gripper is where it lies in the
            image. Outside the table the image is black.
        grasp_sensor: the proprioception ends with ``holding``: 1 while the gripper holds an object, 0
            otherwise (what a real gripper's finger width tells: closed on an object, or on nothing). Without
            it a gripper closed on nothing looks, in the state, like one that holds the object.
        belt_sensor: the proprioception ends with ``belt_running`` (after ``holding`` with
            ``grasp_sensor``): 1 while the conveyor moves, 0 when it stands still (the static variant, or a
            reset with a zero ``conveyor_velocity``), as a conveyor's run signal tells a robot cell. It says
            nothing of the belt's speed or direction, which stay visible only across frames. Without it one
            frame of a running belt looks like one of a stopped belt, and the two variants' experts answer
            that frame oppositely (``docs/results/demo/NOTES.md``, round 6).
        conveyor_wraps: the belt loops: an object leaving the table's left or right edge comes back at the
            other one (True). With False an object whose centre crosses either edge has fallen off the
            table: it is gone (neither drawn nor graspable), and losing the named object ends the episode
            as a failure (``terminated=True``, ``info["failure"] == "object_lost"``). The object then
            passes the end effector once, so a policy cannot wait in its lane for it to come round: it
            must tell the belt's direction. Objects start inside :data:`~f1.envs.table_scene.NO_WRAP_START_X`
            whatever the direction, so that neither the start position nor (at the first step) the
            position tells the direction. The static variant ignores it (nothing moves there).
    """

    embodiment: str = "gripper"
    variant: str = "static"
    resolution: int = 64
    num_objects: int = 3
    num_bins: int = 3
    max_steps: int = 60
    object_size: float = 0.1
    grasp_radius: float = 0.03
    conveyor_speed_range: tuple[float, float] = (0.01, 0.04)
    fps: int = 10
    missed_grasp_ends_episode: bool = False
    view: str = "table"
    grasp_sensor: bool = False
    conveyor_wraps: bool = True
    belt_sensor: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "conveyor_speed_range", tuple(float(v) for v in self.conveyor_speed_range))
        _check_choice("embodiment", self.embodiment, EMBODIMENTS)
        _check_choice("variant", self.variant, VARIANTS)
        _check_choice("view", self.view, VIEWS)
        _check_int_range("resolution", self.resolution, MIN_RESOLUTION, MAX_RESOLUTION)
        for name in ("grasp_sensor", "belt_sensor"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected a bool, received {getattr(self, name)!r}")
        _check_int_range("num_objects", self.num_objects, 1, MAX_OBJECTS)
        _check_int_range("num_bins", self.num_bins, 1, MAX_BINS)
        _check_int_range("max_steps", self.max_steps, 10, 10_000)
        _check_int_range("fps", self.fps, 1, 1000)
        if not isinstance(self.missed_grasp_ends_episode, bool):
            raise ValueError(
                f"missed_grasp_ends_episode: expected a bool, received {self.missed_grasp_ends_episode!r}"
            )
        if not isinstance(self.conveyor_wraps, bool):
            raise ValueError(f"conveyor_wraps: expected a bool, received {self.conveyor_wraps!r}")
        _check_float_range("object_size", self.object_size, 0.03, 0.15)
        _check_float_range("grasp_radius", self.grasp_radius, 0.005, 0.1)
        if len(self.conveyor_speed_range) != 2:
            raise ValueError(
                f"conveyor_speed_range: expected (low, high), received {self.conveyor_speed_range!r}"
            )
        low, high = self.conveyor_speed_range
        if not 0.0 <= low <= high <= MAX_CONVEYOR_SPEED:
            raise ValueError(
                f"conveyor_speed_range: expected 0 <= low <= high <= {MAX_CONVEYOR_SPEED} table widths per "
                f"step, received {self.conveyor_speed_range!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-serialisable dictionary (tuples become lists)."""
        data = asdict(self)
        data["conveyor_speed_range"] = list(self.conveyor_speed_range)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableTaskConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        reject_unknown_keys("TableTaskConfig", data, cls)
        return cls(**data)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, received {value!r}")


def _check_int_range(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: expected an integer in [{low}, {high}], received {value!r}")


def _check_float_range(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name}: expected a number in [{low}, {high}], received {value!r}")
