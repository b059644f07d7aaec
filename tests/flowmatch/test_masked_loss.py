"""The flow-matching loss counts real action dimensions and real chunk steps, never padding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm


@st.composite
def masked_batches(draw):
    batch, horizon, dim = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    dim_mask = torch.rand(batch, dim, generator=g) < 0.7
    step_mask = torch.rand(batch, horizon, generator=g) < 0.7
    dim_mask[:, 0] = True  # at least one valid entry per sample
    step_mask[:, 0] = True
    prediction = torch.randn(batch, horizon, dim, generator=g, dtype=torch.float64)
    target = torch.randn(batch, horizon, dim, generator=g, dtype=torch.float64)
    return prediction, target, dim_mask, step_mask


@settings(max_examples=30, deadline=None)
@given(masked_batches())
def test_padded_entries_never_change_the_loss_or_its_gradient(data):
    prediction, target, dim_mask, step_mask = data
    valid = dim_mask[:, None, :] & step_mask[:, :, None]
    garbage = torch.where(valid, 0.0, torch.full_like(prediction, float("nan")))
    clean = prediction.clone().requires_grad_(True)
    dirty = (prediction + garbage).detach().requires_grad_(True)
    loss_clean = fm.flow_matching_loss(clean, target, action_dim_mask=dim_mask, step_mask=step_mask)
    loss_dirty = fm.flow_matching_loss(dirty, target + garbage, action_dim_mask=dim_mask, step_mask=step_mask)
    loss_clean.backward()
    loss_dirty.backward()
    assert torch.equal(loss_clean, loss_dirty)
    assert torch.equal(clean.grad, dirty.grad)
    assert bool((dirty.grad[~valid] == 0).all())


@settings(max_examples=30, deadline=None)
@given(masked_batches())
def test_the_loss_is_the_mean_over_valid_entries_only(data):
    prediction, target, dim_mask, step_mask = data
    valid = dim_mask[:, None, :] & step_mask[:, :, None]
    expected = (prediction - target)[valid].pow(2).mean()
    loss = fm.flow_matching_loss(prediction, target, action_dim_mask=dim_mask, step_mask=step_mask)
    torch.testing.assert_close(loss, expected)
    per_sample = fm.flow_matching_loss(
        prediction, target, action_dim_mask=dim_mask, step_mask=step_mask, reduction="per_sample"
    )
    for i in range(prediction.shape[0]):
        torch.testing.assert_close(per_sample[i], (prediction[i] - target[i])[valid[i]].pow(2).mean())


def test_a_shared_dimension_mask_equals_the_same_mask_per_sample():
    g = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    shared = torch.tensor([True, True, False, True, False])
    a = fm.flow_matching_loss(prediction, target, action_dim_mask=shared)
    b = fm.flow_matching_loss(prediction, target, action_dim_mask=shared.expand(3, 5))
    torch.testing.assert_close(a, b)


def test_without_masks_the_loss_is_plain_mse_and_none_reduction_keeps_the_shape():
    g = torch.Generator().manual_seed(1)
    prediction, target = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    torch.testing.assert_close(
        fm.flow_matching_loss(prediction, target), torch.nn.functional.mse_loss(prediction, target)
    )
    elementwise = fm.flow_matching_loss(
        prediction,
        target,
        step_mask=torch.tensor([[True] * 4, [True, False, False, False], [False] * 4]),
        reduction="none",
    )
    assert elementwise.shape == (3, 4, 5)
    assert bool((elementwise[1, 1:] == 0).all())
    assert bool((elementwise[2] == 0).all())


def test_a_fully_padded_batch_gives_zero_not_nan():
    loss = fm.flow_matching_loss(
        torch.randn(2, 3, 4), torch.randn(2, 3, 4), step_mask=torch.zeros(2, 3, dtype=torch.bool)
    )
    assert loss.item() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"action_dim_mask": torch.ones(5, dtype=torch.bool)},
            ValueError,
            r"action_dim_mask must have shape \(4,\) or \(2, 4\), received \(5,\)",
        ),
        ({"action_dim_mask": torch.ones(4)}, TypeError, "action_dim_mask must have dtype torch.bool"),
        (
            {"step_mask": torch.ones(2, 4, dtype=torch.bool)},
            ValueError,
            r"step_mask must have shape \(2, 3\), received \(2, 4\)",
        ),
        ({"reduction": "sum"}, ValueError, "reduction must be one of"),
    ],
)
def test_bad_masks_raise_errors_that_name_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        fm.flow_matching_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 4), **kwargs)


def test_mismatched_shapes_raise():
    with pytest.raises(
        ValueError, match=r"target_velocity must have the shape of predicted_velocity \(2, 3, 4\)"
    ):
        fm.flow_matching_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"predicted_velocity must have shape \(B, H, D\)"):
        fm.flow_matching_loss(torch.randn(2, 3), torch.randn(2, 3))
