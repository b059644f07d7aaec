"""Stage configs: the shipped stages say what the paper says; bad keys and values fail loudly, early."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from f1.train.config import (
    ConfigError,
    StageConfig,
    load_stage_config,
    merge_overrides,
    stage_config_path,
)


def test_stage_one_trains_only_generation_with_cross_entropy_over_all_scales() -> None:
    stage = load_stage_config(1)
    assert set(stage.frozen) == {"vision", "understanding", "action", "embodiment", "tokenizer"}
    assert stage.loss_weights == {"generation": 1.0}
    assert stage.generation_scales is None


@pytest.mark.parametrize("number", [2, 3])
def test_stages_two_and_three_add_a_tenth_of_generation_loss_to_flow_over_four_scales(number: int) -> None:
    stage = load_stage_config(number)
    assert stage.frozen == ("tokenizer",)
    assert stage.loss_weights == {"flow": 1.0, "generation": 0.1}
    assert stage.generation_scales == 4
    assert stage.optimizer.lr_for("action") == 5e-5
    assert stage.optimizer.lr_for("vision") == 2.5e-5


@pytest.mark.parametrize("number", [1, 2, 3])
def test_every_stage_uses_the_published_optimiser_recipe(number: int) -> None:
    stage = load_stage_config(number)
    assert stage.optimizer.betas == (0.9, 0.95)
    assert stage.optimizer.eps == 1e-8
    assert stage.schedule.warmup_steps == 2000
    assert stage.grad_clip == 1.0
    assert stage.precision == "auto"


@pytest.mark.parametrize("number", [1, 2, 3])
def test_config_round_trips_through_yaml(number: int, tmp_path: Path) -> None:
    stage = load_stage_config(number)
    path = tmp_path / "stage.yaml"
    path.write_text(stage.to_yaml())
    assert load_stage_config(path) == stage
    assert StageConfig.from_dict(yaml.safe_load(stage.to_yaml())) == stage


def test_shipped_files_are_package_data() -> None:
    assert stage_config_path(2).name == "stage2.yaml"
    assert stage_config_path(2).is_file()


@pytest.mark.parametrize(
    ("overrides", "suggestion"),
    [
        ({"optimiser": {"lr": 1.0}}, "'optimizer'"),
        ({"optimizer.learning_rate": 1.0}, None),
        ({"optimizer.betta": [0.9, 0.9]}, "'betas'"),
        ({"schedule.warmup_step": 3}, "'warmup_steps'"),
        ({"gradclip": 1.0}, "'grad_clip'"),
    ],
)
def test_unknown_keys_are_rejected_with_a_suggestion(overrides: dict, suggestion: str | None) -> None:
    with pytest.raises(ConfigError, match="unknown key") as error:
        load_stage_config(3, overrides)
    if suggestion is not None:
        assert f"did you mean {suggestion}" in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"frozen": ["visoin"]}, "did you mean 'vision'"),
        ({"frozen": "vision"}, "frozen must be a list"),
        ({"loss_weights": {"flow": -1.0}}, r"loss_weights.flow must be >= 0.0, received -1.0"),
        ({"loss_weights": {}}, "loss_weights must be a non-empty mapping"),
        ({"steps": 0}, "steps must be >= 1, received 0"),
        ({"batch_size": 2.5}, "batch_size must be an integer, received 2.5"),
        ({"precision": "bf61"}, "did you mean 'bf16'"),
        ({"optimizer.betas": [0.9]}, "betas must be two numbers"),
        ({"optimizer.lr": "fast"}, "optimizer.lr must be a number, received 'fast'"),
        ({"grad_clip": 0}, "grad_clip must be > 0 or null"),
        ({"generation_scales": 0}, "generation_scales must be >= 1"),
        ({"optimizer.group_lr": {"vison": 1e-5}}, "did you mean 'vision'"),
    ],
)
def test_bad_values_name_the_key_and_what_was_received(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_stage_config(3, overrides)


def test_numeric_strings_from_yaml_1_1_are_read_as_numbers() -> None:
    # PyYAML reads `5e-5` (no dot) as a string; a user writing it means the number.
    assert load_stage_config(3, {"optimizer.lr": "5e-5"}).optimizer.lr == 5e-5


def test_overrides_merge_nested_mappings_but_replace_loss_weights_whole() -> None:
    stage = load_stage_config(3, {"optimizer": {"lr": 1e-3}, "loss_weights": {"flow": 1.0}})
    assert stage.optimizer.lr == 1e-3
    assert stage.optimizer.betas == (0.9, 0.95)  # kept from the file
    assert stage.loss_weights == {"flow": 1.0}  # generation dropped, not merged back in


def test_merge_overrides_accepts_dotted_keys() -> None:
    merged = merge_overrides({"a": {"b": 1, "c": 2}}, {"a.b": 5}, where="x")
    assert merged == {"a": {"b": 5, "c": 2}}


def test_replace_validates_again() -> None:
    stage = load_stage_config(3)
    assert stage.replace(steps=7).steps == 7
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        stage.replace(steps=-1)


def test_unknown_stage_number_and_missing_or_bad_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"stage must be one of 0, 1, 2, 3, a shipped name \(stage1, .*\) or a stage YAML .*received 4",
    ):
        load_stage_config(4)
    with pytest.raises(ConfigError, match=r"stage config file not found: .*nope\.yaml"):
        load_stage_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_stage_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping, received list"):
        load_stage_config(listing)
