"""Token layout: validity from valid lengths, cumsum positions, chunk planning and exact cut points."""

from __future__ import annotations

import pytest
import torch

from mot import AttentionSpec, SpecError, positions_from_valid, token_valid
from mot.layout import check_cut, plan_chunk


def test_positions_are_cumsum_of_valid_minus_one_over_the_whole_sequence(make_progressive_spec):
    spec = make_progressive_spec(3, (1, 2), 1)
    valid = token_valid(spec, {"und": [2]}, batch_size=1)
    assert valid.tolist() == [[True, True, False, True, True, True, True, True]]
    assert positions_from_valid(valid).tolist() == [[0, 1, 1, 2, 3, 4, 5, 6]]
    assert positions_from_valid(valid[:, 5:], offset=torch.tensor([5])).tolist() == [[5, 6, 7]]


def test_plan_places_whole_and_partial_segments():
    spec = AttentionSpec.next_scale(condition_length=2, scale_sizes=(1, 4))
    plan = plan_chunk(spec, {"cond": 2, "scales": 1}, start=0)
    assert (plan.start, plan.end) == (0, 3)
    assert [(p.name, p.local_start, p.length) for p in plan.pieces] == [("cond", 0, 2), ("scales", 0, 1)]
    later = plan_chunk(spec, {"scales": 4}, start=3)
    assert [(p.name, p.local_start, p.length) for p in later.pieces] == [("scales", 1, 4)]


def test_plan_rejects_gaps_and_overlong_pieces():
    spec = AttentionSpec.next_scale(condition_length=2, scale_sizes=(1, 4))
    with pytest.raises(SpecError, match="does not continue the sequence at slot 0"):
        plan_chunk(spec, {"scales": 5}, start=0)
    with pytest.raises(SpecError, match=r"inputs\['scales'\]: expected between 1 and 4 tokens"):
        plan_chunk(spec, {"scales": 5}, start=3)
    with pytest.raises(SpecError, match="at least one segment"):
        plan_chunk(spec, {}, start=0)


def test_cuts_are_allowed_only_where_nothing_sees_past_them(make_progressive_spec):
    spec = make_progressive_spec(3, (1, 2), 2)
    for allowed in (3, 4, 6, 7, 9):  # after und, after each scale, after the state token, at the end
        check_cut(spec, allowed)
    for forbidden in (1, 2, 5, 8):
        with pytest.raises(SpecError, match=f"cannot stop at token slot {forbidden}"):
            check_cut(spec, forbidden)
