"""Save/load: safetensors with the config, identical outputs, every key difference reported, no pickles."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from f1.model import CheckpointError, F1Policy, read_policy_checkpoint
from f1.model.checkpoint import CONFIG_NAME, WEIGHTS_NAME
from mot import Expert


@pytest.mark.parametrize("mode", ["f1", "no_gen"])
def test_round_trip_gives_identical_outputs(
    tiny_policy, observation_factory, tmp_path: Path, mode: str
) -> None:
    policy = tiny_policy(mode)
    policy.save(tmp_path)
    loaded = F1Policy.load(tmp_path).eval()
    assert loaded.config == policy.config
    observation = observation_factory()
    before = policy.plan(observation, seed=3, return_foresight=True)
    after = loaded.plan(observation, seed=3, return_foresight=True)
    assert torch.equal(before.actions, after.actions)
    if mode == "f1":
        assert all(torch.equal(a, b) for a, b in zip(before.foresight.indices, after.foresight.indices))
    assert json.loads((tmp_path / CONFIG_NAME).read_text()) == policy.config.to_dict()


def test_added_embodiments_travel_with_the_checkpoint(tiny_policy, tmp_path: Path) -> None:
    from f1.model import Embodiment

    policy = tiny_policy("no_gen", fresh=True)
    policy.add_embodiment(Embodiment(name="gripper", state_dim=2, action_dim=1))
    policy.save(tmp_path)
    assert F1Policy.load(tmp_path).model.embodiments.names == ("sim_arm", "gripper")


def test_missing_unexpected_and_misshapen_keys_are_all_reported(tiny_policy, tmp_path: Path) -> None:
    tiny_policy("no_gen").save(tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    config, tensors = read_policy_checkpoint(tmp_path)
    metadata = {"format": "f1-policy", "format_version": "1", "config": config.to_json()}
    del tensors["trunk.experts.act.norm.weight"]
    tensors["trunk.experts.act.extra"] = torch.zeros(1)
    tensors["adapters.sim_arm.action_decoder.velocity_out.bias"] = torch.zeros(3)
    save_file(tensors, str(weights), metadata=metadata)
    with pytest.raises(CheckpointError) as error:
        F1Policy.load(tmp_path)
    message = str(error.value)
    assert "1 missing keys: ['trunk.experts.act.norm.weight']" in message
    assert "1 unexpected keys: ['trunk.experts.act.extra']" in message
    assert "adapters.sim_arm.action_decoder.velocity_out.bias: expected (7,), received (3,)" in message


def test_foreign_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"model.state_proj.weight": torch.zeros(2, 2)}, str(foreign))
    with pytest.raises(CheckpointError, match="is not an f1 policy checkpoint"):
        F1Policy.load(foreign)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        F1Policy.load(corrupt)
    pickle = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1)}, pickle)
    with pytest.raises(CheckpointError, match=r"expected a \.safetensors file"):
        F1Policy.load(pickle)
    with pytest.raises(CheckpointError, match="is missing"):
        F1Policy.load(tmp_path / "nowhere")


def test_the_file_holds_only_tensors_and_the_config(tiny_policy, tmp_path: Path) -> None:
    policy = tiny_policy("f1")
    policy.save(tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS_NAME))
    assert set(tensors) == set(policy.model.state_dict())


@pytest.mark.parametrize(
    ("mode", "dead_experts"), [("no_gen", ["und"]), ("history_no_foresight", ["und", "gen"])]
)
def test_a_policy_saved_with_the_dead_last_layer_tensors_still_loads_dropping_them_with_a_reason(
    tiny_policy, observation_factory, tmp_path: Path, caplog, mode: str, dead_experts: list[str]
) -> None:
    # what versions that built the keys/values-only experts' last layers in full saved
    policy = tiny_policy(mode)
    policy.save(tmp_path)
    config, tensors = read_policy_checkpoint(tmp_path)
    trunk = policy.model.trunk
    dead = {}
    for expert in dead_experts:
        full = dataclasses.replace(trunk.config.experts[expert], last_layer_kv_only=False)
        shapes = {k: v.shape for k, v in Expert(full, trunk.config).state_dict().items()}
        assert trunk.experts[expert].unbuilt_tensors
        for name in trunk.experts[expert].unbuilt_tensors:
            dead[f"trunk.experts.{expert}.{name}"] = torch.randn(shapes[name])
    metadata = {"format": "f1-policy", "format_version": "1", "config": config.to_json()}
    save_file({**tensors, **dead}, str(tmp_path / WEIGHTS_NAME), metadata=metadata)
    with caplog.at_level(logging.INFO, logger="f1.model.checkpoint"):
        loaded = F1Policy.load(tmp_path).eval()
    assert all(f"dropped {key}: not built" in caplog.text for key in dead)
    assert "last_layer_kv_only" in caplog.text
    state = loaded.model.state_dict()
    assert set(state) == set(tensors)
    assert all(torch.equal(state[key], value) for key, value in tensors.items())
    observation = observation_factory()
    assert torch.equal(loaded.plan(observation, seed=3).actions, policy.plan(observation, seed=3).actions)
    # only those: any other extra tensor is still refused
    save_file(
        {**tensors, **dead, "trunk.experts.und.extra": torch.zeros(1)},
        str(tmp_path / WEIGHTS_NAME),
        metadata=metadata,
    )
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: \['trunk\.experts\.und\.extra'\]"):
        F1Policy.load(tmp_path)
