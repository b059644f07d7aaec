"""Configs: validated at construction, serialisable to and from plain dicts."""

from __future__ import annotations

import json

import pytest

from mot import ExpertConfig, MoTConfig


def test_config_round_trips_through_json():
    config = MoTConfig(
        n_layers=2,
        n_heads=4,
        n_kv_heads=1,
        head_dim=16,
        experts={"und": ExpertConfig(64, 128), "act": ExpertConfig(32, 64, norm_eps=1e-5)},
        use_rotary=False,
    )
    assert MoTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_layers": 0}, "MoTConfig.n_layers: expected a positive int, received 0"),
        ({"n_kv_heads": 3}, "n_kv_heads: expected a divisor of n_heads=4, received 3"),
        ({"head_dim": 15}, "head_dim: expected an even number, received 15"),
        ({"experts": {}}, "expected at least one expert"),
        ({"attention_backend": "cuda"}, "attention_backend: expected 'sdpa' or 'flex'"),
        ({"experts": {"a": {"width": 8, "mlp": 8}}}, r"unknown keys \['mlp'\]"),
    ],
)
def test_bad_configs_raise_a_clear_error(kwargs, message):
    base = dict(n_layers=1, n_heads=4, n_kv_heads=2, head_dim=8, experts={"a": ExpertConfig(8, 8)})
    with pytest.raises(ValueError, match=message):
        MoTConfig(**{**base, **kwargs})


def test_expert_sizes_are_validated():
    with pytest.raises(ValueError, match=r"ExpertConfig\.width: expected a positive int, received -1"):
        ExpertConfig(-1, 8)


def test_unknown_top_level_keys_are_rejected():
    with pytest.raises(ValueError, match=r"MoTConfig: unknown keys \['depth'\]"):
        MoTConfig.from_dict({"depth": 3, "n_heads": 1, "n_kv_heads": 1, "head_dim": 2, "experts": {}})
