"""The UGA spec: understanding strictly upstream of generation, generation upstream of action."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from f1.model import ConfigError, uga_spec
from mot import compile_mask


def _block(mask: torch.Tensor, spec, viewer: str, target: str) -> torch.Tensor:
    v0, t0 = spec.start(viewer), spec.start(target)
    return mask[0, v0 : v0 + spec.segment(viewer).length, t0 : t0 + spec.segment(target).length]


@settings(max_examples=25, deadline=None)
@given(
    und=st.integers(1, 12),
    hist=st.integers(1, 6),
    scales=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    chunk=st.integers(1, 6),
)
def test_no_segment_ever_sees_a_downstream_segment(
    und: int, hist: int, scales: list[int], chunk: int
) -> None:
    spec = uga_spec("f1", und_length=und, chunk_size=chunk, history_length=hist, scale_tokens=scales)
    mask = compile_mask(spec)
    order = ["und", "hist", "gen", "act"]
    for i, viewer in enumerate(order):
        for target in order[i + 1 :]:
            assert not _block(mask, spec, viewer, target).any(), f"{viewer} sees {target}"
    # understanding is strictly upstream: unlike the published mask, it never sees history tokens
    assert not _block(mask, spec, "und", "hist").any()
    # generation sees understanding and history; action sees all three upstream segments
    for viewer, targets in {"hist": ["und"], "gen": ["und", "hist"], "act": ["und", "hist", "gen"]}.items():
        for target in targets:
            assert _block(mask, spec, viewer, target).all()


def test_generation_is_block_causal_over_scales_and_the_state_token_precedes_the_chunk() -> None:
    spec = uga_spec("f1", und_length=2, chunk_size=3, history_length=2, scale_tokens=(1, 4))
    gen = _block(compile_mask(spec), spec, "gen", "gen")
    assert not gen[0, 1:].any()
    assert gen[1:, :].all()
    act = _block(compile_mask(spec), spec, "act", "act")
    assert act[0, 0]
    assert not act[0, 1:].any()
    assert act[1:, :].all()


def test_modes_keep_only_their_segments() -> None:
    no_gen = uga_spec("no_gen", und_length=4, chunk_size=2)
    assert no_gen.names == ("und", "act")
    history = uga_spec("history_no_foresight", und_length=4, chunk_size=2, history_length=3)
    assert history.names == ("und", "hist", "act")
    assert history.may_see("act", "hist")


def test_missing_lengths_are_reported() -> None:
    with pytest.raises(ConfigError, match="history_length: mode 'f1' needs"):
        uga_spec("f1", und_length=4, chunk_size=2, scale_tokens=(1,))
    with pytest.raises(ConfigError, match="scale_tokens: mode 'f1' needs"):
        uga_spec("f1", und_length=4, chunk_size=2, history_length=1)
