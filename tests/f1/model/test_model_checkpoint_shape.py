"""A pi0 checkpoint's shape is read from its tensors (and LeRobot's config.json), not from a preset."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from f1.model import CheckpointError, ConfigError, F1Model, pi0_config_from_checkpoint
from f1.model.weight_import import import_weights

from .test_model_weight_import import P, _config, _pi0

LEROBOT_CONFIG = {
    "type": "pi0",
    "input_features": {
        "observation.images.top": {"type": "VISUAL", "shape": [3, 28, 28]},
        "observation.images.wrist": {"type": "VISUAL", "shape": [3, 28, 28]},
        "observation.state": {"type": "STATE", "shape": [5]},
    },
    "output_features": {"action": {"type": "ACTION", "shape": [4]}},
    "chunk_size": 8,
    "n_action_steps": 3,
    "num_inference_steps": 5,
    "tokenizer_max_length": 12,
}


def _checkpoint() -> dict[str, torch.Tensor]:
    return _pi0(_config(), torch.Generator().manual_seed(0))


def test_every_weight_shaped_value_is_read_from_the_tensors() -> None:
    written = _config()
    reading = pi0_config_from_checkpoint(_checkpoint(), overrides={"vision.heads": 2})
    config = reading.config
    assert config.mode == "no_gen"
    assert config.action.time_convention == "pi0"
    assert config.trunk == dataclasses.replace(
        written.trunk, attention_backend=config.trunk.attention_backend
    )
    vision = config.vision
    assert (vision.image_size, vision.patch_size, vision.width, vision.depth, vision.heads) == (
        28,
        14,
        32,
        2,
        2,
    )
    assert int(vision.width * vision.mlp_ratio) == 64
    assert config.language.vocab_size == written.language.vocab_size + 64  # every row the file has
    (robot,) = config.embodiments
    assert (robot.name, robot.state_dim, robot.action_dim) == ("pi0", 6, 6)
    assert reading.sources["trunk"] == "weights"
    assert reading.sources["vision.heads"] == "override"
    assert reading.sources["action.chunk_size"] == "pi0 default"
    # and the policy it describes takes every tensor of the file
    import_weights(F1Model(config), _checkpoint(), "pi0")


def test_lerobots_config_gives_cameras_chunk_steps_and_the_real_action_dims() -> None:
    reading = pi0_config_from_checkpoint(
        _checkpoint(), LEROBOT_CONFIG, embodiment="so100", overrides={"vision": {"heads": 2}}
    )
    config = reading.config
    assert config.cameras == ("top", "wrist")
    assert (config.action.chunk_size, config.action.n_action_steps, config.action.flow_steps) == (8, 3, 5)
    assert config.language.max_length == 12
    (robot,) = config.embodiments
    assert robot.name == "so100"
    assert robot.action_mask == (True,) * 4 + (False,) * 2  # padding beyond LeRobot's 4 action dims
    assert reading.sources["cameras"] == reading.sources["action.chunk_size"] == "config.json"


def test_overrides_apply_last_and_a_wider_attention_is_read_with_the_kv_heads_given() -> None:
    tensors = _checkpoint()
    overrides = {"vision.heads": 2, "mode": "f1", "trunk.n_kv_heads": 1, "action.n_action_steps": 2}
    config = pi0_config_from_checkpoint(tensors, overrides=overrides).config
    assert (config.mode, config.action.n_action_steps) == ("f1", 2)
    # k_proj has 16 rows: with 2 KV heads of size 8, q_proj's 64 rows are 8 query heads
    trunk = pi0_config_from_checkpoint(
        tensors, overrides={"vision.heads": 2, "trunk.n_kv_heads": 2}
    ).config.trunk
    assert (trunk.n_kv_heads, trunk.head_dim, trunk.n_heads) == (2, 8, 8)


def test_a_siglip_width_of_so400ms_head_size_needs_no_heads() -> None:
    tensors = _checkpoint()
    v = P + "paligemma.vision_tower.vision_model."
    tensors[v + "embeddings.patch_embedding.weight"] = torch.zeros(144, 3, 14, 14)
    assert pi0_config_from_checkpoint(tensors).config.vision.heads == 2  # 144 / 72


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda t, c: None, ConfigError, r"vision\.heads: .*f1 convert --set vision\.heads=N"),
        (
            lambda t, c: [t.pop(k) for k in list(t) if k.startswith(P + "gemma_expert.model.layers.1.")],
            CheckpointError,
            "the action expert has 1 layers, the language model 2",
        ),
        (
            lambda t, c: t.pop("model.state_proj.weight"),
            CheckpointError,
            r"missing 'model\.state_proj\.weight'",
        ),
        (lambda t, c: c.update(type="pi05"), ConfigError, "pi0.5 conditions the action expert"),
        (lambda t, c: c.update(type="act"), ConfigError, "expected a LeRobot pi0 config"),
        (lambda t, c: c.update(chunk_size=0), ConfigError, "chunk_size"),
        (
            lambda t, c: c["output_features"]["action"].update(shape=[40]),
            CheckpointError,
            "exceed the weights' padded 6 / 6",
        ),
    ],
)
def test_what_cannot_be_read_is_named(change, error, message) -> None:
    tensors, lerobot = _checkpoint(), json.loads(json.dumps(LEROBOT_CONFIG))
    change(tensors, lerobot)
    overrides = {} if error is ConfigError and "heads" in message else {"vision.heads": 2}
    with pytest.raises(error, match=message):
        pi0_config_from_checkpoint(tensors, lerobot, overrides=overrides)
