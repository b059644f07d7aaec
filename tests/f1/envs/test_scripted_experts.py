"""Scripted experts: they succeed, their actions are valid, and they need both language and prediction."""

import dataclasses
import math

import numpy as np
import pytest

from f1.envs.episode_rollout import rollout
from f1.envs.scripted_experts import ScriptedExpert, make_expert
from f1.envs.seed_splits import seed_range
from f1.envs.table_env import make_env

COMBINATIONS = [(e, v) for e in ("gripper", "arm") for v in ("static", "dynamic")]
SEEDS = seed_range("val")


def success_rate(env, policy, episodes, first_seed=SEEDS[0]):
    return float(np.mean([rollout(env, policy, seed=first_seed + i)["success"] for i in range(episodes)]))


@pytest.mark.parametrize(("embodiment", "variant"), COMBINATIONS)
def test_expert_succeeds_in_at_least_90_percent_of_40_episodes(embodiment, variant):
    env = make_env(embodiment, variant)
    assert success_rate(env, make_expert(env), 40) >= 0.9


@pytest.mark.parametrize(("embodiment", "variant"), COMBINATIONS)
def test_expert_goes_through_reach_grasp_carry_release(embodiment, variant):
    env = make_env(embodiment, variant)
    expert = make_expert(env)
    obs, info = env.reset(seed=SEEDS[7])
    phases = []
    for _ in range(env.config.max_steps):
        action = expert.act(obs)
        assert env.action_space.contains(action)
        assert action.dtype == np.float32
        obs, _, terminated, truncated, info = env.step(action)
        phases.append("carry" if info["holding"] >= 0 else ("done" if info["success"] else "reach"))
        if terminated or truncated:
            break
    assert info["success"]
    first_carry, last_carry = phases.index("carry"), len(phases) - 1 - phases[::-1].index("carry")
    assert set(phases[:first_carry]) == {"reach"}
    assert first_carry >= 3
    assert set(phases[first_carry : last_carry + 1]) == {"carry"}
    assert last_carry - first_carry >= 3
    assert phases[-1] == "done"


def test_aiming_at_the_current_position_misses_on_the_conveyor():
    env = make_env("gripper", "dynamic")
    aware = success_rate(env, make_expert(env, lead_aware=True), 40)
    unaware = success_rate(env, make_expert(env, lead_aware=False), 40)
    assert aware >= 0.9
    assert unaware <= aware - 0.15
    static_env = make_env("gripper", "static")  # without motion the lead does not matter
    assert success_rate(static_env, make_expert(static_env, lead_aware=False), 20) >= 0.9


def test_fast_conveyors_defeat_the_lead_unaware_expert_but_not_the_lead_aware_one():
    env = make_env("arm", "dynamic")
    aware, unaware = make_expert(env), make_expert(env, lead_aware=False)
    for seed in range(5):
        for policy, expected in ((aware, True), (unaware, False)):
            env.reset(seed=seed, options={"conveyor_velocity": 0.038 if seed % 2 else -0.038})
            for _ in range(env.config.max_steps):
                _, _, terminated, truncated, info = env.step(policy.act())
                if terminated or truncated:
                    break
            assert info["success"] is expected


def test_ignoring_the_instruction_fails_most_episodes():
    """A policy that always takes object 0 to bin 0 only succeeds when the instruction happens to say so."""
    env = make_env("gripper", "static")
    expert = make_expert(env)

    def instruction_blind(_observation):
        return expert.act(dataclasses.replace(env.task_state(), target_object=0, target_bin=0))

    assert success_rate(env, instruction_blind, 40) <= 0.35
    assert success_rate(env, expert, 40) >= 0.9


def test_expert_is_a_policy_function_and_reads_the_bound_environment():
    env = make_env("arm", "static")
    expert = make_expert(env)
    assert isinstance(expert, ScriptedExpert)
    obs, _ = env.reset(seed=0)
    assert np.array_equal(expert(obs), expert.act(env.task_state()))
    assert np.array_equal(expert.act(None), expert.act(obs))


@pytest.mark.slow
@pytest.mark.parametrize(("embodiment", "variant"), COMBINATIONS)
def test_expert_succeeds_in_at_least_95_percent_of_200_held_out_episodes(embodiment, variant):
    env = make_env(embodiment, variant)
    assert success_rate(env, make_expert(env), 200, first_seed=seed_range("test")[0]) >= 0.95


@pytest.mark.parametrize(("embodiment", "variant"), COMBINATIONS)
def test_expert_never_closes_before_it_can_grasp_so_the_missed_grasp_rule_costs_it_nothing(
    embodiment, variant
):
    env = make_env(
        embodiment,
        variant,
        resolution=32,
        num_objects=1,
        num_bins=1,
        grasp_radius=0.075,
        object_size=0.15,
        conveyor_speed_range=(0.06, 0.10),
        missed_grasp_ends_episode=True,
    )
    assert success_rate(env, make_expert(env), 30) == 1.0
    strict = make_env(embodiment, variant, resolution=32, missed_grasp_ends_episode=True)
    assert success_rate(strict, make_expert(strict), 30) == 1.0


@pytest.mark.parametrize("embodiment", ["gripper", "arm"])
def test_without_wrap_around_the_expert_intercepts_a_slow_belt_in_either_direction(embodiment):
    env = make_env(
        embodiment,
        "dynamic",
        resolution=32,
        num_objects=1,
        num_bins=1,
        conveyor_speed_range=(0.005, 0.015),
        conveyor_wraps=False,
    )
    directions = set()
    for i in range(30):
        record = rollout(env, make_expert(env), seed=SEEDS[0] + i)
        directions.add(env.task_state().conveyor_velocity[0] > 0)
        assert record["success"], f"seed {SEEDS[0] + i}"
    assert directions == {True, False}


def test_without_wrap_around_the_expert_aims_only_at_points_on_the_table():
    # A belt too fast to catch from the start: the expert heads for where the object leaves, never beyond.
    env = make_env("gripper", "dynamic", num_objects=1, num_bins=1, conveyor_wraps=False)
    expert = make_expert(env)
    env.reset(seed=SEEDS[0], options={"conveyor_velocity": 0.12})
    state = env.task_state()
    steps, point = expert._interception(state, state.target_object)
    assert steps > 1
    assert 0.0 <= point[0] <= 1.0
    assert point == state.predicted_position(0, math.floor((1.0 - state.object_positions[0, 0]) / 0.12))


DEMO_LIKE = {
    "resolution": 32,
    "num_objects": 1,
    "num_bins": 1,
    "grasp_radius": 0.075,
    "object_size": 0.15,
    "conveyor_speed_range": (0.06, 0.10),
}


@pytest.mark.parametrize("embodiment", ["gripper", "arm"])
def test_an_approaching_expert_heads_for_where_the_object_is_until_it_reaches_the_belt(embodiment):
    env = make_env(embodiment, "dynamic", **DEMO_LIKE)
    approaching = make_expert(env, approach_margin=0.08)
    aiming = make_expert(env, lead_aware=False)
    intercepting = make_expert(env)
    approached = intercepted = 0
    for i in range(10):
        env.reset(seed=SEEDS[0] + i)
        for _ in range(env.config.max_steps):
            state = env.task_state()
            action = approaching.act(state)
            height = state.object_positions[state.target_object, 1]
            if state.held_object < 0 and abs(state.ee_position[1] - height) > 0.08:
                # far from the belt: the static-table reach to the object's current position, grip open
                np.testing.assert_array_equal(action[:-1], aiming.act(state)[:-1])
                assert action[-1] < 0
                approached += 1
            else:
                np.testing.assert_array_equal(action, intercepting.act(state))
                intercepted += 1
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    assert approached > 10
    assert intercepted > 10


@pytest.mark.parametrize("embodiment", ["gripper", "arm"])
def test_an_approaching_expert_still_catches_the_conveyor_object(embodiment):
    env = make_env(embodiment, "dynamic", **DEMO_LIKE)
    assert success_rate(env, make_expert(env, approach_margin=0.08), 30) == 1.0
    static = make_env(embodiment, "static", **DEMO_LIKE)  # nothing moves: the same as intercepting
    assert success_rate(static, make_expert(static, approach_margin=0.08), 10) == 1.0


@pytest.mark.parametrize("margin", [0, -0.1, 1.5, True, "0.1", float("nan")])
def test_approach_margin_must_be_a_distance_in_the_table(margin):
    env = make_env("gripper", "dynamic", resolution=32)
    with pytest.raises(ValueError, match="approach_margin"):
        ScriptedExpert(env, approach_margin=margin)
