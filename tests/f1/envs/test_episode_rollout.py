"""rollout(): one episode in the LeRobot per-frame layout the dataset writer takes."""

import numpy as np
import pytest

from f1.envs.episode_rollout import FRAME_KEYS, episode_frames, rollout
from f1.envs.scripted_experts import make_expert
from f1.envs.table_env import make_env


@pytest.mark.parametrize(("embodiment", "state_dim"), [("gripper", 3), ("arm", 7)])
def test_record_has_exactly_the_dataset_keys_shapes_and_dtypes(embodiment, state_dim):
    env = make_env(embodiment, "dynamic", resolution=40)
    record = rollout(env, make_expert(env).act, seed=11)
    assert set(record) == {"observation.images.top", "observation.state", "action", "task", "success"}
    assert set(episode_frames(record)) == set(FRAME_KEYS) == set(record) - {"task", "success"}
    images, states, actions = record["observation.images.top"], record["observation.state"], record["action"]
    steps = images.shape[0]
    assert 1 <= steps <= env.config.max_steps
    assert images.shape == (steps, 40, 40, 3)
    assert images.dtype == np.uint8
    assert states.shape == (steps, state_dim)
    assert states.dtype == np.float32
    assert actions.shape == (steps, 3)
    assert actions.dtype == np.float32
    assert record["task"] == env.instruction
    assert record["success"] is True


def test_frame_t_is_the_observation_before_action_t_and_actions_are_recorded_clipped():
    env = make_env("gripper", "static")
    rng = np.random.default_rng(0)
    record = rollout(env, lambda obs: rng.uniform(-1.0, 1.0, size=3), seed=3, max_steps=12)
    reference = make_env("gripper", "static")
    obs, _ = reference.reset(seed=3)
    for t in range(len(record["action"])):
        assert np.array_equal(record["observation.images.top"][t], obs["image"])
        assert np.array_equal(record["observation.state"][t], obs["state"])
        assert reference.action_space.contains(record["action"][t])
        obs = reference.step(record["action"][t])[0]
    assert len(record["action"]) == 12
    assert record["success"] is False


def test_rollouts_are_reproducible_from_the_seed():
    env = make_env("arm", "dynamic")
    first, second = rollout(env, make_expert(env), seed=21), rollout(env, make_expert(env), seed=21)
    for key in ("observation.images.top", "observation.state", "action"):
        assert np.array_equal(first[key], second[key])


@pytest.mark.parametrize("max_steps", [0, -3, 2.5, True])
def test_invalid_max_steps_is_rejected(max_steps):
    env = make_env()
    with pytest.raises(ValueError, match="max_steps: expected a positive integer or None"):
        rollout(env, make_expert(env), seed=0, max_steps=max_steps)


def test_expert_episodes_round_trip_through_the_lerobot_dataset_writer(tmp_path):
    from f1.data.features import standard_features
    from f1.data.reader import LeRobotDataset
    from f1.data.writer import LeRobotDatasetWriter

    env = make_env("arm", "dynamic", resolution=32)
    expert = make_expert(env)
    records = [rollout(env, expert, seed=seed) for seed in (0, 1)]
    features = standard_features(
        {"top": (32, 32)},
        state_dim=env.embodiment.state_dim,
        action_dim=env.embodiment.action_dim,
        image_storage="image",
        state_names=env.embodiment.state_names,
        action_names=env.embodiment.action_names,
    )
    with LeRobotDatasetWriter(tmp_path / "demos", fps=env.fps, features=features, robot_type="arm") as writer:
        for record in records:
            writer.add_episode(episode_frames(record), record["task"])
    dataset = LeRobotDataset(tmp_path / "demos")
    assert dataset.num_episodes == 2
    assert dataset.num_frames == sum(len(r["action"]) for r in records)
    last = len(records[0]["action"]) - 1
    item = dataset[last]
    assert item["task"] == records[0]["task"]
    assert np.array_equal(item["action"].numpy(), records[0]["action"][last])
    assert np.array_equal(item["observation.state"].numpy(), records[0]["observation.state"][last])
    image = (item["observation.images.top"].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(image, records[0]["observation.images.top"][last])
