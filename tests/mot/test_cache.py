"""KVCache: prefill once, run downstream segments against it, or append blocks one at a time."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mot import (
    ArgumentTypeError,
    AttentionSpec,
    Blockwise,
    ExpertConfig,
    KVCache,
    MixtureOfTransformers,
    MoTConfig,
    Segment,
    SpecError,
)

CUTS = [6, 7, 11, 20]  # slots where nothing before sees past: after und, after each gen scale


def test_action_runs_against_a_cached_prefix_equal_the_full_forward(uga_model, uga_spec, make_inputs):
    inputs = make_inputs(uga_model, uga_spec)
    with torch.no_grad():
        full = uga_model(inputs, uga_spec)
        cache = uga_model.prefill({"und": inputs["und"], "gen": inputs["gen"]}, uga_spec)
        keys_before = [k.clone() for k in cache.keys]
        for step in range(10):  # the action expert's ODE steps: new action tokens, same cache
            actions = inputs["act"] + step
            cached = uga_model.extend({"act": actions}, uga_spec, cache, append=False)
            uncached = uga_model(dict(inputs, act=actions), uga_spec)
            assert (cached["act"] - uncached["act"]).abs().max() <= 1e-5
    assert cache.length == 20
    assert all(torch.equal(a, b) for a, b in zip(keys_before, cache.keys)), "append=False changed the cache"
    with torch.no_grad():
        again = uga_model.extend({"act": inputs["act"]}, uga_spec, cache)
    assert torch.equal(again["act"], full["act"]), "whole query groups give the very same floats"


@settings(max_examples=12, deadline=None)
@given(
    cuts=st.lists(st.sampled_from(CUTS), min_size=1, max_size=4, unique=True),
    und_valid=st.lists(st.integers(1, 6), min_size=2, max_size=2),
)
def test_cached_equals_uncached_for_random_split_points(uga_model, uga_spec, make_inputs, cuts, und_valid):
    inputs = make_inputs(uga_model, uga_spec)
    valid_lengths = {"und": und_valid}
    with torch.no_grad():
        full = uga_model(inputs, uga_spec, valid_lengths)
        cache = KVCache(uga_spec)
        pieces: dict[str, list[torch.Tensor]] = {n: [] for n in uga_spec.names}
        edges = [0, *sorted(cuts), uga_spec.total_length]
        for start, end in itertools.pairwise(edges):
            chunk = {}
            for seg in uga_spec.segments:
                s0 = uga_spec.start(seg.name)
                lo, hi = max(start, s0), min(end, s0 + seg.length)
                if lo < hi:
                    chunk[seg.name] = inputs[seg.name][:, lo - s0 : hi - s0]
            given_lengths = {n: v for n, v in valid_lengths.items() if n in chunk}
            out = uga_model.extend(chunk, uga_spec, cache, given_lengths, append=True)
            for name, tensor in out.items():
                pieces[name].append(tensor)
    for name in uga_spec.names:
        cached = torch.cat(pieces[name], dim=1)
        if name == "und":
            for b, n in enumerate(und_valid):
                assert (cached[b, :n] - full[name][b, :n]).abs().max() <= 1e-5
        else:
            assert (cached - full[name]).abs().max() <= 1e-5


def test_next_scale_generation_appends_one_scale_at_a_time(randomized):
    config = MoTConfig(n_layers=2, n_heads=2, n_kv_heads=2, head_dim=8, experts={"gen": ExpertConfig(16, 32)})
    model = randomized(MixtureOfTransformers(config).eval())
    scales = (1, 4, 9, 16)
    spec = AttentionSpec.next_scale(condition_length=3, scale_sizes=scales)
    cond, tokens = torch.randn(2, 3, 16), torch.randn(2, sum(scales), 16)
    with torch.no_grad():
        teacher_forced = model({"cond": cond, "scales": tokens}, spec)["scales"]
        cache = model.prefill({"cond": cond}, spec)
        outputs, start = [], 0
        for size in scales:
            outputs.append(
                model.extend({"scales": tokens[:, start : start + size]}, spec, cache, append=True)
            )
            start += size
            assert cache.length == 3 + start
    incremental = torch.cat([o["scales"] for o in outputs], dim=1)
    assert (incremental - teacher_forced).abs().max() <= 1e-5


def test_read_only_calls_reuse_their_masks_only_while_the_cache_is_unchanged(uga_model, make_inputs):
    # Masks and rotary tables of a read-only call (an ODE step) are derived once per cache state. The same
    # call after an append sits at later slots: it must get the new state's positions and masks.
    spec = AttentionSpec(
        segments=[
            Segment("und", expert="und", length=5),
            Segment("gen", expert="gen", length=6, rule="causal"),
        ],
        sees={"gen": ["und"]},
    )
    inputs = make_inputs(uga_model, spec)
    probe = inputs["gen"][:, :1] * 3
    valid = {"und": torch.tensor([3, 5])}
    with torch.no_grad():
        cache = KVCache(spec)
        uga_model.extend({"und": inputs["und"]}, spec, cache, valid, append=True)
        first = uga_model.extend({"gen": probe}, spec, cache)["gen"]
        assert torch.equal(uga_model.extend({"gen": probe}, spec, cache)["gen"], first)
        uga_model.extend({"gen": inputs["gen"][:, :2]}, spec, cache, append=True)
        later = uga_model.extend({"gen": probe}, spec, cache)["gen"]
        gen = torch.cat([inputs["gen"][:, :2], probe], dim=1)
        full = uga_model({"und": inputs["und"], "gen": gen}, spec, valid)["gen"][:, 2:]
    assert not torch.equal(later, first)
    torch.testing.assert_close(later, full, rtol=1e-5, atol=1e-5)


def test_a_cache_can_be_reused_from_a_clone(uga_model, uga_spec, make_inputs):
    inputs = make_inputs(uga_model, uga_spec)
    with torch.no_grad():
        cache = uga_model.prefill({"und": inputs["und"]}, uga_spec)
        branch = cache.clone()
        uga_model.extend({"gen": inputs["gen"]}, uga_spec, branch, append=True)
    assert cache.length == 6
    assert branch.length == 20
    assert cache.segments() == {"und": 6}
    assert branch.segments() == {"und": 6, "gen": 14}
    assert branch.memory_bytes() > cache.memory_bytes() > 0


def test_extend_rejects_chunks_that_cannot_be_exact(uga_model, uga_spec, make_inputs, make_progressive_spec):
    inputs = make_inputs(uga_model, uga_spec)
    with torch.no_grad():
        cache = uga_model.prefill({"und": inputs["und"]}, uga_spec)
        with pytest.raises(SpecError, match="cannot stop at token slot 8"):
            uga_model.extend({"gen": inputs["gen"][:, :2]}, uga_spec, cache)  # splits the 4-token scale
        with pytest.raises(SpecError, match="does not continue the sequence at slot 6"):
            uga_model.extend({"act": inputs["act"]}, uga_spec, cache)
        with pytest.raises(SpecError, match=r"expected batch size 2 \(the cache's\), received 1"):
            uga_model.extend({"gen": inputs["gen"][:1]}, uga_spec, cache)
        with pytest.raises(SpecError, match="different spec"):
            uga_model.extend({"gen": inputs["gen"]}, make_progressive_spec(6, (1, 4, 9), 3), cache)
        with pytest.raises(SpecError, match=r"valid_lengths\['und'\]: segment is not among the inputs"):
            uga_model.extend({"gen": inputs["gen"]}, uga_spec, cache, {"und": [1, 1]})
        with pytest.raises(TypeError, match="cache: expected a KVCache"):
            uga_model.extend({"gen": inputs["gen"]}, uga_spec, {"keys": []})
    assert cache.length == 6, "a rejected call must not change the cache"


def test_a_segment_split_across_calls_keeps_its_valid_lengths():
    spec = AttentionSpec([Segment("text", "lm", 6, Blockwise((3, 3)))])
    model = MixtureOfTransformers(MoTConfig(1, 2, 1, 4, experts={"lm": ExpertConfig(8, 8)}))
    x = torch.randn(2, 6, 8)
    cache = KVCache(spec)
    with torch.no_grad():
        model.extend({"text": x[:, :3]}, spec, cache, {"text": [6, 4]}, append=True)
        with pytest.raises(SpecError, match="partly cached with other valid lengths"):
            model.extend({"text": x[:, 3:]}, spec, cache, {"text": [6, 5]})
        second = model.extend({"text": x[:, 3:]}, spec, cache)
        full = model({"text": x}, spec, {"text": [6, 4]})
    assert (second["text"][0] - full["text"][0, 3:]).abs().max() <= 1e-5
    assert (second["text"][1, :1] - full["text"][1, 3:4]).abs().max() <= 1e-5


def test_segment_by_segment_runs_give_the_very_same_floats(uga_model, uga_spec, make_inputs):
    inputs = make_inputs(uga_model, uga_spec)
    with torch.no_grad():
        full = uga_model(inputs, uga_spec)
        cache = KVCache(uga_spec)
        parts = {
            name: uga_model.extend({name: inputs[name]}, uga_spec, cache, append=True)[name]
            for name in uga_spec.names
        }
    for name in uga_spec.names:
        assert torch.equal(parts[name], full[name]), name


@settings(max_examples=8, deadline=None)
@given(und_valid=st.lists(st.integers(1, 6), min_size=2, max_size=2))
def test_calls_against_a_padded_cache_give_the_floats_of_masks_derived_per_call(
    uga_model, uga_spec, make_inputs, und_valid
):
    # Calls that bring no valid lengths read slices of one mask and rotary table derived for the cache's
    # padding (made once, kept across appends); a call that brings lengths (here the segments' full
    # lengths: the same validity) derives its own. Both must give the very same floats.
    inputs = make_inputs(uga_model, uga_spec)
    batch = len(und_valid)
    outputs = []
    with torch.no_grad():
        for explicit in (False, True):
            cache = KVCache(uga_spec)
            uga_model.extend({"und": inputs["und"]}, uga_spec, cache, {"und": und_valid}, append=True)
            out = []
            for a, b in itertools.pairwise([0, 1, 5, 14]):  # the three scales of gen
                lengths = {"gen": [14] * batch} if explicit else None
                out.append(
                    uga_model.extend({"gen": inputs["gen"][:, a:b]}, uga_spec, cache, lengths, append=True)
                )
            memo = cache._padded_layout
            for _ in range(2):
                lengths = {"act": [5] * batch} if explicit else None
                out.append(uga_model.extend({"act": inputs["act"]}, uga_spec, cache, lengths))
            assert (cache._padded_layout is None) == explicit
            assert explicit or cache._padded_layout is memo, "derived once for the cache's valid lengths"
            outputs.append(out)
    for memoized, derived in zip(*outputs):
        for name in memoized:
            assert torch.equal(memoized[name], derived[name]), name


@pytest.mark.parametrize("padded", [False, True])
def test_a_prepared_downstream_call_gives_the_very_floats_of_extend_at_every_step(
    uga_model, uga_spec, make_inputs, padded
):
    inputs = make_inputs(uga_model, uga_spec)
    valid = {"und": torch.tensor([6, 4])} if padded else None
    with torch.no_grad():
        cache = KVCache(uga_spec)
        uga_model.extend({"und": inputs["und"]}, uga_spec, cache, valid, append=True)
        uga_model.extend({"gen": inputs["gen"]}, uga_spec, cache, append=True)
        call = uga_model.prepare_downstream({"act": inputs["act"]}, uga_spec, cache)
        for step in range(3):  # every ODE step of a plan reuses the one prepared call
            act = {"act": inputs["act"] * (step + 1)}
            got = uga_model.run_downstream(call, act)
            assert list(got) == ["act"]
            assert torch.equal(got["act"], uga_model.extend(act, uga_spec, cache)["act"])


def test_a_prepared_call_runs_against_the_cache_as_it_was_when_prepared(uga_model, uga_spec, make_inputs):
    inputs = make_inputs(uga_model, uga_spec)
    with torch.no_grad():
        cache = KVCache(uga_spec)
        uga_model.extend({"und": inputs["und"]}, uga_spec, cache, append=True)
        gen = {"gen": inputs["gen"][:, :1]}
        call = uga_model.prepare_downstream(gen, uga_spec, cache)
        before = uga_model.run_downstream(call, gen)["gen"]
        uga_model.extend(gen, uga_spec, cache, append=True)  # the cache grows; the call does not
        assert torch.equal(uga_model.run_downstream(call, gen)["gen"], before)


def test_prepare_and_run_downstream_refuse_what_extend_refuses_and_other_shapes(
    uga_model, uga_spec, make_inputs
):
    inputs = make_inputs(uga_model, uga_spec)
    cache = uga_model.prefill({"und": inputs["und"], "gen": inputs["gen"]}, uga_spec)
    with pytest.raises(ArgumentTypeError, match="cache: expected a KVCache, received dict"):
        uga_model.prepare_downstream({"act": inputs["act"]}, uga_spec, {})  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"inputs\['act'\]: expected shape \(B, n, 12\)"):
        uga_model.prepare_downstream({"act": inputs["act"][..., :5]}, uga_spec, cache)
    with pytest.raises(SpecError, match="expected batch size 2 \\(the cache's\\), received 1"):
        uga_model.prepare_downstream({"act": inputs["act"][:1]}, uga_spec, cache)
    call = uga_model.prepare_downstream({"act": inputs["act"]}, uga_spec, cache)
    with pytest.raises(ArgumentTypeError, match="call: expected a DownstreamCall, received KVCache"):
        uga_model.run_downstream(cache, {"act": inputs["act"]})  # type: ignore[arg-type]
    with pytest.raises(
        SpecError, match=r"inputs: expected the prepared segments \['act'\], received \['gen'\]"
    ):
        uga_model.run_downstream(call, {"gen": inputs["gen"]})
    with pytest.raises(SpecError, match=r"inputs\['act'\]: expected the prepared torch.float32 \(2, 5, 12\)"):
        uga_model.run_downstream(call, {"act": inputs["act"][:, :3]})
    with pytest.raises(SpecError, match=r"inputs\['act'\]: expected the prepared torch.float32"):
        uga_model.run_downstream(call, {"act": inputs["act"].double()})
