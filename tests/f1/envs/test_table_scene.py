"""Scene sampling: distinct colours, separated objects, instructions that name the target."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from f1.envs.table_scene import (
    BIN_SLOTS_X,
    COLOURS,
    MIN_OBJECT_GAP,
    NO_WRAP_START_X,
    SHAPES,
    STATIC_OBJECT_X_RANGE,
    Bin,
    all_instructions,
    format_instruction,
    is_on_belt,
    sample_scene,
)
from f1.envs.task_config import TableTaskConfig

SEEDS = st.integers(0, 2**32 - 1)


@settings(max_examples=50, deadline=None)
@given(SEEDS, st.sampled_from(["static", "dynamic"]), st.integers(1, 4), st.integers(1, 3))
def test_scenes_have_distinct_colours_separated_objects_on_the_belt(seed, variant, num_objects, num_bins):
    config = TableTaskConfig(variant=variant, num_objects=num_objects, num_bins=num_bins)
    scene = sample_scene(np.random.default_rng(seed), config)
    assert len(set(scene.object_colours)) == num_objects
    assert len({b.colour for b in scene.bins}) == num_bins
    assert len({b.centre for b in scene.bins}) == num_bins
    assert all(b.centre[0] in BIN_SLOTS_X for b in scene.bins)
    assert set(scene.object_shapes) <= set(SHAPES)
    assert scene.object_positions.shape == (num_objects, 2)
    assert all(is_on_belt(y) for y in scene.object_positions[:, 1])
    xs = scene.object_positions[:, 0]
    for i in range(num_objects):
        for j in range(i + 1, num_objects):
            gap = abs(xs[i] - xs[j])
            if variant == "dynamic":  # the belt loops, so distance wraps around
                gap = min(gap, 1.0 - gap)
            assert gap >= MIN_OBJECT_GAP - 1e-9
    if variant == "static":
        assert np.all((xs >= STATIC_OBJECT_X_RANGE[0] - 1e-9) & (xs <= STATIC_OBJECT_X_RANGE[1] + 1e-9))
    assert 0 <= scene.target_object < num_objects
    assert 0 <= scene.target_bin < num_bins


@settings(max_examples=30, deadline=None)
@given(SEEDS)
def test_instruction_names_the_target_objects_colour_and_shape_and_the_target_bin(seed):
    scene = sample_scene(np.random.default_rng(seed), TableTaskConfig())
    colour = scene.object_colours[scene.target_object]
    shape = scene.object_shapes[scene.target_object]
    bin_colour = scene.bins[scene.target_bin].colour
    assert scene.instruction == f"put the {colour} {shape} in the {bin_colour} bin"


def test_conveyor_speed_and_direction_are_drawn_per_episode():
    config = TableTaskConfig(variant="dynamic", conveyor_speed_range=(0.015, 0.035))
    velocities = [sample_scene(np.random.default_rng(seed), config).conveyor_velocity for seed in range(200)]
    vx = np.array([v[0] for v in velocities])
    assert np.all((np.abs(vx) >= 0.015) & (np.abs(vx) <= 0.035))
    assert all(v[1] == 0.0 for v in velocities)
    assert 60 < np.sum(vx > 0) < 140  # both directions, roughly balanced
    assert len(np.unique(np.round(np.abs(vx), 6))) > 150


def test_static_scenes_do_not_move():
    for seed in range(20):
        assert sample_scene(np.random.default_rng(seed), TableTaskConfig()).conveyor_velocity == (0.0, 0.0)


def test_targets_cover_every_object_and_bin():
    scenes = [sample_scene(np.random.default_rng(seed), TableTaskConfig()) for seed in range(200)]
    assert {s.target_object for s in scenes} == {0, 1, 2}
    assert {s.target_bin for s in scenes} == {0, 1, 2}
    assert len({s.instruction for s in scenes}) > 50


def test_bin_contains_its_interior_and_border_only():
    bin_ = Bin("red", (0.5, 0.2), (0.1, 0.05))
    assert bin_.contains(0.5, 0.2)
    assert bin_.contains(0.6, 0.25)
    assert not bin_.contains(0.61, 0.2)
    assert not bin_.contains(0.5, 0.26)


def test_format_instruction_and_palette():
    assert format_instruction("red", "square", "blue") == "put the red square in the blue bin"
    assert len(COLOURS) >= 4
    assert len(set(COLOURS.values())) == len(COLOURS)


@pytest.mark.parametrize("y", [0.3, 0.9])
def test_points_off_the_band_are_not_on_the_belt(y):
    assert not is_on_belt(y)


@settings(max_examples=30, deadline=None)
@given(SEEDS, st.integers(1, 4), st.integers(1, 3))
def test_every_scene_instruction_is_one_of_all_instructions(seed, num_objects, num_bins):
    everything = all_instructions()
    assert len(everything) == len(set(everything)) == 6 * 3 * 6
    config = TableTaskConfig(num_objects=num_objects, num_bins=num_bins)
    assert sample_scene(np.random.default_rng(seed), config).instruction in everything


def test_without_wrap_around_only_the_start_x_changes_and_the_named_object_starts_in_the_window():
    for seed in range(50):
        loop = sample_scene(np.random.default_rng(seed), TableTaskConfig(variant="dynamic", num_objects=3))
        line = sample_scene(
            np.random.default_rng(seed),
            TableTaskConfig(variant="dynamic", num_objects=3, conveyor_wraps=False),
        )
        for field in (
            "object_colours",
            "object_shapes",
            "bins",
            "target_object",
            "conveyor_velocity",
            "ee_start",
        ):
            assert getattr(loop, field) == getattr(line, field)
        assert np.array_equal(loop.object_positions[:, 1], line.object_positions[:, 1])
        low, high = NO_WRAP_START_X
        assert low <= line.object_positions[line.target_object, 0] <= high
        # The others keep their gaps around the loop.
        xs = np.sort(line.object_positions[:, 0])
        gaps = np.diff(np.concatenate([xs, xs[:1] + 1.0]))
        assert gaps.min() >= MIN_OBJECT_GAP - 1e-9


def test_without_wrap_around_the_start_x_tells_nothing_about_the_direction():
    # Both directions equally likely in every quarter of the start window: 4,000 scenes, 1,000 per
    # quarter; a binomial(1000, 0.5) share lies within 0.5 +- 0.05 with probability above 0.998.
    config = TableTaskConfig(variant="dynamic", num_objects=1, conveyor_wraps=False)
    starts, rightward = [], []
    for seed in range(4000):
        scene = sample_scene(np.random.default_rng(seed), config)
        starts.append(scene.object_positions[0, 0])
        rightward.append(scene.conveyor_velocity[0] > 0)
    low, high = NO_WRAP_START_X
    quarter = np.minimum(((np.array(starts) - low) / (high - low) * 4).astype(int), 3)
    for q in range(4):
        share = np.mean(np.array(rightward)[quarter == q])
        assert abs(share - 0.5) < 0.05, (q, share)
