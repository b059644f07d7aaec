"""Parameter counts on the meta device (the published shape) and FLOP counts checked against torch."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from f1.model import F1Model, count_parameters, inference_flops, preset


def test_the_published_shape_builds_3_57_billion_parameters_leaving_out_the_unused_ones() -> None:
    counts = count_parameters(preset("f1-4.2b"))
    assert counts["total"] == pytest.approx(3.57e9, rel=0.01)
    # Gemma-2B: 18 layers of width 2048, 8 query heads and 1 key/value head of 256, MLP 16384
    width, heads, kv, mlp = 2048, 8 * 256, 256, 16384
    layer = 2 * width * heads + 2 * width * kv + 3 * width * mlp + 2 * width
    # the last layer gives keys and values only: its q/o projections, MLP, post-attention norm and the
    # final norm are not built
    dead = 2 * width * heads + 3 * width * mlp + 2 * width
    assert counts["understanding_expert"] == 18 * layer + width - dead
    # PaliGemma 2.92B: SigLIP So400m/14 (412M), projector, the 257152 x 2048 embedding, Gemma-2B layers
    assert counts["paligemma"] + dead == pytest.approx(2.92e9, rel=0.01)
    assert counts["vision"] == pytest.approx(412.4e6, rel=0.001)
    assert counts["language_embedding"] == 257152 * 2048
    assert counts["generation_expert"] == counts["action_expert"] == pytest.approx(0.311e9, rel=0.01)
    assert counts["vqvae"] == pytest.approx(108.9e6, rel=0.001)
    assert counts["total"] == sum(v for k, v in counts.items() if k not in ("total", "paligemma"))


def test_the_meta_device_build_allocates_nothing() -> None:
    with torch.device("meta"):
        policy = F1Model(preset("f1-4.2b"))
    assert all(p.is_meta for p in policy.parameters())


def test_no_gen_drops_the_generation_expert_and_the_tokenizer() -> None:
    counts = count_parameters(preset("tiny", mode="no_gen"))
    assert counts["generation_expert"] == counts["generation_heads"] == counts["vqvae"] == 0


def test_closed_form_flops_match_torchs_count_of_a_real_run(tiny_policy, observation_factory) -> None:
    """Every matmul torch counts in a real ``plan`` equals the closed form, once attention is set aside.

    On the CPU torch's counter skips fused attention, so its closed-form part (2 matmuls of
    ``L_q x L_k x heads x head_dim`` per layer, in the trunk and in the ViT) is removed from ours.
    """
    policy = tiny_policy("no_gen")
    config, trunk = policy.config, policy.config.trunk
    flops = inference_flops(config)
    with FlopCounterMode(display=False) as counter:
        policy.plan(observation_factory())
    und, chunk = policy.model.understanding.length, 1 + config.action.chunk_size
    per_layer = 4 * trunk.n_heads * trunk.head_dim
    # the understanding expert's last layer gives keys and values only: no attention of its own there
    prefix = (trunk.n_layers - 1) * und * und
    trunk_attention = per_layer * (prefix + trunk.n_layers * config.action.flow_steps * chunk * (und + chunk))
    vision = config.vision
    tokens = (
        vision.image_size // vision.patch_size
    ) ** 2 + policy.model.understanding.vision.num_prefix_tokens
    vision_attention = 4 * vision.depth * tokens * tokens * vision.width * len(config.cameras)
    expected = flops["total"] - trunk_attention - vision_attention
    assert counter.get_total_flops() == pytest.approx(expected, rel=1e-9)
