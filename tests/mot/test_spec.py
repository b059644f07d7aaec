"""AttentionSpec: construction, validation, the ready-made specs and their masks."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch

from mot import AttentionSpec, Blockwise, Segment, SpecError, compile_mask, reference_mask


def cumsum_convention_mask(flags: list[int]) -> torch.Tensor:
    """openpi/big_vision convention: block = cumsum(flags); token i sees j iff block(j) <= block(i)."""
    blocks = torch.cumsum(torch.tensor(flags), dim=0)
    return blocks[None, :] <= blocks[:, None]


def test_a_plain_causal_lm_is_one_causal_segment():
    spec = AttentionSpec.causal_lm(5)
    assert torch.equal(compile_mask(spec)[0], torch.ones(5, 5, dtype=torch.bool).tril())


def test_pi0_prefix_suffix_spec_matches_the_cumsum_convention():
    spec = AttentionSpec(
        segments=[Segment("prefix", "vlm", 4), Segment("suffix", "act", 4, Blockwise((1, 3)))],
        sees={"suffix": ["prefix"]},
    )
    flags = [1, 0, 0, 0, 1, 1, 0, 0]  # prefix (4), state (1), actions (3): each block starts with a 1
    assert torch.equal(compile_mask(spec)[0], cumsum_convention_mask(flags))
    assert spec == AttentionSpec.pi0(prefix_length=4, chunk=3)


def test_f1_uga_spec_matches_the_cumsum_convention_without_the_published_off_by_one(make_progressive_spec):
    spec = make_progressive_spec(3, (1, 4), 2)
    flags = [1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0]  # und (3), gen scales (1, 4), state (1), actions (2)
    assert torch.equal(compile_mask(spec)[0], cumsum_convention_mask(flags))
    und = slice(0, 3)
    assert not compile_mask(spec)[0, und, 3:].any(), "understanding never sees generation or action"


def test_var_next_scale_spec_is_block_causal_over_scales():
    spec = AttentionSpec.next_scale(condition_length=1, scale_sizes=(1, 4, 9))
    flags = [1] + [1] + [1, 0, 0, 0] + [1] + [0] * 8
    assert torch.equal(compile_mask(spec)[0], cumsum_convention_mask(flags))


def test_blockwise_sizes_must_sum_to_the_segment_length():
    with pytest.raises(SpecError, match=r"sum to 5, expected the segment length 6"):
        Segment("gen", "gen", 6, Blockwise((1, 4)))


@pytest.mark.parametrize(
    ("segments", "sees", "message"),
    [
        ([Segment("a", "x", 2)], {"b": ["a"]}, "unknown segment 'b'"),
        ([Segment("a", "x", 2)], {"a": ["zzz"]}, "unknown segment 'zzz'"),
        ([Segment("a", "x", 2), Segment("a", "y", 1)], {}, "duplicate segment names"),
        ([Segment("a", "x", 2)], {"a": ["a"]}, "sees itself through its rule"),
        ([Segment("a", "x", 2, "none")], {}, "query rows would see no key"),
        ([], {}, "at least one Segment"),
    ],
)
def test_bad_specs_raise_a_clear_error(segments, sees, message):
    with pytest.raises(SpecError, match=message):
        AttentionSpec(segments=segments, sees=sees)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "expert": "x", "length": 1}, "Segment.name"),
        ({"name": "a", "expert": "x", "length": 0}, "positive int, received 0"),
        ({"name": "a", "expert": "x", "length": 2, "rule": "diagonal"}, "unknown rule 'diagonal'"),
    ],
)
def test_bad_segments_raise_a_clear_error(kwargs, message):
    with pytest.raises(SpecError, match=message):
        Segment(**kwargs)


def test_blockwise_rejects_non_positive_sizes():
    with pytest.raises(SpecError, match="positive ints"):
        Blockwise((2, 0))


def test_layout_queries_name_the_segments(make_progressive_spec):
    spec = make_progressive_spec(2, (1, 4), 3)
    assert spec.names == ("und", "gen", "act")
    assert (spec.start("gen"), spec.start("act"), spec.total_length) == (2, 7, 11)
    assert spec.may_see("act", "gen")
    assert not spec.may_see("gen", "act")
    with pytest.raises(SpecError, match="unknown segment 'foo'"):
        spec.segment("foo")


def test_specs_are_hashable_values_with_read_only_sees(make_progressive_spec):
    a = make_progressive_spec(2, (1, 4), 3)
    b = make_progressive_spec(2, (1, 4), 3)
    assert a == b
    assert hash(a) == hash(b)
    with pytest.raises(TypeError, match="read-only"):
        a.sees["und"] = ("act",)


def test_a_none_rule_segment_reads_only_the_segments_it_sees():
    spec = AttentionSpec(
        segments=[Segment("context", "x", 3), Segment("queries", "y", 2, "none")],
        sees={"queries": ["context"]},
    )
    mask = reference_mask(spec)[0]
    assert mask[3:, :3].all()
    assert not mask[3:, 3:].any()


def test_specs_round_trip_through_json_pickle_and_deepcopy(make_progressive_spec):
    spec = make_progressive_spec(3, (1, 4), 2)
    assert AttentionSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(copy.deepcopy(spec)) == hash(spec)
    with pytest.raises(SpecError, match=r"unknown keys \['mask'\]"):
        AttentionSpec.from_dict({**spec.to_dict(), "mask": []})
