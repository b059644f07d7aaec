"""Closed-loop evaluation: batched rollouts, agents, success counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from f1.envs import make_env, seed_range
from f1.eval import ExpertAgent, PolicyAgent, RandomAgent, evaluate, load_agent, observations_to_batch

SEEDS = list(seed_range("test")[:6])


def gripper_static():
    return make_env("gripper", "static", resolution=32)


def test_expert_succeeds_on_every_held_out_episode():
    result = evaluate(ExpertAgent(), lambda: make_env("gripper", "dynamic", resolution=32), SEEDS)
    assert result.successes == result.episodes == len(SEEDS)
    assert result.success_rate == 1.0
    assert result.grasp_rate == 1.0
    assert result.ci95[1] == 1.0
    assert result.ci95[0] < 1.0


def test_lead_unaware_expert_is_no_better_than_the_expert_on_the_conveyor():
    make = lambda: make_env("gripper", "dynamic", resolution=32)  # noqa: E731
    seeds = list(seed_range("test")[:30])
    aware = evaluate(ExpertAgent(), make, seeds)
    unaware = evaluate(ExpertAgent("unaware", lead_aware=False), make, seeds)
    assert unaware.success_rate < aware.success_rate


def test_the_approaching_expert_succeeds_on_the_conveyor_along_another_path():
    make = lambda: make_env("gripper", "dynamic", resolution=32)  # noqa: E731
    seeds = list(seed_range("test")[:10])
    approaching = evaluate(ExpertAgent("approaching", approach_margin=0.08), make, seeds)
    assert approaching.success_rate == 1.0
    env = make()
    observation, _ = env.reset(seed=seeds[0])
    intercepting = ExpertAgent()
    approach = ExpertAgent(approach_margin=0.08)
    intercepting.reset([env], seeds[:1])
    approach.reset([env], seeds[:1])
    assert not np.allclose(intercepting.act([observation]), approach.act([observation]))


def test_the_expert_agent_names_a_bad_approach_margin():
    agent = ExpertAgent(approach_margin=0.0)
    with pytest.raises(ValueError, match="approach_margin"):
        agent.reset([gripper_static()], [0])


@pytest.mark.parametrize("agent_factory", [ExpertAgent, RandomAgent])
def test_results_do_not_depend_on_the_batch_size(agent_factory):
    one_by_one = evaluate(agent_factory(), gripper_static, SEEDS, batch_size=1)
    batched = evaluate(agent_factory(), gripper_static, SEEDS, batch_size=4)
    assert one_by_one.success == batched.success
    assert one_by_one.steps == batched.steps


def test_random_agent_rarely_succeeds_and_runs_to_the_step_limit():
    result = evaluate(RandomAgent(), gripper_static, SEEDS)
    assert result.success_rate <= 0.5
    assert max(result.steps) == make_env("gripper", "static").config.max_steps


class RecordingPolicy:
    """A LeRobot-style policy that moves right with the gripper open and records what it was given."""

    def __init__(self) -> None:
        self.seeds: list[int | None] = []
        self.batches: list[dict] = []

    def reset(self, seed: int | None = None) -> None:
        self.seeds.append(seed)

    def select_action(self, observation: dict) -> torch.Tensor:
        self.batches.append(observation)
        batch = observation["observation.state"].shape[0]
        return torch.tensor([[0.04, 0.0, -1.0]]).expand(batch, -1)


def test_policy_agent_feeds_batched_observations_and_resets_per_batch():
    policy = RecordingPolicy()
    agent = PolicyAgent(policy, "f1", camera="top", embodiment="gripper")
    result = evaluate(agent, gripper_static, SEEDS, batch_size=4)
    assert result.episodes == len(SEEDS)
    assert policy.seeds == [SEEDS[0], SEEDS[4]]
    first = policy.batches[0]
    assert first["observation.images.top"].shape == (4, 3, 32, 32)
    assert first["observation.images.top"].dtype == torch.uint8
    assert first["observation.state"].shape == (4, 3)
    assert first["embodiment"] == "gripper"
    assert len(first["task"]) == 4
    assert all(isinstance(t, str) for t in first["task"])


def test_observations_to_batch_layout():
    env = gripper_static()
    observation, _ = env.reset(seed=1)
    batch = observations_to_batch([observation, observation], "top", "gripper")
    image = batch["observation.images.top"]
    assert image.shape == (2, 3, 32, 32)
    assert torch.equal(image[0].permute(1, 2, 0), torch.from_numpy(observation["image"]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": []}, "seeds"),
        ({"seeds": [1, 1]}, "distinct"),
        ({"seeds": [-1]}, "seeds"),
        ({"seeds": [1], "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, message):
    seeds = kwargs.pop("seeds")
    with pytest.raises(ValueError, match=message):
        evaluate(ExpertAgent(), gripper_static, seeds, **kwargs)


def test_agent_returning_the_wrong_number_of_actions_is_an_error():
    class Broken(RandomAgent):
        def act(self, observations):
            return np.zeros((1, 3), dtype=np.float32)

    with pytest.raises(ValueError, match="actions"):
        evaluate(Broken("broken"), gripper_static, SEEDS[:2], batch_size=2)


def test_load_agent_names_and_bad_paths(tmp_path):
    assert isinstance(load_agent("expert", "arm"), ExpertAgent)
    assert isinstance(load_agent("random", "gripper"), RandomAgent)
    with pytest.raises(ValueError, match="policy"):
        load_agent(str(tmp_path / "missing"), "gripper")


def test_load_agent_reads_a_saved_policy_and_names_a_missing_embodiment(tmp_path):
    from f1.model import Embodiment, F1Policy, preset

    gripper = Embodiment(name="gripper", state_dim=8, action_dim=7)
    F1Policy(preset("tiny", mode="no_gen", embodiments=(gripper,))).save(tmp_path / "policy")
    agent = load_agent(str(tmp_path / "policy"), "gripper")
    assert isinstance(agent, PolicyAgent)
    with pytest.raises(ValueError, match=r"knows \['gripper'\], received 'arm'"):
        load_agent(str(tmp_path / "policy"), "arm")
