"""TableTaskEnv: gymnasium-style contract, determinism, clipping, conveyor, grasp and release rules."""

import math
import re
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from f1.envs.scripted_experts import make_expert
from f1.envs.table_env import TableTaskEnv, make_env
from f1.envs.table_render import eye_in_hand_view
from f1.envs.task_config import TableTaskConfig

COMBINATIONS = [(e, v) for e in ("gripper", "arm") for v in ("static", "dynamic")]
ACTIONS = st.lists(arrays(np.float64, 3, elements=st.floats(-2.0, 2.0)), min_size=1, max_size=25)


def run(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    images, states = [obs["image"]], [obs["state"]]
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(action)
        images.append(obs["image"])
        states.append(obs["state"])
        if terminated or truncated:
            break
    return np.stack(images), np.stack(states)


def move_to(env, point, grip):
    """Step the gripper embodiment in straight moves until it sits on ``point``."""
    expert = make_expert(env)
    for _ in range(100):
        if math.dist(env.embodiment.ee_position, point) < 1e-9:
            return
        env.step(expert.controller.action_toward(point, grip))
    raise AssertionError(f"could not reach {point}")


@pytest.mark.parametrize(("embodiment", "variant"), COMBINATIONS)
def test_reset_and_step_follow_the_gymnasium_contract(embodiment, variant):
    env = make_env(embodiment, variant, resolution=48)
    obs, info = env.reset(seed=3)
    assert set(obs) == {"image", "state", "instruction"}
    assert obs["image"].shape == (48, 48, 3)
    assert obs["image"].dtype == np.uint8
    assert obs["state"].shape == (env.embodiment.state_dim,)
    assert env.state_space.contains(obs["state"])
    assert obs["state"].dtype == np.float32
    assert obs["instruction"] == env.instruction
    assert obs["instruction"].startswith("put the ")
    assert info["success"] is False
    result = env.step(np.zeros(env.action_space.dim))
    assert len(result) == 5
    obs, reward, terminated, truncated, info = result
    assert reward == 0.0
    assert terminated is False
    assert truncated is False
    assert env.image_shape == (48, 48, 3)
    assert env.fps == 10


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(COMBINATIONS), ACTIONS)
def test_episodes_are_reproducible_from_the_seed(seed, combination, actions):
    env_a, env_b = make_env(*combination), make_env(*combination)
    images_a, states_a = run(env_a, seed, actions)
    images_b, states_b = run(env_b, seed, actions)
    assert np.array_equal(images_a, images_b)
    assert np.array_equal(states_a, states_b)
    images_c, _ = run(env_a, seed, actions)  # the same env reset again replays it too
    assert np.array_equal(images_a, images_c)


def test_different_seeds_give_different_scenes():
    env = make_env()
    first_frames = {env.reset(seed=seed)[0]["image"].tobytes() for seed in range(20)}
    assert len(first_frames) == 20


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 1000),
    st.sampled_from(["gripper", "arm"]),
    arrays(np.float64, 3, elements=st.floats(-5, 5)),
)
def test_actions_are_clipped_to_the_action_space(seed, embodiment, action):
    env_raw, env_clipped = make_env(embodiment), make_env(embodiment)
    env_raw.reset(seed=seed)
    env_clipped.reset(seed=seed)
    clipped = env_raw.action_space.clip(action)
    assert env_raw.action_space.contains(clipped)
    obs_raw = env_raw.step(action)[0]
    obs_clipped = env_clipped.step(clipped)[0]
    assert np.array_equal(obs_raw["image"], obs_clipped["image"])
    assert np.array_equal(obs_raw["state"], obs_clipped["state"])


@pytest.mark.parametrize("bad", [np.zeros(2), np.zeros((1, 3)), np.zeros(4)])
def test_wrong_action_shape_names_the_argument_and_both_shapes(bad):
    env = make_env("arm")
    env.reset(seed=0)
    expected = r"action: expected shape \(3,\) \('dq_shoulder', 'dq_elbow', 'grip'\) for embodiment 'arm'"
    with pytest.raises(ValueError, match=expected + rf", received shape {re.escape(str(bad.shape))}"):
        env.step(bad)


def test_non_finite_actions_and_bad_seeds_are_rejected():
    env = make_env()
    with pytest.raises(ValueError, match="seed: expected a non-negative integer"):
        env.reset(seed=-1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action: expected finite values"):
        env.step(np.array([np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"action: expected numbers of shape \(3,\), received str"):
        env.step("left")
    assert env.step(torch.tensor([0.01, 0.0, -1.0]))[4]["success"] is False  # tensors are accepted


def test_stepping_before_reset_or_after_the_end_raises():
    env = make_env(max_steps=10)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(3))
    env.reset(seed=0)
    for step in range(10):
        _, _, terminated, truncated, _ = env.step(np.zeros(3))
        assert truncated == (step == 9)
        assert not terminated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(3))


def test_conveyor_moves_belt_objects_by_the_velocity_and_wraps_them():
    env = make_env(variant="dynamic")
    env.reset(seed=5, options={"conveyor_velocity": -0.03})
    before = env.task_state().object_positions
    env.step(np.zeros(3))
    after = env.task_state().object_positions
    assert np.allclose(np.mod(before[:, 0] - 0.03, 1.0), after[:, 0])
    assert np.array_equal(before[:, 1], after[:, 1])
    for _ in range(40):  # 1.2 table widths: every object crosses the left edge and comes back
        env.step(np.zeros(3))
        xs = env.task_state().object_positions[:, 0]
        assert np.all((xs >= 0.0) & (xs < 1.0))


def test_a_single_frame_does_not_reveal_the_conveyor_direction_but_two_frames_do():
    env = make_env(variant="dynamic")
    first_left = env.reset(seed=9, options={"conveyor_velocity": -0.03})[0]["image"]
    second_left = env.step(np.zeros(3))[0]["image"]
    first_right = env.reset(seed=9, options={"conveyor_velocity": 0.03})[0]["image"]
    second_right = env.step(np.zeros(3))[0]["image"]
    assert np.array_equal(first_left, first_right)
    assert not np.array_equal(second_left, second_right)


def test_conveyor_velocity_option_is_validated():
    with pytest.raises(ValueError, match="'conveyor_velocity' needs the 'dynamic' variant"):
        make_env(variant="static").reset(seed=0, options={"conveyor_velocity": 0.01})
    with pytest.raises(ValueError, match=r"options\['conveyor_velocity'\]: expected a number"):
        make_env(variant="dynamic").reset(seed=0, options={"conveyor_velocity": 0.5})
    with pytest.raises(ValueError, match=r"options: unknown keys \['speed'\]"):
        make_env(variant="dynamic").reset(seed=0, options={"speed": 0.01})


def test_static_objects_never_move_unless_carried():
    env = make_env(variant="static")
    env.reset(seed=1)
    before = env.task_state().object_positions
    for _ in range(15):
        env.step(np.array([0.0, -0.04, -1.0]))
    assert np.array_equal(before, env.task_state().object_positions)


def test_closing_outside_the_grasp_radius_grasps_nothing():
    env = make_env(grasp_radius=0.03)
    env.reset(seed=2)
    state = env.task_state()
    x, y = state.object_positions[state.target_object]
    move_to(env, (x + 0.045, y), grip=-1.0)
    info = env.step(np.array([0.0, 0.0, 1.0]))[4]
    assert info["holding"] == -1
    assert env.embodiment.grip_closed


def test_releasing_the_named_object_in_the_named_bin_succeeds():
    env = make_env()
    env.reset(seed=4)
    state = env.task_state()
    move_to(env, tuple(state.object_positions[state.target_object]), grip=-1.0)
    info = env.step(np.array([0.0, 0.0, 1.0]))[4]
    assert info["holding"] == state.target_object
    assert info["target_grasped"]
    move_to(env, state.bins[state.target_bin].centre, grip=1.0)
    assert env.task_state().object_positions[state.target_object] == pytest.approx(env.embodiment.ee_position)
    _, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0, -1.0]))
    assert info["success"]
    assert reward == 1.0
    assert terminated
    assert not truncated


def test_releasing_the_named_object_in_another_bin_fails_and_ends_the_episode():
    env = make_env()
    env.reset(seed=4)
    state = env.task_state()
    move_to(env, tuple(state.object_positions[state.target_object]), grip=-1.0)
    env.step(np.array([0.0, 0.0, 1.0]))
    wrong_bin = (state.target_bin + 1) % len(state.bins)
    move_to(env, state.bins[wrong_bin].centre, grip=1.0)
    _, reward, terminated, _, info = env.step(np.array([0.0, 0.0, -1.0]))
    assert terminated
    assert not info["success"]
    assert reward == 0.0


def test_releasing_another_object_in_the_named_bin_does_not_succeed():
    env = make_env()
    env.reset(seed=4)
    state = env.task_state()
    other = (state.target_object + 1) % len(state.object_positions)
    move_to(env, tuple(state.object_positions[other]), grip=-1.0)
    assert env.step(np.array([0.0, 0.0, 1.0]))[4]["holding"] == other
    move_to(env, state.bins[state.target_bin].centre, grip=1.0)
    _, reward, terminated, _, info = env.step(np.array([0.0, 0.0, -1.0]))
    assert not terminated
    assert not info["success"]
    assert reward == 0.0
    assert info["holding"] == -1


def test_the_gripper_state_is_visible_in_the_image_and_the_state():
    env = make_env()
    open_obs = env.reset(seed=0)[0]
    closed_obs = env.step(np.array([0.0, 0.0, 1.0]))[0]
    assert open_obs["state"][2] == 0.0
    assert closed_obs["state"][2] == 1.0
    assert not np.array_equal(open_obs["image"], closed_obs["image"])


def test_arm_links_are_drawn():
    gripper_env, arm_env = make_env("gripper"), make_env("arm")
    gripper_image = gripper_env.reset(seed=0)[0]["image"]
    arm_image = arm_env.reset(seed=0)[0]["image"]
    assert (arm_image != gripper_image).any(axis=2).sum() > 10


def test_env_accepts_a_config_object():
    env = TableTaskEnv(TableTaskConfig(embodiment="arm", resolution=128))
    assert env.reset(seed=0)[0]["image"].shape == (128, 128, 3)


@pytest.mark.parametrize(("embodiment", "variant"), COMBINATIONS)
def test_more_than_2000_steps_per_cpu_second_at_64px_rendering_included(embodiment, variant):
    """CPU time of this process, not wall time, so other load on a shared machine does not count."""
    env = make_env(embodiment, variant, resolution=64)
    rng = np.random.default_rng(0)
    actions = [env.action_space.sample(rng) for _ in range(1500)]
    env.reset(seed=0)
    start = time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    assert len(actions) / (time.process_time() - start) > 2000


@pytest.mark.parametrize(("embodiment", "variant"), COMBINATIONS)
def test_missed_grasp_rule_off_by_default_and_unchanged_when_nothing_misses(embodiment, variant):
    # A fixed action sequence that never closes: the rule cannot act, so frames, rewards and infos match.
    actions = np.random.default_rng(3).uniform(-1, 1, size=(30, 3))
    actions[:, 2] = -1.0
    assert TableTaskConfig().missed_grasp_ends_episode is False
    outcomes = []
    for rule in (False, True):
        env = make_env(embodiment, variant, resolution=32, missed_grasp_ends_episode=rule)
        obs, _ = env.reset(seed=5)
        frames, steps = [obs["image"]], []
        for action in actions:
            obs, reward, terminated, truncated, info = env.step(action)
            frames.append(obs["image"])
            steps.append((reward, terminated, truncated, info))
        outcomes.append((np.stack(frames), steps))
    assert np.array_equal(outcomes[0][0], outcomes[1][0])
    assert outcomes[0][1] == outcomes[1][1]


def test_default_rule_leaves_a_close_on_nothing_to_be_reopened():
    env = make_env(resolution=32)
    env.reset(seed=2)
    _, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0, 1.0]))
    assert (reward, terminated, truncated, info["holding"]) == (0.0, False, False, -1)
    assert "failure" not in info
    assert not env.step(np.array([0.0, 0.0, -1.0]))[2]


@pytest.mark.parametrize("embodiment", ["gripper", "arm"])
def test_a_close_on_nothing_ends_the_episode_under_the_missed_grasp_rule(embodiment):
    env = make_env(embodiment, "dynamic", resolution=32, missed_grasp_ends_episode=True)
    env.reset(seed=2)
    env.step(np.array([0.0, 0.0, -1.0]))
    _, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0, 1.0]))
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert info["failure"] == "missed_grasp"
    assert not info["success"]
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(np.array([0.0, 0.0, -1.0]))


def test_grasping_another_object_ends_the_episode_under_the_missed_grasp_rule():
    env = make_env(missed_grasp_ends_episode=True)
    env.reset(seed=4)
    state = env.task_state()
    other = (state.target_object + 1) % len(state.object_positions)
    move_to(env, tuple(state.object_positions[other]), grip=-1.0)
    _, reward, terminated, _, info = env.step(np.array([0.0, 0.0, 1.0]))
    assert (info["holding"], reward, terminated, info["failure"]) == (other, 0.0, True, "missed_grasp")


def test_grasping_the_named_object_goes_on_under_the_missed_grasp_rule():
    env = make_env(missed_grasp_ends_episode=True)
    env.reset(seed=4)
    state = env.task_state()
    move_to(env, tuple(state.object_positions[state.target_object]), grip=-1.0)
    _, _, terminated, _, info = env.step(np.array([0.0, 0.0, 1.0]))
    assert not terminated
    assert info["target_grasped"]
    assert "failure" not in info
    # Closing again while closed is no new grasp: it keeps holding.
    assert not env.step(np.array([0.0, 0.0, 1.0]))[2]


@pytest.mark.parametrize("embodiment", ["gripper", "arm"])
def test_the_eye_in_hand_view_moves_with_the_end_effector_and_changes_nothing_else(embodiment):
    table = TableTaskEnv(TableTaskConfig(embodiment=embodiment, variant="dynamic"))
    eye = TableTaskEnv(TableTaskConfig(embodiment=embodiment, variant="dynamic", view="eye_in_hand"))
    obs_table, _ = table.reset(seed=3)
    obs_eye, _ = eye.reset(seed=3)
    expert = make_expert(table)
    for _ in range(8):
        action = expert.act(obs_table)
        assert np.array_equal(obs_table["state"], obs_eye["state"])
        ex, ey = table.embodiment.ee_position
        assert np.array_equal(obs_eye["image"], eye_in_hand_view(obs_table["image"], ex, ey))
        obs_table, *_ = table.step(action)
        obs_eye, *_ = eye.step(action)
    with pytest.raises(ValueError, match=r"view: expected one of \['table', 'eye_in_hand'\]"):
        TableTaskConfig(view="wrist")


@pytest.mark.parametrize("embodiment", ["gripper", "arm"])
def test_the_grasp_sensor_tells_a_held_object_from_a_gripper_closed_on_nothing(embodiment):
    plain = TableTaskEnv(TableTaskConfig(embodiment=embodiment))
    sensed = TableTaskEnv(TableTaskConfig(embodiment=embodiment, grasp_sensor=True))
    assert sensed.state_space.names == (*plain.state_space.names, "holding")
    assert sensed.state_space.dim == plain.state_space.dim + 1
    obs, _ = sensed.reset(seed=0)
    assert obs["state"].shape == (sensed.state_space.dim,)
    assert obs["state"].dtype == np.float32
    assert obs["state"][-1] == 0.0
    # closed on nothing (seed 0 starts away from the object): the grip entry says closed, the sensor empty
    obs, _, _, _, info = sensed.step(np.array([0.0, 0.0, 1.0], dtype=np.float32))
    assert info["holding"] == -1
    assert obs["state"][-2] == 1.0
    assert obs["state"][-1] == 0.0
    # the expert's episode: the sensor is 1 exactly on the frames after a grasp until the release
    obs, _ = sensed.reset(seed=1)
    expert = make_expert(sensed)
    seen = []
    for _ in range(60):
        obs, _, terminated, truncated, info = sensed.step(expert.act(obs))
        assert obs["state"][-1] == float(info["holding"] >= 0)
        seen.append(obs["state"][-1])
        if terminated or truncated:
            break
    assert max(seen) == 1.0
    assert seen[-1] == 0.0
    assert info["success"]
    with pytest.raises(ValueError, match="grasp_sensor: expected a bool"):
        TableTaskConfig(grasp_sensor=1)


@pytest.mark.parametrize("embodiment", ["gripper", "arm"])
def test_the_belt_sensor_says_whether_the_belt_runs_and_nothing_of_its_speed_or_direction(embodiment):
    plain = TableTaskEnv(TableTaskConfig(embodiment=embodiment, variant="dynamic", grasp_sensor=True))
    config = TableTaskConfig(embodiment=embodiment, variant="dynamic", grasp_sensor=True, belt_sensor=True)
    sensed = TableTaskEnv(config)
    assert sensed.state_space.names == (*plain.state_space.names, "belt_running")
    assert sensed.state_space.low[-1] == 0.0
    assert sensed.state_space.high[-1] == 1.0
    for velocity in (-0.09, -0.02, 0.03, 0.1):  # every speed and direction reads the same
        obs, _ = sensed.reset(seed=2, options={"conveyor_velocity": velocity})
        reference, _ = plain.reset(seed=2, options={"conveyor_velocity": velocity})
        assert obs["state"].shape == (sensed.state_space.dim,)
        assert obs["state"].dtype == np.float32
        assert obs["state"][-1] == 1.0
        np.testing.assert_array_equal(obs["state"][:-1], reference["state"])
        obs, _, _, _, _ = sensed.step(np.zeros(3, dtype=np.float32))
        assert obs["state"][-1] == 1.0
    obs, _ = sensed.reset(seed=2, options={"conveyor_velocity": 0.0})
    assert obs["state"][-1] == 0.0
    static = TableTaskEnv(TableTaskConfig(embodiment=embodiment, belt_sensor=True))
    obs, _ = static.reset(seed=2)
    assert static.state_space.names[-1] == "belt_running"
    assert obs["state"][-1] == 0.0
    with pytest.raises(ValueError, match="belt_sensor: expected a bool, received 1"):
        TableTaskConfig(belt_sensor=1)


def no_wrap_env(**overrides):
    fields = {"resolution": 32, "num_objects": 1, "num_bins": 1, "conveyor_wraps": False, **overrides}
    return make_env(variant="dynamic", **fields)


def test_without_wrap_around_losing_the_named_object_ends_the_episode_as_a_failure():
    env = no_wrap_env()
    env.reset(seed=3, options={"conveyor_velocity": 0.1})
    x = env.task_state().object_positions[0, 0]
    steps_on_table = math.floor((1.0 - x) / 0.1)  # steps after which its centre is still on the table
    for _ in range(steps_on_table):
        _, _, terminated, truncated, info = env.step(np.zeros(3))
        assert not terminated
        assert not truncated
        assert "failure" not in info
    _, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0, 1.0]))
    assert (reward, terminated, truncated, info["failure"], info["holding"]) == (
        0.0,
        True,
        False,
        "object_lost",
        -1,
    )
    assert env.task_state().object_lost.tolist() == [True]


def test_a_lost_object_is_neither_drawn_nor_graspable_and_another_one_falling_off_ends_nothing():
    env = make_env(variant="dynamic", resolution=32, num_objects=2, num_bins=1, conveyor_wraps=False)
    env.reset(seed=1, options={"conveyor_velocity": -0.1})
    state = env.task_state()
    other = 1 - state.target_object
    if state.object_positions[other, 0] > state.object_positions[state.target_object, 0]:
        env.reset(seed=2, options={"conveyor_velocity": -0.1})  # a scene whose other object leaves first
        state = env.task_state()
        other = 1 - state.target_object
    assert state.object_positions[other, 0] < state.object_positions[state.target_object, 0]
    while not env.task_state().object_lost[other]:
        _, _, terminated, _, info = env.step(np.zeros(3))
        assert not terminated
    assert "failure" not in info
    colour = env.renderer.colour_rgb
    image = env.render()
    assert np.all(image == colour[env._scene.object_colours[state.target_object]], axis=-1).any()
    assert not np.all(image == colour[env._scene.object_colours[other]], axis=-1).any()
    # Closing right where it left grasps nothing: it is off the table.
    lost_at = env.task_state().object_positions[other]
    assert env._nearest_object_within(0.0, float(lost_at[1]), 0.1) == -1


def test_without_wrap_around_an_object_at_the_edge_is_clipped_not_drawn_at_the_other_edge():
    images = {}
    for wraps in (True, False):
        env = make_env(
            variant="dynamic", resolution=32, num_objects=1, num_bins=1, max_steps=200, conveyor_wraps=wraps
        )
        env.reset(seed=3, options={"conveyor_velocity": 0.01})
        while env.task_state().object_positions[0, 0] < 0.975:  # its centre on the table, its side beyond
            env.step(np.zeros(3))
        images[wraps] = env.render()
    rgb = env.renderer.colour_rgb[env._scene.object_colours[0]]

    def left_edge(image):
        return np.all(image[:, :2] == rgb, axis=-1).any()

    def right_edge(image):
        return np.all(image[:, -2:] == rgb, axis=-1).any()

    assert left_edge(images[True])
    assert right_edge(images[True])
    assert not left_edge(images[False])
    assert right_edge(images[False])


def test_the_static_variant_ignores_wrap_around():
    frames = [
        run(make_env(resolution=32, conveyor_wraps=wraps), 7, [np.full(3, 0.5)] * 5)
        for wraps in (True, False)
    ]
    assert all(np.array_equal(a, b) for a, b in zip(frames[0], frames[1]))
