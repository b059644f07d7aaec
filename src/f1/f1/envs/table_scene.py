"""What is on the table in one episode: objects, bins, the conveyor, the instruction.

Layout (table widths, x right, y down): the bins stand in a row along the top edge, the conveyor belt is
a horizontal band across the middle, the objects start on the belt and the end effector starts near the
bottom edge. The belt is drawn in both variants; only in the dynamic one does it move, so a single frame
never tells the conveyor's speed or direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from f1.envs.task_config import TableTaskConfig

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 205, 40),
    "purple": (150, 60, 200),
    "orange": (245, 135, 30),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")

BELT_Y_RANGE: tuple[float, float] = (0.42, 0.74)
OBJECT_Y_RANGE: tuple[float, float] = (0.5, 0.66)
BIN_SLOTS_X: tuple[float, ...] = (0.2, 0.5, 0.8)
BIN_CENTRE_Y = 0.14
BIN_HALF_SIZE: tuple[float, float] = (0.12, 0.09)
EE_START_CENTRE: tuple[float, float] = (0.5, 0.88)
EE_START_JITTER: tuple[float, float] = (0.1, 0.03)
STATIC_OBJECT_X_RANGE: tuple[float, float] = (0.1, 0.9)
MIN_OBJECT_GAP = 0.2
# Where the named object starts on a belt that does not loop, whatever the belt's direction (drawn
# independently), so that the start tells nothing about the direction; narrow enough that the expert
# intercepts the object before it leaves the table in either direction at the belt speeds the family allows
# without wrap-around (see TableTaskConfig.conveyor_wraps).
NO_WRAP_START_X: tuple[float, float] = (0.4, 0.6)
INSTRUCTION_TEMPLATE = "put the {colour} {shape} in the {bin_colour} bin"


@dataclass(frozen=True)
class Bin:
    """A coloured, axis-aligned target bin.

    Attributes:
        colour: colour name, a key of :data:`COLOURS`.
        centre: (x, y) in table widths.
        half_size: (half width, half height) in table widths.
    """

    colour: str
    centre: tuple[float, float]
    half_size: tuple[float, float] = BIN_HALF_SIZE

    def contains(self, x: float, y: float) -> bool:
        """Whether the point (x, y) lies inside the bin (border included)."""
        return abs(x - self.centre[0]) <= self.half_size[0] and abs(y - self.centre[1]) <= self.half_size[1]


@dataclass(frozen=True, eq=False)
class SceneLayout:
    """The random draw of one episode.

    Attributes:
        object_colours: colour name per object, all distinct, length N.
        object_shapes: shape name per object, length N.
        object_positions: initial centres, float64 of shape (N, 2), table widths.
        bins: the target bins, all colours distinct.
        target_object: index of the object the instruction names.
        target_bin: index of the bin the instruction names.
        conveyor_velocity: (vx, vy) of the belt, table widths per step; (0, 0) in the static variant.
        ee_start: initial end-effector position, table widths.
    """

    object_colours: tuple[str, ...]
    object_shapes: tuple[str, ...]
    object_positions: np.ndarray
    bins: tuple[Bin, ...]
    target_object: int
    target_bin: int
    conveyor_velocity: tuple[float, float]
    ee_start: tuple[float, float]

    @property
    def instruction(self) -> str:
        """The language instruction, e.g. ``"put the red square in the blue bin"``."""
        i = self.target_object
        return format_instruction(
            self.object_colours[i], self.object_shapes[i], self.bins[self.target_bin].colour
        )


def format_instruction(colour: str, shape: str, bin_colour: str) -> str:
    """The instruction naming an object by colour and shape and a bin by colour."""
    return INSTRUCTION_TEMPLATE.format(colour=colour, shape=shape, bin_colour=bin_colour)


def all_instructions() -> tuple[str, ...]:
    """Every instruction the task family can give (each colour and shape, each bin colour)."""
    return tuple(
        format_instruction(colour, shape, bin_colour)
        for colour in COLOURS
        for shape in SHAPES
        for bin_colour in COLOURS
    )


def is_on_belt(y: float) -> bool:
    """Whether a point at height y (table widths) lies on the conveyor band."""
    return BELT_Y_RANGE[0] <= y <= BELT_Y_RANGE[1]


def sample_scene(rng: np.random.Generator, config: TableTaskConfig) -> SceneLayout:
    """Draw objects, bins, target, conveyor velocity and start position for one episode."""
    colour_names = list(COLOURS)
    object_colours = tuple(colour_names[i] for i in rng.permutation(len(colour_names))[: config.num_objects])
    object_shapes = tuple(SHAPES[i] for i in rng.integers(0, len(SHAPES), size=config.num_objects))
    dynamic = config.variant == "dynamic"
    xs = _spread_positions(rng, config.num_objects, periodic=dynamic)
    ys = rng.uniform(*OBJECT_Y_RANGE, size=config.num_objects)
    bin_colours = [colour_names[i] for i in rng.permutation(len(colour_names))[: config.num_bins]]
    slots = np.sort(rng.choice(len(BIN_SLOTS_X), size=config.num_bins, replace=False))
    bins = tuple(Bin(c, (BIN_SLOTS_X[s], BIN_CENTRE_Y)) for c, s in zip(bin_colours, slots))
    target_object = int(rng.integers(config.num_objects))
    target_bin = int(rng.integers(config.num_bins))
    if dynamic:
        speed = rng.uniform(*config.conveyor_speed_range)
        velocity = (float(speed if rng.random() < 0.5 else -speed), 0.0)
    else:
        velocity = (0.0, 0.0)
    ee_start = (
        EE_START_CENTRE[0] + rng.uniform(-EE_START_JITTER[0], EE_START_JITTER[0]),
        EE_START_CENTRE[1] + rng.uniform(-EE_START_JITTER[1], EE_START_JITTER[1]),
    )
    if dynamic and not config.conveyor_wraps:
        # Turn the loop so that the named object starts inside NO_WRAP_START_X (the others keep their
        # gaps around the loop); drawn last, so that looping scenes are drawn as before.
        xs = np.mod(xs + rng.uniform(*NO_WRAP_START_X) - xs[target_object], 1.0)
    return SceneLayout(
        object_colours=object_colours,
        object_shapes=object_shapes,
        object_positions=np.stack([xs, ys], axis=1),
        bins=bins,
        target_object=target_object,
        target_bin=target_bin,
        conveyor_velocity=velocity,
        ee_start=(float(ee_start[0]), float(ee_start[1])),
    )


def _spread_positions(rng: np.random.Generator, count: int, periodic: bool) -> np.ndarray:
    """x positions at least MIN_OBJECT_GAP apart (around the belt's wrap-around when periodic).

    Draws sorted gaps directly instead of rejection sampling, so it always succeeds in one pass.
    """
    if periodic:
        # Spare length on the loop of length 1, shared at random among the count gaps.
        spare = 1.0 - count * MIN_OBJECT_GAP
        shares = rng.dirichlet(np.ones(count)) * spare
        xs = rng.random() + np.cumsum(MIN_OBJECT_GAP + shares) - (MIN_OBJECT_GAP + shares[0])
        return np.mod(xs, 1.0)[rng.permutation(count)]
    low, high = STATIC_OBJECT_X_RANGE
    spare = (high - low) - (count - 1) * MIN_OBJECT_GAP
    cuts = np.sort(rng.uniform(0.0, spare, size=count))
    xs = low + cuts + MIN_OBJECT_GAP * np.arange(count)
    return xs[rng.permutation(count)]
