"""Weight import on synthetic state dicts with the published key names at tiny shapes.

The synthetic checkpoints below are written from the published layouts (f1-official.md), independently
of the importer's own mapping table, so that a wrong or missing mapping fails here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from f1.model import CheckpointError, ConfigError, Embodiment, F1Model, F1Policy, VisionConfig, preset
from f1.model.weight_import import convert_checkpoint, import_weights
from var_foresight import VQVAE

P = "model.paligemma_with_expert."
EXTRA_ROWS = 64  # PaliGemma's embedding has more rows than pi0's vocabulary


def _config(**action):
    base = preset("tiny")
    return base.replace(
        vision=VisionConfig(
            timm_model="vit_so400m_patch14_siglip_224",
            image_size=28,
            patch_size=14,
            width=32,
            depth=2,
            heads=2,
            mlp_ratio=2.0,
            act_layer="gelu_tanh",
        ),
        action=dataclasses.replace(base.action, time_convention="pi0", **action),
        embodiments=(
            Embodiment(name="pad6", state_dim=6, action_dim=6, action_mask=(True,) * 4 + (False,) * 2),
        ),
    )


def _gemma(prefix: str, width: int, mlp: int, config, vocab: int | None, g: torch.Generator) -> dict:
    t = config.trunk
    q, kv = t.n_heads * t.head_dim, t.n_kv_heads * t.head_dim
    shapes = {
        "input_layernorm.weight": (width,),
        "post_attention_layernorm.weight": (width,),
        "self_attn.q_proj.weight": (q, width),
        "self_attn.k_proj.weight": (kv, width),
        "self_attn.v_proj.weight": (kv, width),
        "self_attn.o_proj.weight": (width, q),
        "mlp.gate_proj.weight": (mlp, width),
        "mlp.up_proj.weight": (mlp, width),
        "mlp.down_proj.weight": (width, mlp),
    }
    out = {
        f"{prefix}model.layers.{i}.{k}": torch.randn(s, generator=g)
        for i in range(t.n_layers)
        for k, s in shapes.items()
    }
    out[f"{prefix}model.norm.weight"] = torch.randn(width, generator=g)
    if vocab is not None:
        out[f"{prefix}lm_head.weight"] = torch.randn(vocab, width, generator=g)
    return out


def _paligemma(config, g: torch.Generator, prefix: str = P + "paligemma.") -> dict:
    d, n = 32, 4  # SigLIP width, patches
    v = prefix + "vision_tower.vision_model."
    out = {
        v + "embeddings.patch_embedding.weight": torch.randn(d, 3, 14, 14, generator=g),
        v + "embeddings.patch_embedding.bias": torch.randn(d, generator=g),
        v + "embeddings.position_embedding.weight": torch.randn(n, d, generator=g),
        v + "post_layernorm.weight": torch.randn(d, generator=g),
        v + "post_layernorm.bias": torch.randn(d, generator=g),
    }
    for i in range(2):
        layer = f"{v}encoder.layers.{i}."
        for name, shape in {
            "self_attn.q_proj": (d, d),
            "self_attn.k_proj": (d, d),
            "self_attn.v_proj": (d, d),
            "self_attn.out_proj": (d, d),
            "mlp.fc1": (2 * d, d),
            "mlp.fc2": (d, 2 * d),
        }.items():
            out[layer + name + ".weight"] = torch.randn(shape, generator=g)
            out[layer + name + ".bias"] = torch.randn(shape[0], generator=g)
        for name in ("layer_norm1", "layer_norm2"):
            out[layer + name + ".weight"] = torch.randn(d, generator=g)
            out[layer + name + ".bias"] = torch.randn(d, generator=g)
    w = config.trunk.understanding_width
    out[prefix + "multi_modal_projector.linear.weight"] = torch.randn(w, d, generator=g)
    out[prefix + "multi_modal_projector.linear.bias"] = torch.randn(w, generator=g)
    vocab = config.language.vocab_size + EXTRA_ROWS
    out[prefix + "language_model.model.embed_tokens.weight"] = torch.randn(vocab, w, generator=g)
    out |= _gemma(prefix + "language_model.", w, config.trunk.understanding_mlp, config, None, g)
    return out


def _pi0(config, g: torch.Generator) -> dict:
    t, s, a = config.trunk, 6, 6
    w = t.action_width
    out = _paligemma(config, g) | _gemma(P + "gemma_expert.", w, t.action_mlp, config, 100, g)
    for name, shape in {
        "state_proj": (w, s),
        "action_in_proj": (w, a),
        "action_time_mlp_in": (w, 2 * w),
        "action_time_mlp_out": (w, w),
        "action_out_proj": (a, w),
    }.items():
        out[f"model.{name}.weight"] = torch.randn(shape, generator=g)
        out[f"model.{name}.bias"] = torch.randn(shape[0], generator=g)
    return out


def _f1(config, g: torch.Generator) -> dict:
    t, vq = config.trunk, config.generation.vqvae
    w, cz, tokens = t.generation_width, vq.z_channels, vq.schedule.total_tokens
    out = _pi0(config, g) | _gemma(P + "gemma_wm_expert.", w, t.generation_mlp, config, 100, g)
    out |= {
        "model.temporal_conv.conv.weight": torch.randn(cz, cz, 4, generator=g),
        "model.temporal_conv.conv.bias": torch.randn(cz, generator=g),
        "model.wm_embeddings.weight": torch.randn(w, cz, generator=g),
        "model.wm_embeddings.bias": torch.randn(w, generator=g),
        "model.wm_hist_pos_embs": torch.randn(1, tokens - 1, cz, generator=g),
        "model.wm_sos_token_embs": torch.randn(1, 1, w, generator=g),
        "model.wm_cond_pos_embs": torch.randn(1, tokens, w, generator=g),
        "model.wm_output_position_embedding": torch.randn(1, tokens, w, generator=g),
        "model.lvl_embed.weight": torch.randn(len(vq.scales), w, generator=g),
        "model.lvl_1L": torch.zeros(1, tokens, dtype=torch.long),
        "model.wm_out_layer_norm.weight": torch.randn(w, generator=g),
        "model.wm_out_layer_norm.bias": torch.randn(w, generator=g),
        "model.wm_out_proj.weight": torch.randn(vq.vocab_size, w, generator=g),
        "model.wm_out_proj.bias": torch.randn(vq.vocab_size, generator=g),
    }
    torch.manual_seed(1)
    out |= {"model.vae." + k: v for k, v in VQVAE(vq).state_dict().items()}
    return out


def _dead_understanding_keys(config, prefix: str = P + "paligemma.language_model.model.") -> set[str]:
    """PaliGemma tensors that feed only the language model's last-layer output, which no F1 head reads."""
    last = f"{prefix}layers.{config.trunk.n_layers - 1}."
    names = ("self_attn.q_proj", "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj")
    names += ("mlp.up_proj", "mlp.down_proj")
    return {f"{last}{name}.weight" for name in names} | {prefix + "norm.weight"}


def test_the_published_f1_layout_imports_completely(tmp_path: Path) -> None:
    config = _config()
    policy = F1Model(config)
    source = _f1(config, torch.Generator().manual_seed(0))
    report = import_weights(policy, source, "f1")
    state = policy.state_dict()
    layer = P + "paligemma.vision_tower.vision_model.encoder.layers.1.self_attn."
    expected_qkv = torch.cat([source[layer + f"{n}_proj.weight"] for n in "qkv"])
    assert torch.equal(state["understanding.vision.backbone.blocks.1.attn.qkv.weight"], expected_qkv)
    embed = source[P + "paligemma.language_model.model.embed_tokens.weight"]
    assert torch.equal(
        state["understanding.language.embed_tokens.weight"], embed[: config.language.vocab_size]
    )
    gen_layer = P + "gemma_wm_expert.model.layers.1.mlp.down_proj.weight"
    assert torch.equal(state["trunk.experts.gen.layers.1.mlp.down_proj.weight"], source[gen_layer])
    assert torch.equal(
        state["adapters.pad6.action_decoder.velocity_out.bias"], source["model.action_out_proj.bias"]
    )
    assert torch.equal(state["generation.embedding.sos"], source["model.wm_sos_token_embs"][0])
    assert torch.equal(
        state["generation.tokenizer.decoder.conv_out.weight"], source["model.vae.decoder.conv_out.weight"]
    )
    assert set(report.dropped) == {
        P + "gemma_expert.lm_head.weight",
        P + "gemma_wm_expert.lm_head.weight",
        "model.temporal_conv.conv.weight",
        "model.temporal_conv.conv.bias",
        "model.wm_hist_pos_embs",
        "model.wm_cond_pos_embs",
        "model.lvl_1L",
    } | _dead_understanding_keys(config)
    assert set(report.not_provided) == {
        "generation.history"
    }  # our history encoder takes any number of frames
    assert len(report.loaded) == len(state) - len(report.not_provided["generation.history"])


def test_pi0_fills_understanding_and_action_and_reports_the_rest() -> None:
    config = _config()
    policy = F1Model(config)
    source = _pi0(config, torch.Generator().manual_seed(0))
    report = import_weights(policy, source, "pi0")
    assert {"trunk.experts.gen", "generation.embedding", "generation.head", "generation.tokenizer"} <= set(
        report.not_provided
    )
    assert not any(
        key.startswith(("trunk.experts.und", "trunk.experts.act", "adapters."))
        for part in report.not_provided.values()
        for key in part
    )
    dead = _dead_understanding_keys(config)
    # pi0's action expert is read: all of its layers load
    assert set(report.dropped) == dead | {P + "gemma_expert.lm_head.weight"}
    assert all("last_layer_kv_only" in report.dropped[key] for key in dead)
    assert all(f"dropped {key}: not built" in report.summary() for key in dead)
    last = config.trunk.n_layers - 1
    assert torch.equal(
        policy.state_dict()[f"trunk.experts.und.layers.{last}.self_attn.k_proj.weight"],
        source[P + f"paligemma.language_model.model.layers.{last}.self_attn.k_proj.weight"],
    )
    # a file without those tensors (written by another tool that knew them dead) imports as well
    trimmed = import_weights(F1Model(config), {k: v for k, v in source.items() if k not in dead}, "pi0")
    assert trimmed.loaded == report.loaded
    assert set(trimmed.dropped) == {P + "gemma_expert.lm_head.weight"}


def test_paligemma_in_the_newer_transformers_layout_fills_the_understanding_expert() -> None:
    config = _config()
    policy = F1Model(config)
    old = _paligemma(config, torch.Generator().manual_seed(0), prefix="")
    newer = {}
    for key, value in old.items():
        key = key.replace("language_model.model.", "model.language_model.").replace(
            "vision_tower.", "model.vision_tower."
        )
        newer[key.replace("multi_modal_projector.", "model.multi_modal_projector.")] = value
    newer["lm_head.weight"] = old["language_model.model.embed_tokens.weight"]
    report = import_weights(policy, newer, "paligemma")
    assert "understanding.vision.backbone.pos_embed" in report.transformed
    key = "layers.1.self_attn.v_proj.weight"
    assert policy.state_dict()[f"trunk.experts.und.{key}"].equal(old[f"language_model.model.{key}"])
    assert set(report.dropped) == _dead_understanding_keys(config) | {LM_HEAD}


def test_every_missing_unexpected_and_misshapen_key_is_reported_and_nothing_changes() -> None:
    config = _config()
    policy = F1Model(config)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    source = _f1(config, torch.Generator().manual_seed(0))
    del source[P + "gemma_expert.model.layers.1.mlp.up_proj.weight"]
    source["model.memory_bank.keys"] = torch.zeros(2)
    source["model.action_out_proj.weight"] = torch.zeros(7, 64)
    with pytest.raises(CheckpointError) as error:
        import_weights(policy, source, "f1")
    message = str(error.value)
    assert f"1 missing keys: ['{P}gemma_expert.model.layers.1.mlp.up_proj.weight']" in message
    assert "1 unexpected keys: ['model.memory_bank.keys']" in message
    assert (
        "adapters.pad6.action_decoder.velocity_out.weight <- model.action_out_proj.weight: expected (6, 64)"
        in message
    )
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())


def test_action_heads_need_pi0s_time_convention_and_a_known_embodiment() -> None:
    config = _config()
    ours = config.replace(action=dataclasses.replace(config.action, time_convention="tau"))
    with pytest.raises(ConfigError, match=r"action\.time_convention"):
        import_weights(F1Model(ours), {}, "pi0")
    with pytest.raises(ConfigError, match="embodiment: expected one of"):
        import_weights(F1Model(config), {}, "pi0", embodiment="ufo")


def test_pi0_time_convention_is_converted_at_the_adapter_edge() -> None:
    policy = F1Model(_config())
    adapter = policy.adapters["pad6"]
    hidden = torch.randn(2, 8, policy.config.trunk.action_width)
    linear = adapter.action_decoder.velocity_out
    torch.testing.assert_close(adapter.decode(hidden), -linear(hidden))  # pi0 predicts eps - a


def test_var_vqvae_file_loads_into_the_tokenizer(tmp_path: Path) -> None:
    config = _config()
    torch.manual_seed(3)
    vae = VQVAE(config.generation.vqvae)
    path = tmp_path / "vae.pth"
    torch.save(vae.state_dict(), path)
    report = convert_checkpoint(path, tmp_path / "out", source="var_vqvae", config=config)
    loaded = F1Policy.load(tmp_path / "out").model
    assert len(report.loaded) == len(vae.state_dict())
    assert torch.equal(
        loaded.state_dict()["generation.tokenizer.quantize.embedding.weight"], vae.quantize.embedding.weight
    )


def test_convert_checkpoint_writes_an_f1_checkpoint_from_a_published_file(tmp_path: Path) -> None:
    config = _config()
    path = tmp_path / "model.safetensors"
    save_file(_pi0(config, torch.Generator().manual_seed(0)), str(path))
    report = convert_checkpoint(path, tmp_path / "converted", source="pi0", config=config)
    policy = F1Policy.load(tmp_path / "converted")
    assert policy.config.action.time_convention == "pi0"
    assert len(report.loaded) > 0


def test_imported_siglip_weights_reproduce_transformers_siglip() -> None:
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    torch.manual_seed(0)
    hf = transformers.SiglipVisionModel(hf_config).eval()
    config = _config()
    policy = F1Model(config).eval()
    siglip = {
        "vision_tower.vision_model." + k: v for k, v in hf.state_dict().items() if not k.startswith("head.")
    }
    rest = _paligemma(config, torch.Generator().manual_seed(0), prefix="")
    rest = {k: v for k, v in rest.items() if not k.startswith("vision_tower.")}
    import_weights(policy, rest | siglip, "paligemma")
    images = torch.rand(2, 3, 28, 28)
    ours = policy.understanding.vision(images)
    theirs = hf(pixel_values=(images - 0.5) / 0.5).last_hidden_state
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_the_f1_mapping_covers_every_tensor_of_the_published_shape_but_the_history_encoder() -> None:
    from f1.model.weight_import import _rules

    config = preset("f1-4.2b")
    config = config.replace(action=dataclasses.replace(config.action, time_convention="pi0"))
    with torch.device("meta"):
        policy = F1Model(config)
    targets = set(policy.state_dict())
    mapped = {rule.target for rule in _rules(policy, "f1", None)}
    assert mapped <= targets
    assert {key.split(".")[1] for key in targets - mapped} == {"history"}
    sources = [key for rule in _rules(policy, "f1", None) for key in rule.sources]
    assert len(sources) == len(set(sources))  # no source tensor feeds two targets


EMBED = P + "paligemma.language_model.model.embed_tokens.weight"
LM_HEAD = P + "paligemma.language_model.lm_head.weight"


@pytest.mark.parametrize("layout", ["embed_tokens only", "lm_head only", "both, equal"])
@pytest.mark.parametrize("source", ["pi0", "f1"])
def test_the_tied_language_embedding_imports_from_either_key_or_both(layout: str, source: str) -> None:
    # LeRobot's save_pretrained (and the hub's lerobot/pi0 files) write only lm_head; older exports only
    # embed_tokens; transformers' own save both.
    config = _config()
    tensors = (_f1 if source == "f1" else _pi0)(config, torch.Generator().manual_seed(0))
    embedding = tensors[EMBED]
    if layout == "lm_head only":
        tensors[LM_HEAD] = tensors.pop(EMBED)
    elif layout == "both, equal":
        tensors[LM_HEAD] = embedding.clone()
    policy = F1Model(config)
    report = import_weights(policy, tensors, source)
    vocab = config.language.vocab_size
    assert torch.equal(policy.state_dict()["understanding.language.embed_tokens.weight"], embedding[:vocab])
    described = report.transformed["understanding.language.embed_tokens.weight"]
    assert ("tied lm_head" in described) == (layout == "lm_head only")
    assert (LM_HEAD in report.dropped) == (layout == "both, equal")


def test_two_different_copies_of_the_tied_embedding_are_refused_and_nothing_changes() -> None:
    config = _config()
    tensors = _pi0(config, torch.Generator().manual_seed(0))
    tensors[LM_HEAD] = tensors[EMBED] + 1e-3
    policy = F1Model(config)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"lm_head\.weight: expected the tied copy of .*embed_tokens"):
        import_weights(policy, tensors, "pi0")
    tensors[LM_HEAD] = tensors[EMBED][:10]
    with pytest.raises(CheckpointError, match=r"shapes \(49472, 64\) and \(10, 64\)"):
        import_weights(policy, tensors, "pi0")
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())
