"""MixtureOfTransformers: agreement with a naive re-implementation, and the invariants of the design."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mot import (
    AttentionSpec,
    Blockwise,
    ExpertConfig,
    MixtureOfTransformers,
    MoTConfig,
    Segment,
    SpecError,
    reference_mask,
)

FAST = settings(max_examples=15, deadline=None)


def naive_forward(model, inputs, spec, valid_lengths=None):
    """Token-by-token reading of the architecture with explicit softmax, loops and the reference mask."""
    cfg = model.config
    batch = next(iter(inputs.values())).shape[0]
    mask = reference_mask(spec, valid_lengths, batch)
    owner = [seg for seg in spec.segments for _ in range(seg.length)]
    lengths = {n: [int(v) for v in vs] for n, vs in (valid_lengths or {}).items()}
    streams = [[inputs[s.name][b, i] for s in spec.segments for i in range(s.length)] for b in range(batch)]
    positions = []
    for b in range(batch):
        count, row = 0, []
        for seg in spec.segments:
            for i in range(seg.length):
                count += int(i < lengths.get(seg.name, [seg.length] * batch)[b])
                row.append(count - 1)
        positions.append(row)

    def norm(x, weight, eps):
        return x / torch.sqrt((x * x).mean() + eps) * (1 + weight)

    def rotate(x, position):
        half = cfg.head_dim // 2
        out = torch.empty_like(x)
        for i in range(half):
            angle = position / cfg.rope_base ** (2 * i / cfg.head_dim)
            c, s = math.cos(angle), math.sin(angle)
            out[..., i] = x[..., i] * c - x[..., i + half] * s
            out[..., i + half] = x[..., i + half] * c + x[..., i] * s
        return out

    group = cfg.n_heads // cfg.n_kv_heads
    for layer_index in range(cfg.n_layers):
        for b in range(batch):
            qs, ks, vs = [], [], []
            for t, x in enumerate(streams[b]):
                layer = model.experts[owner[t].expert].layers[layer_index]
                h = norm(x, layer.input_layernorm.weight, layer.input_layernorm.eps)
                q = (layer.self_attn.q_proj.weight @ h).view(cfg.n_heads, cfg.head_dim)
                k = (layer.self_attn.k_proj.weight @ h).view(cfg.n_kv_heads, cfg.head_dim)
                v = (layer.self_attn.v_proj.weight @ h).view(cfg.n_kv_heads, cfg.head_dim)
                qs.append(rotate(q, positions[b][t]))
                ks.append(rotate(k, positions[b][t]))
                vs.append(v)
            new = []
            for t, x in enumerate(streams[b]):
                layer = model.experts[owner[t].expert].layers[layer_index]
                heads = []
                for head in range(cfg.n_heads):
                    kv = head // group
                    scores = torch.stack([qs[t][head] @ ks[j][kv] for j in range(len(ks))])
                    scores = scores / math.sqrt(cfg.head_dim)
                    scores = scores.masked_fill(~mask[b, t], float("-inf"))
                    weights = torch.softmax(scores, dim=0)
                    heads.append(sum(w * vs[j][kv] for j, w in enumerate(weights)))
                x = x + layer.self_attn.o_proj.weight @ torch.cat(heads)
                h = norm(x, layer.post_attention_layernorm.weight, layer.post_attention_layernorm.eps)
                gate = F.gelu(layer.mlp.gate_proj.weight @ h, approximate="tanh")
                x = x + layer.mlp.down_proj.weight @ (gate * (layer.mlp.up_proj.weight @ h))
                new.append(x)
            streams[b] = new
    out, t = {}, 0
    for seg in spec.segments:
        expert = model.experts[seg.expert]
        out[seg.name] = torch.stack(
            [
                torch.stack(
                    [norm(streams[b][t + i], expert.norm.weight, expert.norm.eps) for i in range(seg.length)]
                )
                for b in range(batch)
            ]
        )
        t += seg.length
    return out


def _valid_rows(spec, name, valid_lengths, b):
    return (
        int(valid_lengths[name][b]) if valid_lengths and name in valid_lengths else spec.segment(name).length
    )


@pytest.mark.parametrize("valid_lengths", [None, {"und": [6, 3], "gen": [14, 5], "act": [5, 2]}])
def test_forward_matches_a_naive_token_by_token_implementation(
    uga_model, uga_spec, make_inputs, valid_lengths
):
    inputs = make_inputs(uga_model, uga_spec)
    with torch.no_grad():
        fast = uga_model(inputs, uga_spec, valid_lengths)
        slow = naive_forward(uga_model, inputs, uga_spec, valid_lengths)
    for name in uga_spec.names:
        for b in range(2):
            n = _valid_rows(uga_spec, name, valid_lengths, b)
            torch.testing.assert_close(fast[name][b, :n], slow[name][b, :n], atol=1e-5, rtol=1e-5)


@FAST
@given(
    segment=st.sampled_from(["act", "gen"]),
    token=st.integers(0, 4),
    scale=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
)
def test_downstream_tokens_never_change_upstream_outputs(
    uga_model, uga_spec, make_inputs, segment, token, scale
):
    inputs = make_inputs(uga_model, uga_spec)
    perturbed = dict(inputs)
    perturbed[segment] = inputs[segment].clone()
    perturbed[segment][:, token] += scale
    with torch.no_grad():
        before = uga_model(inputs, uga_spec)
        after = uga_model(perturbed, uga_spec)
    upstream = ["und"] if segment == "gen" else ["und", "gen"]
    for name in upstream:
        assert torch.equal(before[name], after[name]), f"{name} changed when {segment}[{token}] changed"


def test_upstream_outputs_are_bit_identical_with_or_without_the_downstream_segment(
    uga_model, uga_spec, make_inputs
):
    inputs = make_inputs(uga_model, uga_spec)
    with torch.no_grad():
        everything = uga_model(inputs, uga_spec)
        upstream_only = uga_model({"und": inputs["und"], "gen": inputs["gen"]}, uga_spec)
    assert torch.equal(everything["und"], upstream_only["und"])
    assert torch.equal(everything["gen"], upstream_only["gen"])


@FAST
@given(
    und_valid=st.lists(st.integers(1, 6), min_size=2, max_size=2),
    act_valid=st.lists(st.integers(1, 5), min_size=2, max_size=2),
    noise=st.floats(-100, 100, allow_nan=False),
)
def test_padding_never_influences_valid_tokens(uga_model, uga_spec, make_inputs, und_valid, act_valid, noise):
    valid_lengths = {"und": und_valid, "act": act_valid}
    inputs = make_inputs(uga_model, uga_spec)
    garbage = {name: x.clone() for name, x in inputs.items()}
    for name, lengths in valid_lengths.items():
        for b, n in enumerate(lengths):
            garbage[name][b, n:] += noise
    with torch.no_grad():
        clean = uga_model(inputs, uga_spec, valid_lengths)
        dirty = uga_model(garbage, uga_spec, valid_lengths)
    for name in uga_spec.names:
        for b in range(2):
            n = _valid_rows(uga_spec, name, valid_lengths, b)
            assert torch.equal(clean[name][b, :n], dirty[name][b, :n])


@FAST
@given(permutation=st.permutations(list(range(6))))
def test_permuting_a_full_segment_without_positions_permutes_its_outputs(
    uga_model, uga_spec, make_inputs, permutation
):
    model = MixtureOfTransformers(dataclasses.replace(uga_model.config, use_rotary=False))
    model.load_state_dict(uga_model.state_dict())
    inputs = make_inputs(model, uga_spec)
    order = torch.tensor(permutation)
    shuffled = dict(inputs, und=inputs["und"][:, order])
    with torch.no_grad():
        out = model(inputs, uga_spec)
        out_shuffled = model(shuffled, uga_spec)
    torch.testing.assert_close(out_shuffled["und"], out["und"][:, order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_shuffled["gen"], out["gen"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_shuffled["act"], out["act"], atol=1e-5, rtol=1e-5)


def test_positions_follow_cumsum_of_valid_tokens_across_segments(uga_model, uga_spec, make_inputs):
    # Padding in 'und' shifts the positions of everything after it: the model with padded 'und' of valid
    # length 4 must equal the model run on the 4 valid tokens alone (no padding slots at all).
    inputs = make_inputs(uga_model, uga_spec, batch=1)
    short_spec = AttentionSpec(
        segments=[Segment("und", "und", 4), uga_spec.segment("gen"), uga_spec.segment("act")],
        sees=uga_spec.sees,
    )
    with torch.no_grad():
        padded = uga_model(inputs, uga_spec, {"und": [4]})
        short = uga_model(dict(inputs, und=inputs["und"][:, :4]), short_spec)
    torch.testing.assert_close(padded["und"][:, :4], short["und"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded["act"], short["act"], atol=1e-5, rtol=1e-5)


def test_flex_backend_matches_sdpa(uga_model, uga_spec, make_inputs):
    flex = MixtureOfTransformers(dataclasses.replace(uga_model.config, attention_backend="flex"))
    flex.load_state_dict(uga_model.state_dict())
    inputs = make_inputs(uga_model, uga_spec)
    valid_lengths = {"und": [6, 2]}
    with torch.no_grad():
        a = uga_model(inputs, uga_spec, valid_lengths)
        b = flex(inputs, uga_spec, valid_lengths)
    torch.testing.assert_close(b["act"], a["act"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b["und"][1, :2], a["und"][1, :2], atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_expert(uga_model, uga_spec, make_inputs):
    model = MixtureOfTransformers(uga_model.config)
    model.load_state_dict(uga_model.state_dict())
    out = model(make_inputs(model, uga_spec), uga_spec)
    sum(o.square().mean() for o in out.values()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_same_expert_segments_share_weights(randomized):
    config = MoTConfig(2, 2, 2, 4, experts={"gen": ExpertConfig(8, 16)})
    model = randomized(MixtureOfTransformers(config))
    spec = AttentionSpec.next_scale(condition_length=2, scale_sizes=(1, 4))
    x = torch.randn(1, 7, 8)
    with torch.no_grad():
        split = model({"cond": x[:, :2], "scales": x[:, 2:]}, spec)
        one = model({"all": x}, AttentionSpec([Segment("all", "gen", 7, Blockwise((2, 1, 4)))]))
    # cond is bidirectional and does not see scales, which are block-causal and see cond: same as one
    # blockwise segment whose first block is the condition.
    torch.testing.assert_close(
        torch.cat([split["cond"], split["scales"]], 1), one["all"], atol=1e-6, rtol=1e-6
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda x: {**x, "und": x["und"][..., :5]}, r"inputs\['und'\]: expected shape \(B, n, 24\)"),
        (lambda x: {**x, "act": x["act"][:1]}, r"inputs\['act'\]: expected batch size 2, received 1"),
        (lambda x: {**x, "gen": x["gen"].double()}, r"inputs\['gen'\]: expected dtype torch.float32"),
        (lambda x: {**x, "xyz": x["und"]}, "unknown segment 'xyz'"),
        (lambda x: {"und": x["und"], "act": x["act"]}, "does not continue the sequence"),
        (lambda x: {**x, "und": x["und"][:, :3]}, r"inputs\['und'\]: expected 6 tokens"),
        (lambda x: {"und": x["und"][:, :3]}, "cannot stop at token slot 3"),
    ],
)
def test_bad_inputs_raise_a_clear_error(uga_model, uga_spec, make_inputs, mutate, message):
    with pytest.raises(SpecError, match=message):
        uga_model(mutate(make_inputs(uga_model, uga_spec)), uga_spec)


def test_a_spec_with_an_unknown_expert_is_rejected(uga_model):
    with pytest.raises(SpecError, match=r"experts \['lm'\] are not in this model"):
        uga_model({"text": torch.zeros(1, 3, 24)}, AttentionSpec.causal_lm(3))
