"""Behaviour clones on privileged true state: inputs, training, the velocity-free features, evaluation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from f1.envs import TableTaskConfig, TableTaskEnv, make_env, make_expert, seed_range
from f1.eval import StateClone, StateCloneAgent, evaluate, state_features, train_state_clone

TINY = TableTaskConfig(
    embodiment="gripper",
    variant="dynamic",
    resolution=32,
    num_objects=1,
    num_bins=1,
    grasp_radius=0.075,
    object_size=0.15,
    conveyor_speed_range=(0.06, 0.10),
)


@pytest.fixture(scope="module")
def tiny_clone() -> StateClone:
    torch.set_num_threads(1)
    return train_state_clone(TINY, with_velocity=False, episodes=6, steps=60, batch_size=64, seed=3)


def test_training_lowers_the_loss_and_records_what_it_did(tiny_clone):
    record = tiny_clone.training_record
    assert record is not None
    assert record.episodes == 6
    assert len(record.losses) == 60
    assert np.mean(record.losses[-10:]) < 0.7 * np.mean(record.losses[:10])
    assert record.samples > 6


def test_training_is_reproducible_from_the_seed(tiny_clone):
    again = train_state_clone(TINY, with_velocity=False, episodes=6, steps=60, batch_size=64, seed=3)
    assert again.training_record.losses == tiny_clone.training_record.losses


def test_features_without_velocity_ignore_the_belt_velocity():
    env = make_env("gripper", "dynamic", resolution=32, num_objects=1, num_bins=1)
    obs, _ = env.reset(seed=5)
    state = env.task_state()
    reversed_belt = dataclasses.replace(state, conveyor_velocity=(-state.conveyor_velocity[0], 0.0))
    still_belt = dataclasses.replace(state, conveyor_velocity=(0.0, 0.0))
    without = state_features(obs["state"], state, with_velocity=False)
    assert np.array_equal(without, state_features(obs["state"], reversed_belt, with_velocity=False))
    assert np.array_equal(without, state_features(obs["state"], still_belt, with_velocity=False))
    with_velocity = state_features(obs["state"], state, with_velocity=True)
    assert with_velocity.shape == (without.shape[0] + 2,)
    assert not np.array_equal(with_velocity, state_features(obs["state"], reversed_belt, with_velocity=True))


def test_agent_runs_through_evaluate(tiny_clone):
    seeds = list(seed_range("val")[:2])
    agent = StateCloneAgent(tiny_clone)
    result = evaluate(agent, lambda: TableTaskEnv(TINY), seeds)
    assert agent.name == "state_clone_no_velocity"
    assert result.episodes == 2
    assert len(result.steps) == 2
    assert all(1 <= steps <= TINY.max_steps for steps in result.steps)


def test_agent_refuses_another_embodiment(tiny_clone):
    agent = StateCloneAgent(tiny_clone)
    with pytest.raises(ValueError, match="envs: expected 'gripper'"):
        agent.reset([make_env("arm", "dynamic", resolution=32)], [0])
    with pytest.raises(ValueError, match="observations: expected 0"):
        agent.act([make_env("gripper", "static", resolution=32).reset(seed=0)[0]])


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("with_velocity", 1),
        ("episodes", 0),
        ("episodes", 2.5),
        ("steps", 0),
        ("steps", True),
        ("seed", -1),
        ("perturbation", 1.0),
        ("perturbation", "0.1"),
        ("batch_size", 0),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("hidden", 0),
        ("progress", "yes"),
        ("perturb_grip", 0),
        ("approach_margin", 0.0),
        ("approach_margin", 1.5),
    ],
)
def test_bad_training_arguments_are_named(argument, value):
    arguments = {"with_velocity": False, "episodes": 1, "steps": 1, argument: value}
    with pytest.raises(ValueError, match=rf"^{argument}: expected"):
        train_state_clone(TINY, **arguments)


def test_the_clone_learns_from_the_approaching_expert_when_told_to():
    def clone(margin):
        return train_state_clone(TINY, with_velocity=False, episodes=4, steps=1, approach_margin=margin)

    # the approaching expert's demonstrations visit other states: the features' statistics differ
    assert not torch.allclose(clone(None).feature_mean, clone(0.08).feature_mean)


@pytest.mark.parametrize("task", ["gripper", None, lambda: "not an env"])
def test_bad_task_is_named(task):
    with pytest.raises(ValueError, match=r"^task: expected"):
        train_state_clone(task, with_velocity=False, episodes=1, steps=1)


def test_bad_agent_arguments_are_named(tiny_clone):
    with pytest.raises(ValueError, match=r"^clone: expected a StateClone"):
        StateCloneAgent(object())
    with pytest.raises(ValueError, match=r"^name: expected"):
        StateCloneAgent(tiny_clone, name="")


class _LoggingEnv(TableTaskEnv):
    """Records, per step, the expert's grip command there and the grip command executed."""

    def __init__(self, config: TableTaskConfig) -> None:
        super().__init__(config)
        self.expert = make_expert(self)
        self.grips: list[tuple[float, float]] = []

    def step(self, action):
        self.grips.append((float(self.expert.act()[-1]), float(np.asarray(action)[-1])))
        return super().step(action)


@pytest.mark.parametrize("perturb_grip", [True, False])
def test_dart_keeps_the_experts_grip_exactly_when_told_to(perturb_grip):
    env = _LoggingEnv(dataclasses.replace(TINY, missed_grasp_ends_episode=True))
    train_state_clone(
        lambda: env, with_velocity=False, episodes=4, steps=1, perturbation=0.5, perturb_grip=perturb_grip
    )
    assert len(env.grips) > 4  # at least one step per demonstration, more before a random close
    kept = [np.sign(expert) == np.sign(executed) for expert, executed in env.grips]
    assert all(kept) is (not perturb_grip)
