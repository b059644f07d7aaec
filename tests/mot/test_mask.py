"""Mask compilation: compiled (SDPA and FlexAttention) forms equal the literal reference form."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mot import (
    AttentionSpec,
    Blockwise,
    Segment,
    SpecError,
    check_rows_see_a_key,
    compile_block_mask,
    compile_mask,
    joint_attention,
    reference_mask,
    render_mask,
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rules(draw, length: int):
    kind = draw(st.sampled_from(["full", "causal", "none", "blockwise"]))
    if kind != "blockwise":
        return kind
    cuts = sorted(draw(st.sets(st.integers(1, length - 1), max_size=length - 1))) if length > 1 else []
    edges = [0, *cuts, length]
    return Blockwise(tuple(b - a for a, b in itertools.pairwise(edges)))


@st.composite
def specs_and_padding(draw, max_segments: int = 4, max_length: int = 5, batch: int = 2):
    n = draw(st.integers(1, max_segments))
    lengths = [draw(st.integers(1, max_length)) for _ in range(n)]
    names = [f"s{i}" for i in range(n)]
    segments = [
        Segment(name, f"e{i % 2}", length, draw(rules(length)))
        for i, (name, length) in enumerate(zip(names, lengths))
    ]
    sees = {name: [o for o in names if o != name and draw(st.booleans())] for name in names}
    try:
        spec = AttentionSpec(segments=segments, sees=sees)
    except SpecError:
        assume(False)
    padded = {
        seg.name: [draw(st.integers(0, seg.length)) for _ in range(batch)]
        for seg in segments
        if draw(st.booleans())
    }
    return spec, padded


def _every_valid_row_sees_a_key(spec, padded, batch):
    try:
        compile_mask(spec, padded, batch)
    except SpecError:
        return False
    return True


@FAST
@given(specs_and_padding())
def test_compiled_mask_equals_reference_for_random_specs(case):
    spec, padded = case
    assume(_every_valid_row_sees_a_key(spec, padded, 2))
    assert torch.equal(compile_mask(spec, padded, 2), reference_mask(spec, padded, 2))


@FAST
@given(specs_and_padding())
def test_compiled_row_ranges_are_slices_of_the_full_mask(case):
    spec, padded = case
    assume(_every_valid_row_sees_a_key(spec, padded, 2))
    full = compile_mask(spec, padded, 2)
    L = spec.total_length
    for start in range(L):
        part = compile_mask(spec, padded, 2, queries=(start, L), keys_end=L)
        assert torch.equal(part, full[:, start:])


@FAST
@given(specs_and_padding())
def test_every_query_row_sees_a_key(case):
    spec, padded = case
    reference = reference_mask(spec, padded, 2)
    if not reference.any(dim=-1).all():
        # Only a 'none' segment whose seen segments are all padding for a sample gets here: it is reported.
        with pytest.raises(SpecError, match="sees no key"):
            compile_mask(spec, padded, 2)
        return
    assert compile_mask(spec, padded, 2).any(dim=-1).all()


@FAST
@given(specs_and_padding())
def test_padding_keys_are_never_visible_to_other_rows(case):
    spec, padded = case
    assume(_every_valid_row_sees_a_key(spec, padded, 2))
    mask = compile_mask(spec, padded, 2)
    L = spec.total_length
    off_diagonal = mask & ~torch.eye(L, dtype=torch.bool)
    valid = torch.ones(2, L, dtype=torch.bool)
    for name, lengths in padded.items():
        start = spec.start(name)
        for b, n in enumerate(lengths):
            valid[b, start + n : start + spec.segment(name).length] = False
    assert not off_diagonal[~valid[:, None, :].expand_as(mask)].any()


def test_a_row_that_sees_nothing_is_reported_with_its_segment():
    spec = AttentionSpec(
        segments=[Segment("context", "x", 2), Segment("queries", "y", 2, "none")],
        sees={"queries": ["context"]},
    )
    with pytest.raises(SpecError, match=r"sample 1, query slot 2 \(segment 'queries'\) sees no key"):
        compile_mask(spec, {"context": [2, 0]}, batch_size=2)
    with pytest.raises(SpecError, match="sees no key"):
        check_rows_see_a_key(torch.tensor([[[True, False], [False, False]]]))


def test_valid_lengths_are_checked_against_the_segment():
    spec = AttentionSpec.causal_lm(4)
    with pytest.raises(SpecError, match=r"valid_lengths\['text'\]: expected values in \[0, 4\]"):
        compile_mask(spec, {"text": [5]})
    with pytest.raises(SpecError, match="expected 2 entries"):
        compile_mask(spec, {"text": [1, 2, 3]}, batch_size=2)
    with pytest.raises(SpecError, match="unknown segment 'txt'"):
        compile_mask(spec, {"txt": [1]})


@pytest.mark.slow  # eager FlexAttention traces its mask function: ~3 s per example on this CPU
@settings(max_examples=4, deadline=None)
@given(specs_and_padding(max_segments=3, max_length=4))
def test_flex_block_mask_gives_the_same_attention_as_the_boolean_mask(case):
    spec, padded = case
    assume(_every_valid_row_sees_a_key(spec, padded, 2))
    L = spec.total_length
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, L, 8, generator=generator) for _ in range(3))
    with torch.no_grad():
        dense = joint_attention(q, k, v, compile_mask(spec, padded, 2), "sdpa")
        flex = joint_attention(q, k, v, compile_block_mask(spec, padded, 2), "flex")
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)


def test_render_draws_the_pi0_mask():
    spec = AttentionSpec.pi0(prefix_length=2, chunk=2)
    picture = render_mask(reference_mask(spec)[0], spec)
    assert picture == "## ...\n## ...\n\n## #..\n## ###\n## ###"


def test_compiled_mask_matches_explicit_softmax_masking(make_progressive_spec):
    spec = make_progressive_spec(2, (1, 2), 2)
    mask = compile_mask(spec)
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, spec.total_length, 4, generator=generator) for _ in range(3))
    scores = (q @ k.transpose(-1, -2)) / 2.0
    expected = torch.softmax(scores.masked_fill(~mask[:, None], float("-inf")), dim=-1) @ v
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None]), expected)
