"""Weight import: transformers' Gemma / PaliGemma and LeRobot's pi0 layouts load into experts."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from mot import (  # noqa: E402
    AttentionSpec,
    ExpertConfig,
    MixtureOfTransformers,
    MoTConfig,
    Segment,
    WeightImportError,
    gemma_config_to_mot,
    load_gemma_expert,
    load_pi0,
)

TEXT = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=16,
)
EXPERT = dict(TEXT, hidden_size=16, intermediate_size=24)


def _random_gemma(config: dict, seed: int):
    torch.manual_seed(seed)
    model = transformers.GemmaModel(transformers.GemmaConfig(**config)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:  # Gemma norms start at zero: randomise them so (1 + w) is exercised
                parameter.normal_(0.0, 0.5)
    return model


def _embed(model, ids):
    """Token embeddings times sqrt(width), as Gemma does before its first layer."""
    weight = model.get_input_embeddings().weight
    return torch.nn.functional.embedding(ids, weight) * math.sqrt(weight.shape[1])


@pytest.mark.parametrize("padded", [False, True])
def test_gemma_hidden_states_match_transformers(padded):
    reference = _random_gemma(TEXT, seed=0)
    model = MixtureOfTransformers(gemma_config_to_mot(reference.config.to_dict(), "lm")).eval()
    leftovers = load_gemma_expert(model, "lm", reference.state_dict())
    assert list(leftovers) == ["embed_tokens.weight"]
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    attention = torch.ones(2, 9, dtype=torch.long)
    if padded:
        attention[1, 6:] = 0
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=attention).last_hidden_state
        got = model({"text": _embed(reference, ids)}, AttentionSpec.causal_lm(9), {"text": attention.sum(1)})
    assert (got["text"][0] - expected[0]).abs().max() <= 1e-5
    assert (got["text"][1, :6] - expected[1, :6]).abs().max() <= 1e-5


def test_paligemma_language_model_loads_from_the_full_state_dict():
    torch.manual_seed(0)
    config = transformers.PaliGemmaConfig(
        text_config=dict(TEXT, model_type="gemma"),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
        ),
    )
    paligemma = transformers.PaliGemmaForConditionalGeneration(config).eval()
    language_model = paligemma.model.language_model
    with torch.no_grad():
        for name, parameter in language_model.named_parameters():
            if "norm" in name:
                parameter.normal_(0.0, 0.5)
    model = MixtureOfTransformers(gemma_config_to_mot(config.text_config.to_dict(), "vlm")).eval()
    load_gemma_expert(model, "vlm", paligemma.state_dict())  # finds the decoder among vision weights
    assert config.text_config.use_bidirectional_attention  # PaliGemma's prefix is one bidirectional block
    spec = AttentionSpec([Segment("text", "vlm", 7, "full")])
    ids = torch.randint(0, 64, (1, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = language_model(input_ids=ids).last_hidden_state
        got = model({"text": _embed(language_model, ids)}, spec)["text"]
    assert (got - expected).abs().max() <= 1e-5


NEW_VLM = "model.paligemma_with_expert.paligemma.model.language_model."  # transformers >= 4.52
OLD_VLM = "model.paligemma_with_expert.paligemma.language_model.model."  # older LeRobot / F1 checkpoints


def _pi0_state_dict(vlm, expert, vlm_prefix: str = NEW_VLM) -> dict[str, torch.Tensor]:
    """A pi0 policy state dict in LeRobot's layout, built from two transformers decoders."""
    state = {f"{vlm_prefix}{k}": v for k, v in vlm.state_dict().items()}
    state.update(
        {f"model.paligemma_with_expert.gemma_expert.model.{k}": v for k, v in expert.state_dict().items()}
    )
    state["model.state_proj.weight"] = torch.randn(16, 8)
    state["model.action_in_proj.weight"] = torch.randn(16, 8)
    state[
        "model.paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"
    ] = torch.randn(4, 4)
    return state


@pytest.mark.parametrize("vlm_prefix", [NEW_VLM, OLD_VLM])
def test_pi0_state_dict_maps_onto_a_two_expert_model(vlm_prefix):
    vlm, expert = _random_gemma(TEXT, seed=0), _random_gemma(EXPERT, seed=1)
    config = MoTConfig(
        n_layers=2,
        n_heads=4,
        n_kv_heads=1,
        head_dim=16,
        experts={"vlm": ExpertConfig(32, 48), "act": ExpertConfig(16, 24)},
    )
    model = MixtureOfTransformers(config).eval()
    rest = load_pi0(model, _pi0_state_dict(vlm, expert, vlm_prefix))
    assert sorted(rest) == sorted(
        [
            f"{vlm_prefix}embed_tokens.weight",
            "model.paligemma_with_expert.gemma_expert.model.embed_tokens.weight",
            "model.state_proj.weight",
            "model.action_in_proj.weight",
            "model.paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
        ]
    )
    # each expert, run alone as a causal LM, reproduces its transformers decoder
    for name, reference in (("vlm", vlm), ("act", expert)):
        ids = torch.randint(0, 64, (1, 5), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            expected = reference(input_ids=ids).last_hidden_state
            got = model({"text": _embed(reference, ids)}, AttentionSpec.causal_lm(5, expert=name))["text"]
        assert (got - expected).abs().max() <= 1e-5
    # and together they form pi0's prefix/suffix model
    spec = AttentionSpec.pi0(prefix_length=5, chunk=3, prefix_expert="vlm", suffix_expert="act")
    with torch.no_grad():
        out = model({"prefix": torch.randn(1, 5, 32), "suffix": torch.randn(1, 4, 16)}, spec)
    assert out["suffix"].shape == (1, 4, 16)


def test_import_errors_name_the_key_and_the_shapes():
    reference = _random_gemma(TEXT, seed=0)
    state = reference.state_dict()
    narrow = MixtureOfTransformers(
        MoTConfig(2, 4, 1, 16, experts={"lm": ExpertConfig(width=32, mlp_width=40)})
    )
    before = {k: v.clone() for k, v in narrow.state_dict().items()}
    with pytest.raises(
        WeightImportError, match=r"mlp.gate_proj.weight'\]: expected shape \(40, 32\).*\(48, 32\)"
    ):
        load_gemma_expert(narrow, "lm", state)
    assert all(torch.equal(before[k], v) for k, v in narrow.state_dict().items()), "failed import wrote"
    model = MixtureOfTransformers(gemma_config_to_mot(reference.config.to_dict(), "lm"))
    missing = {k: v for k, v in state.items() if k != "layers.1.mlp.up_proj.weight"}
    with pytest.raises(WeightImportError, match=r"missing key 'layers\.1\.mlp\.up_proj\.weight'"):
        load_gemma_expert(model, "lm", missing)
    shallow = {k: v for k, v in state.items() if not k.startswith("layers.1.")}
    with pytest.raises(WeightImportError, match=r"expected 2 layers under '' \(the model's depth\), found 1"):
        load_gemma_expert(model, "lm", shallow)
    with pytest.raises(WeightImportError, match="unknown expert 'act'"):
        load_gemma_expert(model, "act", state)
    doubled = {**state, **{f"other.{k}": v for k, v in state.items()}}
    with pytest.raises(WeightImportError, match="expected exactly one Gemma decoder"):
        load_gemma_expert(model, "lm", doubled)
    assert load_gemma_expert(model, "lm", doubled, prefix="other.") == {
        "embed_tokens.weight": state["embed_tokens.weight"]
    }


def test_gemma_config_conversion_rejects_other_activations():
    with pytest.raises(ValueError, match="expected 'gelu_pytorch_tanh'"):
        gemma_config_to_mot(dict(TEXT, hidden_act="silu"))
    with pytest.raises(ValueError, match="missing Gemma keys"):
        gemma_config_to_mot({"hidden_size": 8})
    assert gemma_config_to_mot(dict(TEXT, rope_theta=500.0)).rope_base == 500.0


def test_loaded_weights_keep_the_model_dtype():
    reference = _random_gemma(TEXT, seed=0)
    model = MixtureOfTransformers(gemma_config_to_mot(reference.config.to_dict(), "lm")).to(torch.bfloat16)
    load_gemma_expert(model, "lm", reference.state_dict())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def _with_kv_only_expert(config: MoTConfig, expert: str) -> MoTConfig:
    experts = dict(config.experts)
    experts[expert] = dataclasses.replace(experts[expert], last_layer_kv_only=True)
    return dataclasses.replace(config, experts=experts)


def test_a_kv_only_expert_loads_a_gemma_decoder_dropping_its_dead_tensors_with_a_logged_reason(caplog):
    reference = _random_gemma(TEXT, seed=0)
    two = dataclasses.replace(
        gemma_config_to_mot(reference.config.to_dict(), "lm"),
        experts={"lm": ExpertConfig(32, 48), "act": ExpertConfig(16, 24)},
    )
    full = MixtureOfTransformers(two).eval()
    kv_only = MixtureOfTransformers(_with_kv_only_expert(two, "lm")).eval()
    load_gemma_expert(full, "lm", reference.state_dict())
    with caplog.at_level(logging.INFO, logger="mot.weights"):
        leftovers = load_gemma_expert(kv_only, "lm", reference.state_dict())
    assert list(leftovers) == ["embed_tokens.weight"]
    dead = sorted(kv_only.experts["lm"].unbuilt_tensors)
    assert len(dead) == 7
    assert "dropped 7 tensors of expert 'lm'" in caplog.text
    assert "last_layer_kv_only" in caplog.text
    assert all(name in caplog.text for name in dead)
    spec = AttentionSpec.pi0(prefix_length=5, chunk=2, prefix_expert="lm", suffix_expert="act")
    prefix = {"prefix": torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(1))}
    with torch.no_grad():
        caches = [model.prefill(prefix, spec) for model in (full, kv_only)]
    assert all(torch.equal(a, b) for a, b in zip(caches[0].keys, caches[1].keys))
    assert all(torch.equal(a, b) for a, b in zip(caches[0].values, caches[1].values))
    # dead tensors may be absent; present, they are checked like the others
    trimmed = {k: v for k, v in reference.state_dict().items() if k not in dead}
    assert list(load_gemma_expert(kv_only, "lm", trimmed)) == ["embed_tokens.weight"]
    misshapen = {**reference.state_dict(), "layers.1.mlp.up_proj.weight": torch.zeros(40, 32)}
    with pytest.raises(
        WeightImportError, match=r"layers\.1\.mlp\.up_proj\.weight'\]: expected shape \(48, 32\)"
    ):
        load_gemma_expert(kv_only, "lm", misshapen)


def test_pi0_loads_into_a_kv_only_prefix_expert_with_the_same_suffix_outputs():
    vlm, expert = _random_gemma(TEXT, seed=0), _random_gemma(EXPERT, seed=1)
    config = MoTConfig(2, 4, 1, 16, experts={"vlm": ExpertConfig(32, 48), "act": ExpertConfig(16, 24)})
    full = MixtureOfTransformers(config).eval()
    kv_only = MixtureOfTransformers(_with_kv_only_expert(config, "vlm")).eval()
    state = _pi0_state_dict(vlm, expert)
    assert sorted(load_pi0(kv_only, state)) == sorted(load_pi0(full, state))
    spec = AttentionSpec.pi0(prefix_length=5, chunk=3, prefix_expert="vlm", suffix_expert="act")
    generator = torch.Generator().manual_seed(2)
    inputs = {
        "prefix": torch.randn(1, 5, 32, generator=generator),
        "suffix": torch.randn(1, 4, 16, generator=generator),
    }
    with torch.no_grad():
        expected, got = full(inputs, spec), kv_only(inputs, spec)
    assert list(got) == ["suffix"]
    assert torch.equal(got["suffix"], expected["suffix"])
