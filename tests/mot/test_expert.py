"""Experts: own weights per expert, Gemma parameter names, shared head layout."""

from __future__ import annotations

from mot import ExpertConfig, MixtureOfTransformers, MoTConfig


def test_experts_have_own_weights_with_own_widths_and_gemma_names():
    config = MoTConfig(
        n_layers=2,
        n_heads=4,
        n_kv_heads=1,
        head_dim=8,
        experts={"und": ExpertConfig(24, 40), "act": ExpertConfig(12, 20)},
    )
    model = MixtureOfTransformers(config)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["experts.und.layers.1.self_attn.q_proj.weight"] == (32, 24)
    assert shapes["experts.act.layers.1.self_attn.q_proj.weight"] == (32, 12)
    assert shapes["experts.act.layers.0.self_attn.k_proj.weight"] == (8, 12)
    assert shapes["experts.und.layers.0.mlp.gate_proj.weight"] == (40, 24)
    assert shapes["experts.act.norm.weight"] == (12,)
    per_layer = {n.split(".", 4)[4] for n in shapes if n.startswith("experts.und.layers.0.")}
    assert per_layer == {
        "input_layernorm.weight",
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
        "self_attn.o_proj.weight",
        "post_attention_layernorm.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
    }
    und, act = model.experts["und"].layers[0], model.experts["act"].layers[0]
    assert und.self_attn.q_proj.weight.data_ptr() != act.self_attn.q_proj.weight.data_ptr()
