"""Evaluation in a gymnasium environment through a declared adapter (Python API): lockstep episodes,
held-out seeds, success signals, baselines, and the errors for what does not fit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")
sys.path.insert(0, str(Path(__file__).parent))
from reach2d import ScriptedReachPolicy, make_reach_env, tiny_reach_policy

from f1.envs import make_env, seed_range, split_of_seed
from f1.envs.gymnasium_env import TableTaskGymEnv
from f1.errors import ConfigError, InputError
from f1.eval import (
    GymAdapter,
    MeanActionAgent,
    PolicyAgent,
    RandomAgent,
    evaluate,
    held_out_seeds,
    load_env_factory,
)

ADAPTER = GymAdapter(cameras={"front": "pixels"}, state="agent_pos", instruction="reach the red dot")
TABLE_ADAPTER = GymAdapter(cameras={"top": "image"}, state="state", instruction_key="instruction")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def policy():
    return tiny_reach_policy()


def test_scripted_policy_succeeds_in_every_episode_and_episodes_end_at_success():
    agent = PolicyAgent(ScriptedReachPolicy(), "scripted", camera="front", embodiment="reach2d")
    adapter = ADAPTER.with_overrides(state="to_target")
    result = evaluate(agent, make_reach_env, 6, adapter=adapter, batch_size=3)
    assert result.successes == result.episodes == 6
    assert result.ci95[1] == 1.0
    assert result.ci95[0] < 1.0
    assert max(result.steps) < 8  # ended at the first success, before the step limit


def test_f1_policy_runs_closed_loop_on_held_out_seeds_in_lockstep(policy):
    calls = []
    original = policy.select_action

    def counting(observation):
        calls.append(observation["observation.images.front"].shape)
        return original(observation)

    policy.select_action = counting
    try:
        result = evaluate(policy, make_reach_env, 4, adapter=ADAPTER, batch_size=4)
    finally:
        del policy.select_action
    assert result.policy == "no_gen"
    assert list(result.seeds) == held_out_seeds(4) == list(seed_range("test")[:4])
    assert all(s <= 8 for s in result.steps)
    assert calls[0] == (4, 3, 32, 32)  # one policy call for the 4 episodes, HWC -> (3, H, W)
    assert len(calls) == max(result.steps)


def test_default_seeds_are_held_out_not_training_seeds():
    seeds = held_out_seeds(3)
    assert {split_of_seed(s) for s in seeds} == {"test"}
    assert not set(seeds) & set(seed_range("train")[:10])


@pytest.mark.parametrize("agent_factory", [RandomAgent, lambda: MeanActionAgent([0.1, -0.1])])
def test_baseline_results_do_not_depend_on_the_batch_size(agent_factory):
    one = evaluate(agent_factory(), make_reach_env, 5, adapter=ADAPTER, batch_size=1)
    batched = evaluate(agent_factory(), make_reach_env, 5, adapter=ADAPTER, batch_size=5)
    assert one.success == batched.success
    assert one.steps == batched.steps


def test_table_task_as_a_gymnasium_env_matches_the_native_table_task():
    seeds = list(seed_range("test")[:4])
    native = evaluate(RandomAgent(), lambda: make_env("gripper", "static", resolution=32), seeds)
    through_gym = evaluate(
        RandomAgent(), lambda: TableTaskGymEnv("gripper", "static", 32), seeds, adapter=TABLE_ADAPTER
    )
    assert native.success == through_gym.success
    assert native.steps == through_gym.steps


def test_f1_policy_runs_on_the_table_task_through_the_same_path():
    from f1.model import Embodiment, F1Policy, preset

    gripper = Embodiment(name="gripper", state_dim=3, action_dim=3)
    config = preset(
        "tiny", mode="no_gen", cameras=("top",), vision={"image_size": 32}, embodiments=(gripper,)
    )
    policy = F1Policy(config).eval()
    adapter = TABLE_ADAPTER.with_overrides(max_steps=6)
    result = evaluate(policy, lambda: TableTaskGymEnv("gripper", "static", 32), 2, adapter=adapter)
    assert result.episodes == 2
    assert max(result.steps) <= 6
    native = evaluate(policy, lambda: make_env("gripper", "static", resolution=32, max_steps=10), 2)
    assert native.episodes == 2


def test_success_from_a_predicate_or_a_reward_threshold():
    never = evaluate(RandomAgent(), make_reach_env, 3, adapter=ADAPTER, success=lambda obs, r, info: False)
    assert never.successes == 0
    assert max(never.steps) <= 8  # the environment's own termination still ends an episode
    no_info = lambda: make_reach_env(report_success=False)  # noqa: E731
    by_reward = evaluate(RandomAgent(), no_info, 6, adapter=ADAPTER.with_overrides(success_reward=1.0))
    by_key = evaluate(RandomAgent(), make_reach_env, 6, adapter=ADAPTER)
    assert by_reward.success == by_key.success


def test_mean_action_agent_reads_a_stats_file(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"action": {"mean": [0.2, 0.0], "std": [1.0, 1.0]}}))
    agent = MeanActionAgent.from_stats(path)
    np.testing.assert_allclose(agent.mean, [0.2, 0.0])
    assert evaluate(agent, make_reach_env, 2, adapter=ADAPTER).episodes == 2


def test_adapter_reads_yaml_and_json_files(tmp_path):
    (tmp_path / "a.yaml").write_text("cameras: {front: pixels}\nstate: agent_pos\nmax_steps: 5\n")
    (tmp_path / "a.json").write_text(
        json.dumps({"cameras": {"front": "pixels"}, "state": "agent_pos", "max_steps": 5})
    )
    assert GymAdapter.from_file(tmp_path / "a.yaml") == GymAdapter.from_file(tmp_path / "a.json")
    assert GymAdapter.from_dict(ADAPTER.to_dict()) == ADAPTER


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"camera": {"front": "pixels"}}, r"unknown keys \['camera'\]"),
        ({"cameras": ["pixels"]}, "adapter.cameras: expected a mapping"),
        ({"instruction": "a", "instruction_key": "b"}, "not both"),
        ({"image_layout": "HW"}, r"image_layout: expected one of \['HWC', 'CHW'\], received 'HW'"),
        ({"max_steps": 0}, "max_steps: expected a positive integer, received 0"),
        ({"clip_actions": "yes"}, "clip_actions: expected true or false"),
        ({"success_reward": "high"}, "success_reward: expected a finite number"),
    ],
)
def test_bad_adapters_are_refused_naming_the_field(raw, message):
    with pytest.raises(ConfigError, match=message):
        GymAdapter.from_dict(raw)


def test_missing_adapter_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        GymAdapter.from_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("adapter", "env_kwargs", "state_dim", "error", "message"),
    [
        (
            ADAPTER.with_overrides(cameras={"front": "rgb"}),
            {},
            2,
            InputError,
            r"observation key 'rgb' is missing; .*'pixels'",
        ),
        (
            ADAPTER.with_overrides(state="position"),
            {},
            2,
            InputError,
            "adapter.state: observation key 'position'",
        ),
        (
            ADAPTER,
            {"size": 16},
            2,
            InputError,
            r"'pixels' \(camera 'front'\): expected \(32, 32, 3\) \(HWC\), received \(16, 16, 3\)",
        ),
        (
            ADAPTER,
            {},
            3,
            InputError,
            r"'agent_pos' \(state\): expected \(3,\) for embodiment 'reach2d', received \(2,\)",
        ),
        (
            ADAPTER.with_overrides(cameras={"wrist": "pixels"}),
            {},
            2,
            ConfigError,
            r"reads cameras \['front'\].*missing \['front'\]",
        ),
        (
            ADAPTER.with_overrides(embodiment="arm"),
            {},
            2,
            ConfigError,
            r"knows \['reach2d'\], received 'arm'",
        ),
        (ADAPTER, {"report_success": False}, 2, InputError, "info has no 'success'"),
        (ADAPTER.with_overrides(image_layout="CHW"), {}, 2, InputError, r"expected an RGB image \(3, H, W\)"),
    ],
    ids=[
        "camera key",
        "state key",
        "image shape",
        "state dim",
        "camera name",
        "embodiment",
        "no success",
        "layout",
    ],
)
def test_what_does_not_fit_is_refused_before_any_episode_runs(adapter, env_kwargs, state_dim, error, message):
    policy = tiny_reach_policy(state_dim=state_dim)
    steps = []
    original = policy.select_action
    policy.select_action = lambda obs: steps.append(1) or original(obs)
    with pytest.raises(error, match=message):
        evaluate(policy, lambda: make_reach_env(**env_kwargs), 2, adapter=adapter)
    assert steps == []


def test_bad_evaluate_arguments_name_them():
    with pytest.raises(ValueError, match="episodes: expected a positive integer"):
        evaluate(RandomAgent(), make_reach_env, 0, adapter=ADAPTER)
    with pytest.raises(ValueError, match="adapter: expected a GymAdapter"):
        evaluate(RandomAgent(), make_reach_env, 1, adapter={"cameras": {}})
    with pytest.raises(ValueError, match="success: a success predicate needs adapter"):
        evaluate(RandomAgent(), make_reach_env, 1, success=lambda *a: True)
    with pytest.raises(ValueError, match="wrap a ScriptedReachPolicy in PolicyAgent"):
        evaluate(ScriptedReachPolicy(), make_reach_env, 1, adapter=ADAPTER)
    with pytest.raises(ValueError, match="agent: expected an Agent"):
        evaluate(object(), make_reach_env, 1, adapter=ADAPTER)
    with pytest.raises(ValueError, match=r"mean: the environment's actions have shape \(2,\)"):
        evaluate(MeanActionAgent([0.0, 0.0, 0.0]), make_reach_env, 1, adapter=ADAPTER)
    with pytest.raises(ValueError, match="mean: expected a finite vector"):
        MeanActionAgent([np.nan])
    with pytest.raises(ValueError, match=r"expected a stats\.json file"):
        MeanActionAgent.from_stats("/nowhere/stats.json")


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("no_such_module_xyz:make", {}, "no module named 'no_such_module_xyz'"),
        ("reach2d:missing", {}, "has no attribute 'missing'"),
        ("reach2d:NOT_CALLABLE", {}, "is a int, expected a callable"),
        ("reach2d", {}, "expected 'module:factory'"),
        ("reach2d:make_reach_env", {"colour": "red"}, "unexpected keyword argument 'colour'"),
    ],
)
def test_env_factories_that_cannot_build_are_named(spec, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_env_factory(spec, kwargs)()


def test_discrete_action_spaces_and_unbounded_random_actions_are_refused():
    import gymnasium as gym

    with pytest.raises(ConfigError, match=r"env\.action_space: expected a 1-D Box"):
        evaluate(RandomAgent(), lambda: gym.make("CartPole-v1"), 1, adapter=GymAdapter())

    def unbounded():
        env = make_reach_env()
        env.action_space = gym.spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)
        return env

    with pytest.raises(ValueError, match="random actions need finite bounds"):
        evaluate(RandomAgent(), unbounded, 1, adapter=ADAPTER)


def test_mean_action_agent_reads_a_lerobot_dataset(tmp_path):
    from f1.data import LeRobotDatasetWriter, standard_features
    from f1.envs import episode_frames, make_expert, rollout

    env = make_env("gripper", "static", resolution=32)
    record = rollout(env, make_expert(env).act, seed=seed_range("train")[0])
    features = standard_features({"top": (32, 32)}, state_dim=3, action_dim=3, image_storage="image")
    with LeRobotDatasetWriter(
        tmp_path / "demos", fps=env.fps, features=features, robot_type="gripper"
    ) as writer:
        writer.add_episode(episode_frames(record), record["task"])
    agent = MeanActionAgent.from_dataset(tmp_path / "demos")
    np.testing.assert_allclose(agent.mean, np.asarray(record["action"]).mean(axis=0), rtol=1e-5, atol=1e-6)
    through_gym = evaluate(agent, lambda: TableTaskGymEnv("gripper", "static", 32), 2, adapter=TABLE_ADAPTER)
    assert through_gym.episodes == 2
