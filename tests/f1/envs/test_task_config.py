"""TableTaskConfig: validated at construction, serialisable to and from JSON."""

import json

import pytest

from f1.envs.task_config import MAX_CONVEYOR_SPEED, TableTaskConfig


def test_default_config_round_trips_through_json():
    config = TableTaskConfig(
        embodiment="arm", variant="dynamic", resolution=96, conveyor_speed_range=(0.02, 0.03)
    )
    restored = TableTaskConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.conveyor_speed_range == (0.02, 0.03)


@pytest.mark.parametrize("resolution", [31, 129, 0, 64.0, True])
def test_resolution_outside_32_to_128_is_rejected_naming_the_argument(resolution):
    with pytest.raises(ValueError, match=r"resolution: expected an integer in \[32, 128\]"):
        TableTaskConfig(resolution=resolution)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_resolution_bounds_are_accepted(resolution):
    assert TableTaskConfig(resolution=resolution).resolution == resolution


def test_unknown_variant_and_embodiment_name_the_choices():
    with pytest.raises(
        ValueError, match=r"variant: expected one of \['static', 'dynamic'\], received 'moving'"
    ):
        TableTaskConfig(variant="moving")
    with pytest.raises(
        ValueError, match=r"embodiment: expected one of \['gripper', 'arm'\], received 'hand'"
    ):
        TableTaskConfig(embodiment="hand")


@pytest.mark.parametrize("speeds", [(0.03, 0.02), (-0.01, 0.02), (0.0, MAX_CONVEYOR_SPEED + 0.001), (0.01,)])
def test_invalid_conveyor_speed_range_is_rejected(speeds):
    with pytest.raises(ValueError, match="conveyor_speed_range"):
        TableTaskConfig(conveyor_speed_range=speeds)


@pytest.mark.parametrize(
    ("field", "value"), [("num_objects", 5), ("num_bins", 0), ("max_steps", 5), ("grasp_radius", 0.5)]
)
def test_out_of_range_task_sizes_are_rejected_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"{field}: expected"):
        TableTaskConfig(**{field: value})


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown keys \['speed'\]"):
        TableTaskConfig.from_dict({"speed": 1.0})


@pytest.mark.parametrize("value", [1, 0, "yes", None, 1.0])
def test_missed_grasp_ends_episode_must_be_a_bool(value):
    with pytest.raises(ValueError, match="missed_grasp_ends_episode: expected a bool"):
        TableTaskConfig(missed_grasp_ends_episode=value)


def test_missed_grasp_ends_episode_round_trips_and_defaults_to_off():
    assert TableTaskConfig().to_dict()["missed_grasp_ends_episode"] is False
    config = TableTaskConfig(variant="dynamic", missed_grasp_ends_episode=True)
    assert TableTaskConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("value", [1, 0, "no", None, 0.0])
def test_conveyor_wraps_must_be_a_bool(value):
    with pytest.raises(ValueError, match="conveyor_wraps: expected a bool"):
        TableTaskConfig(conveyor_wraps=value)


def test_conveyor_wraps_round_trips_and_defaults_to_a_looping_belt():
    assert TableTaskConfig().to_dict()["conveyor_wraps"] is True
    config = TableTaskConfig(variant="dynamic", conveyor_wraps=False)
    assert TableTaskConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
