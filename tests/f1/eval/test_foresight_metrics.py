"""Foresight numbers: the colour locator, token accuracy, the copy baseline and the summary's keys."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from f1.demo import CAMERA, table_task
from f1.demo.policy import demo_policy_config
from f1.envs import TableTaskConfig, make_env, sample_scene, seed_range
from f1.envs.table_render import TableRenderer
from f1.eval.foresight import (
    ForesightSamples,
    PositionError,
    collect_anchors,
    collect_foresight,
    frame_indices,
    locate_colour,
    measure_foresight,
    object_position_errors,
    policy_anchors,
    token_accuracy,
)
from f1.model import Embodiment, F1Policy

SEEDS = list(seed_range("val")[:4])
TASK = table_task({"resolution": 32, "num_objects": 1, "num_bins": 1}, "gripper", "dynamic")


@pytest.fixture(scope="module")
def policy() -> F1Policy:
    torch.manual_seed(0)
    embodiment = Embodiment(name="gripper", state_dim=3, action_dim=3)
    config = demo_policy_config("f1", 32, (embodiment,))
    return F1Policy(config.with_overrides({"generation": {"complete_foresight": True}}))


@pytest.mark.parametrize(("variant", "resolution"), [("static", 64), ("dynamic", 32)])
def test_locator_finds_every_rendered_object_within_a_pixel(variant, resolution):
    env = make_env("gripper", variant, resolution=resolution)  # 3 objects, 3 bins, every shape
    renderer = env.renderer
    for seed in seed_range("val")[:6]:
        observation, _ = env.reset(seed=seed)  # the gripper starts below the belt: nothing hides an object
        state = env.task_state()
        scene = sample_scene(np.random.default_rng(seed), env.config)  # the draw reset(seed) made
        np.testing.assert_array_equal(scene.object_positions, state.object_positions)
        for index, (colour, shape) in enumerate(zip(scene.object_colours, scene.object_shapes)):
            mask = renderer.masks[shape]
            rows, cols = np.nonzero(mask)
            offset = (np.array([cols.mean(), rows.mean()]) + 0.5 - mask.shape[0] / 2) / resolution
            rgb = renderer.colour_rgb[colour]
            wall = (renderer.background(state.bins) == rgb).all(axis=-1)  # a bin of the object's colour
            found = locate_colour(observation["image"], rgb, exclude=wall, wrap=variant == "dynamic")
            assert found is not None
            dx, dy = np.abs(np.array(found) - offset - state.object_positions[index])
            dx = min(dx, 1 - dx)
            assert math.hypot(dx, dy) <= 1.0 / resolution


@pytest.mark.parametrize("variant", ["static", "dynamic"])
def test_locator_finds_the_named_object_at_the_anchors(variant):
    task = TableTaskConfig(variant=variant, resolution=32)
    anchors = collect_anchors(task, (-2, 0), 2, list(seed_range("val")[:8]))
    errors = object_position_errors(anchors, anchors.future)
    assert errors.found_rate == 1.0
    assert errors.median <= 0.75 / 32  # the renderer rounds the centre to the pixel grid
    assert max(errors.errors) <= 1.5 / 32  # and, near the grasp, the gripper's marker may cover an edge


def test_locator_follows_an_object_across_the_belts_wrap_around():
    renderer = TableRenderer(64, 0.15)
    env = make_env("gripper", "dynamic", resolution=64)
    env.reset(seed=0)
    image = renderer.background(env.task_state().bins)
    rgb = renderer.colour_rgb["green"]
    renderer.stamp(image, renderer.masks["square"], 0.02, 0.6, rgb, wrap=True)
    x, y = locate_colour(image, rgb, wrap=True)
    assert min(abs(x - 0.02), 1 - abs(x - 0.02)) <= 1 / 64
    assert abs(y - 0.6) <= 1 / 64
    unwrapped, _ = locate_colour(image, rgb)
    assert abs(unwrapped - 0.02) > 0.2  # without wrap the halves average to mid-table


def test_locator_reports_not_found_and_ignores_excluded_pixels():
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    red = (220, 40, 40)
    assert locate_colour(image, red) is None
    image[4:6, 4:6] = red
    assert locate_colour(image, red, min_pixels=5) is None
    exclude = np.zeros((16, 16), dtype=bool)
    exclude[4:6, 4:6] = True
    assert locate_colour(image, red, exclude=exclude) is None
    assert locate_colour(image, red) == pytest.approx((5 / 16, 5 / 16))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": np.zeros((4, 4))}, "image: expected an"),
        ({"rgb": (1, 2)}, "rgb: expected 3"),
        ({"min_pixels": 0}, "min_pixels: expected a positive"),
        ({"exclude": np.zeros((3, 3), dtype=bool)}, "exclude: expected bool"),
    ],
)
def test_locator_rejects_bad_inputs_naming_the_argument(kwargs, message):
    arguments = {"image": np.zeros((4, 4, 3), dtype=np.uint8), "rgb": (1, 2, 3), **kwargs}
    with pytest.raises(ValueError, match=message):
        locate_colour(**arguments)


def test_token_accuracy_is_one_for_equal_tokens_and_checks_shapes():
    tokens = [torch.zeros(2, 1, dtype=torch.long), torch.arange(8).reshape(2, 4)]
    assert token_accuracy(tokens, tokens) == (1.0, 1.0)
    assert token_accuracy(tokens, [t + 1 for t in tokens]) == (0.0, 0.0)
    with pytest.raises(ValueError, match=r"predicted\[1\]: expected shape"):
        token_accuracy(tokens, [tokens[0], tokens[1][:, :2]])


def test_copy_baseline_is_perfect_when_nothing_moves(policy):
    anchors = policy_anchors(policy, dataclasses.replace(TASK, variant="static"), SEEDS[:3])
    still = dataclasses.replace(anchors, future=anchors.current)
    samples = measure_foresight(policy, still, CAMERA, "gripper")
    assert samples.token_accuracy_copy == (1.0,) * policy.config.generation.inference_scales
    assert samples.psnr_no_motion == samples.psnr_tokenizer
    assert samples.object_errors["copy"].errors == samples.object_errors["tokenizer"].errors


def test_foresight_numbers_have_every_key_and_are_json_ready(policy):
    samples = collect_foresight(policy, TASK, CAMERA, SEEDS, examples=1, seed=3)
    summary = samples.to_dict()
    json.dumps(summary, allow_nan=False)
    scales = policy.config.generation.inference_scales
    assert len(summary["token_accuracy_imagined_per_scale"]) == scales
    assert summary["token_accuracy_copy_finest"] == summary["token_accuracy_copy_per_scale"][-1]
    for name in ("imagined", "copy", "tokenizer", "real"):
        error = summary[f"object_error_{name}"]
        assert set(error) == {"mean", "median", "found_rate", "found", "not_found"}
        assert error["found"] + error["not_found"] == samples.samples
    assert summary["object_error_real"]["found_rate"] == 1.0
    assert summary["object_error_real"]["mean"] <= 1.0 / TASK.resolution
    assert summary["psnr_no_motion_raw_db"] > 0
    assert "object_error_ratio_imagined_to_copy" in summary
    # the same seed gives the same numbers
    assert collect_foresight(policy, TASK, CAMERA, SEEDS, examples=1, seed=3).to_dict() == summary


def test_anchors_come_from_the_given_seeds_only():
    anchors = collect_anchors(TASK, (-2, 0), 2, SEEDS)
    assert set(anchors.seeds) <= set(SEEDS)
    assert anchors.history.shape[:2] == (len(anchors), 2)
    assert anchors.future.shape == anchors.current.shape == (len(anchors), 32, 32, 3)
    assert all(t >= 2 for t in anchors.steps)


def test_error_summary_counts_not_found_apart_and_ratio_pairs_anchors():
    error = PositionError((0.1, math.nan, 0.3))
    assert error.found == 2
    assert error.found_rate == pytest.approx(2 / 3)
    assert error.mean == pytest.approx(0.2)
    assert error.median == pytest.approx(0.2)
    assert PositionError((math.nan,)).to_dict()["mean"] is None
    samples = ForesightSamples(
        [], 3, 1.0, 2.0, 1.0,
        object_errors={"imagined": error, "copy": PositionError((0.2, 0.1, math.nan))},
    )  # fmt: skip
    assert samples.object_error_ratio == pytest.approx(0.5)  # only the first anchor has both


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"seeds": []}, "seeds: expected a non-empty"),
        ({"seeds": [-1]}, "seeds: expected non-negative"),
        ({"stride": 0}, "stride: expected a positive"),
        ({"history_offsets": (1, 0)}, "history_offsets: expected non-positive"),
    ],
)
def test_anchors_reject_bad_inputs_naming_the_argument(arguments, message):
    with pytest.raises(ValueError, match=message):
        collect_anchors(
            **{"task": TASK, "history_offsets": (-2, 0), "stride": 2, "seeds": SEEDS, **arguments}
        )


def test_measurements_need_a_foreseeing_policy_and_matching_anchors(policy):
    embodiment = Embodiment(name="gripper", state_dim=3, action_dim=3)
    no_gen = F1Policy(demo_policy_config("no_gen", 32, (embodiment,)))
    with pytest.raises(ValueError, match="policy: mode 'no_gen'"):
        collect_foresight(no_gen, TASK, CAMERA, SEEDS)
    anchors = collect_anchors(TASK, (-4, -2, 0), 2, SEEDS[:1])
    with pytest.raises(ValueError, match="anchors: expected 2 history frames"):
        measure_foresight(policy, anchors, CAMERA, "gripper")
    with pytest.raises(ValueError, match="anchors: expected ForesightAnchors"):
        measure_foresight(policy, "anchors", CAMERA, "gripper")


def test_frame_indices_split_the_scales(policy):
    frames = collect_anchors(TASK, (-2, 0), 2, SEEDS[:2]).current
    indices = frame_indices(policy, frames, 3)
    assert [tuple(i.shape) for i in indices] == [(2, 1), (2, 4), (2, 16)]
