"""The standalone transformer backbone: conditioning, padding and batch independence."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm


def _backbone(seed: int = 0) -> fm.TransformerBackbone:
    torch.manual_seed(seed)
    return fm.TransformerBackbone(
        fm.BackboneConfig(width=16, context_dim=5, depth=2, heads=2, max_query_tokens=6)
    ).eval()


def test_a_feature_vector_is_one_context_token():
    backbone = _backbone()
    queries, context = torch.randn(3, 4, 16), torch.randn(3, 5)
    out = backbone(queries, context)
    assert out.shape == (3, 4, 16)
    torch.testing.assert_close(out, backbone(queries, context[:, None, :]))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), valid=st.integers(1, 3))
def test_padded_context_tokens_never_influence_the_output(seed: int, valid: int):
    backbone = _backbone()
    g = torch.Generator().manual_seed(seed)
    queries, context = torch.randn(2, 4, 16, generator=g), torch.randn(2, 4, 5, generator=g)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[:, :valid] = True
    garbage = context.clone()
    garbage[:, valid:] = torch.randn(2, 4 - valid, 5, generator=g) * 100
    out = backbone(queries, context, context_mask=mask)
    torch.testing.assert_close(backbone(queries, garbage, context_mask=mask), out, rtol=0, atol=1e-6)
    torch.testing.assert_close(backbone(queries, context[:, :valid]), out, rtol=0, atol=1e-6)


def test_padded_query_tokens_never_influence_the_real_ones():
    backbone = _backbone()
    queries, context = torch.randn(2, 5, 16), torch.randn(2, 5)
    mask = torch.tensor([[True, True, True, False, False], [True, False, False, False, False]])
    garbage = queries.clone()
    garbage[~mask] = 100.0
    out = backbone(queries, context, query_mask=mask)
    torch.testing.assert_close(
        backbone(garbage, context, query_mask=mask)[mask], out[mask], rtol=0, atol=1e-5
    )
    torch.testing.assert_close(backbone(queries[:1, :3], context[:1]), out[:1, :3], rtol=0, atol=1e-5)


def test_samples_in_a_batch_do_not_see_each_other():
    backbone = _backbone()
    queries, context = torch.randn(3, 4, 16), torch.randn(3, 2, 5)
    out = backbone(queries, context)
    for i in range(3):
        torch.testing.assert_close(
            backbone(queries[i : i + 1], context[i : i + 1]), out[i : i + 1], rtol=0, atol=1e-6
        )


def test_the_context_changes_the_output():
    backbone = _backbone()
    queries = torch.randn(1, 4, 16)
    assert not torch.allclose(backbone(queries, torch.zeros(1, 5)), backbone(queries, torch.ones(1, 5)))


def test_bad_config_and_inputs_raise_errors_that_name_them():
    with pytest.raises(ValueError, match=r"width \(10\) must be divisible by heads \(4\)"):
        fm.BackboneConfig(width=10, context_dim=3, heads=4)
    with pytest.raises(ValueError, match="depth must be a positive int"):
        fm.BackboneConfig(width=8, context_dim=3, depth=0)
    backbone = _backbone()
    with pytest.raises(ValueError, match="more than max_query_tokens=6"):
        backbone(torch.randn(1, 7, 16), torch.randn(1, 5))
    with pytest.raises(ValueError, match=r"context must have shape \(1, 5\) or \(1, N, 5\)"):
        backbone(torch.randn(1, 4, 16), torch.randn(1, 2, 3, 5))
    with pytest.raises(ValueError, match=r"context must have shape \(1, 5\), received shape \(1, 4\)"):
        backbone(torch.randn(1, 4, 16), torch.randn(1, 4))
    with pytest.raises(ValueError, match="at least one real context token"):
        backbone(
            torch.randn(1, 4, 16), torch.randn(1, 2, 5), context_mask=torch.zeros(1, 2, dtype=torch.bool)
        )
    with pytest.raises(TypeError, match=r"context_mask must have dtype torch\.bool"):
        backbone(torch.randn(1, 4, 16), torch.randn(1, 2, 5), context_mask=torch.ones(1, 2))
    with pytest.raises(TypeError, match="config must be a BackboneConfig"):
        fm.TransformerBackbone({"width": 8})  # type: ignore[arg-type]
