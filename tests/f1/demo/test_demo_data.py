"""Demonstrations written as LeRobot datasets, and the demo's policy configuration."""

from __future__ import annotations

import numpy as np
import pytest

from f1.data import LeRobotDataset, WindowedDataset
from f1.demo import record_demonstrations, table_task, task_record
from f1.demo.policy import demo_policy_config, demo_window_config, embodiment_from_stats
from f1.envs import TableTaskConfig, make_env, split_of_seed


@pytest.fixture(scope="module")
def arm_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "arm"
    recorded = record_demonstrations(root, {"resolution": 32}, "arm", ("static", "dynamic"), 2)
    return recorded, LeRobotDataset(root)


def test_recorded_dataset_holds_successful_expert_episodes_of_each_variant(arm_dataset):
    recorded, dataset = arm_dataset
    assert recorded.episodes == dataset.num_episodes == 4
    assert recorded.frames == dataset.num_frames
    assert recorded.expert_success_rate == 1.0
    assert dataset.robot_type == "arm"
    assert dataset.camera_keys == ["observation.images.top"]
    assert dataset.column("observation.state").shape[1] == 7
    assert dataset.column("action").shape[1] == 3


def test_training_seeds_are_never_evaluation_seeds():
    from f1.demo.data import _training_seeds

    for embodiment in ("gripper", "arm"):
        for variant in ("static", "dynamic"):
            seeds = _training_seeds(embodiment, variant)
            assert split_of_seed(seeds[0]) == split_of_seed(seeds[-1]) == "train"


def test_frames_are_stored_losslessly(arm_dataset):
    from f1.demo.data import _training_seeds
    from f1.envs import make_expert, rollout

    _, dataset = arm_dataset
    env = make_env("arm", "static", resolution=32)
    record = rollout(env, make_expert(env).act, seed=_training_seeds("arm", "static")[0])
    stored = dataset.camera_frames("observation.images.top", 0, np.arange(3))
    assert np.array_equal(stored, record["observation.images.top"][:3])


@pytest.mark.parametrize("mode", ["f1", "no_gen", "history_no_foresight"])
def test_demo_policy_config_windows_give_the_keys_the_policy_reads(arm_dataset, mode):
    _, dataset = arm_dataset
    embodiment = embodiment_from_stats("arm", dataset.stats, 10.0)
    config = demo_policy_config(mode, 32, (embodiment,))
    assert config.mode == mode
    assert config.cameras == ("top",)
    sample = WindowedDataset(dataset, demo_window_config(config))[5]
    assert ("history" in sample) == (mode != "no_gen")
    assert ("future_image" in sample) == (mode == "f1")
    assert sample["action"].shape == (config.action.chunk_size, 3)


def test_bad_arguments_raise_naming_them(tmp_path):
    with pytest.raises(ValueError, match="variants"):
        record_demonstrations(tmp_path / "a", {}, "arm", (), 1)
    with pytest.raises(ValueError, match="episodes_per_variant"):
        record_demonstrations(tmp_path / "b", {}, "arm", ("static",), 0)
    with pytest.raises(ValueError, match="mode"):
        demo_policy_config("pi0", 32, ())


def test_unperturbed_expert_episode_is_the_expert_rollout():
    from f1.demo.data import expert_episode
    from f1.envs import make_expert, rollout

    env = make_env("gripper", "dynamic", resolution=32)
    expert = make_expert(env)
    plain = rollout(env, expert.act, seed=11)
    recorded = expert_episode(env, expert, 11)
    for key in ("observation.images.top", "observation.state", "action"):
        assert np.array_equal(plain[key], recorded[key])
    assert recorded["success"] == plain["success"]


def test_perturbed_episode_visits_other_states_and_keeps_expert_labels():
    from f1.demo.data import expert_episode
    from f1.envs import make_expert

    env = make_env("gripper", "static", resolution=32)
    expert = make_expert(env)
    plain = expert_episode(env, expert, 3)
    perturbed = expert_episode(env, expert, 3, perturbation=0.5)
    steps = min(len(plain["action"]), len(perturbed["action"]))
    assert not np.array_equal(plain["observation.state"][:steps], perturbed["observation.state"][:steps])
    # Labels are the expert's: full-speed moves within the bounds and a decided grip, never random values.
    assert np.all(np.abs(perturbed["action"][:, :2]) <= 0.04 + 1e-6)
    assert set(np.unique(perturbed["action"][:, 2]).tolist()) <= {-1.0, 1.0}


def test_perturbation_out_of_range_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="perturbation"):
        record_demonstrations(tmp_path / "p", {}, "arm", ("static",), 1, perturbation=1.0)


def test_table_task_sets_the_given_fields_on_the_family_defaults():
    task = table_task({"resolution": 32, "num_objects": 1}, "arm", "dynamic")
    assert task == TableTaskConfig(embodiment="arm", variant="dynamic", resolution=32, num_objects=1)
    assert task_record({"conveyor_speed_range": (0.06, 0.1), "num_bins": 1}) == {
        "conveyor_speed_range": [0.06, 0.1],
        "num_bins": 1,
    }
    with pytest.raises(ValueError, match="unknown keys"):
        table_task({"objects": 1}, "arm", "static")
    with pytest.raises(ValueError, match="embodiment"):
        table_task({"embodiment": "arm"}, "arm", "static")


def test_demonstrations_record_the_approaching_expert_when_asked(tmp_path):
    from f1.demo.data import _training_seeds
    from f1.envs import make_expert, rollout

    task = {"resolution": 32, "num_objects": 1, "num_bins": 1, "conveyor_speed_range": (0.06, 0.10)}
    record_demonstrations(tmp_path / "d", task, "gripper", ("dynamic",), 1, approach_margin=0.08)
    stored = LeRobotDataset(tmp_path / "d").column("action")
    seed = _training_seeds("gripper", "dynamic")[0]
    env = make_env("gripper", "dynamic", **task)
    approaching = rollout(env, make_expert(env, approach_margin=0.08).act, seed=seed)["action"]
    intercepting = rollout(env, make_expert(env).act, seed=seed)["action"]
    assert np.array_equal(stored, approaching)
    assert not np.array_equal(approaching[: len(intercepting)], intercepting[: len(approaching)])


def test_a_bad_approach_margin_is_rejected_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="approach_margin"):
        record_demonstrations(tmp_path / "m", {}, "gripper", ("dynamic",), 1, approach_margin=-1.0)
    assert not (tmp_path / "m").exists()
