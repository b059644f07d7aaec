"""Configs are validated once, name the bad field, and survive YAML/JSON round trips unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from f1.model import (
    ActionConfig,
    ConfigError,
    F1Config,
    GenerationConfig,
    TrunkConfig,
    count_parameters,
    preset,
    preset_names,
)


@pytest.mark.parametrize("name", ["tiny", "small", "f1-4.2b", "pi0"])
def test_every_preset_round_trips_through_yaml_and_json(name: str, tmp_path: Path) -> None:
    config = preset(name)
    assert F1Config.from_yaml(config.to_yaml()) == config
    assert F1Config.from_json(config.to_json()) == config
    config.save(tmp_path / "config.yaml")
    config.save(tmp_path / "config.json")
    assert F1Config.load(tmp_path / "config.yaml") == config
    assert F1Config.load(tmp_path / "config.json") == config


@settings(max_examples=25, deadline=None)
@given(
    mode=st.sampled_from(["f1", "no_gen", "history_no_foresight"]),
    chunk=st.integers(1, 64),
    frames=st.integers(1, 8),
    scales=st.integers(1, 4),
    frozen=st.booleans(),
)
def test_config_round_trip_is_identity(mode: str, chunk: int, frames: int, scales: int, frozen: bool) -> None:
    base = preset("tiny")
    config = base.replace(
        mode=mode,
        action=ActionConfig(chunk_size=chunk, n_action_steps=max(1, chunk // 2)),
        generation=GenerationConfig(
            vqvae=base.generation.vqvae,
            history_frames=frames,
            history_grid=(2, 3),
            history_heads=4,
            inference_scales=scales,
            frozen=frozen,
        ),
    )
    assert F1Config.from_yaml(config.to_yaml()) == config
    assert F1Config.from_dict(config.to_dict()) == config


def test_preset_names_and_the_published_shape() -> None:
    assert set(preset_names()) == {"tiny", "small", "f1-4.2b", "pi0"}
    trunk = preset("f1-4.2b").trunk
    assert (trunk.n_layers, trunk.n_heads, trunk.n_kv_heads, trunk.head_dim) == (18, 8, 1, 256)
    assert (trunk.understanding_width, trunk.generation_width, trunk.action_width) == (2048, 1024, 1024)
    assert preset("f1-4.2b").vision.timm_model == "vit_so400m_patch14_siglip_224"


def test_the_pi0_preset_is_the_published_pi0_shape() -> None:
    pi0 = preset("pi0")
    assert pi0.mode == "no_gen"
    assert pi0.action.time_convention == "pi0"
    assert (pi0.action.chunk_size, pi0.action.flow_steps, len(pi0.cameras)) == (50, 10, 3)
    assert pi0.trunk == preset("f1-4.2b").trunk
    assert (pi0.embodiments[0].state_dim, pi0.embodiments[0].action_dim) == (32, 32)
    assert pi0.language.vocab_size == 257152
    # pi0's 3.24B less the PaliGemma tensors that feed only its last-layer output, which pi0 never reads
    # (Gemma-2B's last-layer q/o projections 2 x 2048^2, MLP 3 x 2048 x 16384, two norms of 2048)
    dead = 2 * 2048 * 2048 + 3 * 2048 * 16384 + 2 * 2048
    assert count_parameters(pi0)["total"] + dead == pytest.approx(3.24e9, rel=0.01)
    assert count_parameters(pi0)["total"] == pytest.approx(3.13e9, rel=0.01)


def test_overrides_merge_field_by_field_in_presets_and_configs() -> None:
    tiny = preset("tiny")
    merged = preset("tiny", generation={"history_stride": 4})
    assert merged.generation == dataclasses.replace(tiny.generation, history_stride=4)
    dotted = tiny.with_overrides({"trunk.n_kv_heads": 2, "action": {"chunk_size": 10}, "mode": "no_gen"})
    assert dotted.trunk == dataclasses.replace(tiny.trunk, n_kv_heads=2)
    assert dotted.action == dataclasses.replace(tiny.action, chunk_size=10)
    assert dotted.mode == "no_gen"
    assert tiny.with_overrides({"generation.vqvae.vocab_size": 64}).generation.vqvae.vocab_size == 64


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"trunk.n_layer": 3},
            r"overrides.trunk: unknown keys \['n_layer'\] \(did you mean 'n_layers'\?\), "
            r"expected a subset of .*n_layers",
        ),
        ({"colour": "red"}, r"overrides: unknown keys \['colour'\]"),
        ({"trunk.n_kv_heads": 3}, "trunk.n_kv_heads: expected a divisor of n_heads=4"),
        ({"action.chunk_size": 0}, "action.chunk_size"),
    ],
)
def test_bad_overrides_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        preset("tiny").with_overrides(overrides)
    with pytest.raises(ConfigError, match="overrides: expected a mapping"):
        preset("tiny").with_overrides([("mode", "f1")])  # type: ignore[arg-type]


def test_unknown_preset_and_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        preset("huge")
    data = preset("tiny").to_dict()
    data["trunk"]["n_layer"] = 3
    with pytest.raises(ConfigError, match=r"trunk: unknown keys \['n_layer'\]"):
        F1Config.from_dict(data)
    data = preset("tiny").to_dict()
    data["colour"] = "red"
    with pytest.raises(ConfigError, match=r"unknown keys \['colour'\]"):
        F1Config.from_dict(data)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TrunkConfig(n_heads=8, n_kv_heads=3), "trunk.n_kv_heads: expected a divisor of n_heads=8"),
        (lambda: TrunkConfig(head_dim=15), "trunk.head_dim: expected an even number"),
        (lambda: ActionConfig(chunk_size=4, n_action_steps=5), "action.n_action_steps: expected at most"),
        (lambda: ActionConfig(solver="leapfrog"), "action.solver: expected one of"),
        (lambda: preset("tiny", mode="dream"), "mode: expected one of"),
        (lambda: preset("tiny", cameras=("front", "front")), "cameras: expected distinct names"),
        (lambda: preset("tiny", embodiments=()), "embodiments: expected at least one"),
        (lambda: preset("tiny", default_embodiment="ufo"), "default_embodiment: expected one of"),
    ],
)
def test_invalid_values_raise_at_construction_naming_the_field(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_scales_are_checked_against_the_vqvae_schedule() -> None:
    vqvae = preset("tiny").generation.vqvae  # 4 scales
    with pytest.raises(
        ConfigError, match=r"generation\.inference_scales: expected at most the VQ-VAE.s 4 scales"
    ):
        GenerationConfig(vqvae=vqvae, inference_scales=5)


def test_mode_switches_which_experts_exist() -> None:
    assert preset("tiny").has_foresight
    assert preset("tiny").has_history
    no_gen = preset("tiny", mode="no_gen")
    assert not no_gen.has_history
    assert not no_gen.has_foresight
    history_only = preset("tiny", mode="history_no_foresight")
    assert history_only.has_history
    assert not history_only.has_foresight


def test_load_of_a_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        F1Config.load(tmp_path / "absent.yaml")
