"""Wasserstein distances used by the benchmark: exact in 1-D, sliced in many dimensions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(-3, 3))
def test_1d_distance_of_a_shifted_sample_is_the_shift_and_ignores_order(seed: int, shift: float):
    x = torch.randn(200, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    shuffled = (x + shift)[torch.randperm(200, generator=torch.Generator().manual_seed(seed + 1))]
    assert abs(fm.wasserstein_1d(x, shuffled).item() - abs(shift)) < 1e-9
    assert abs(fm.wasserstein_1d(x, shuffled, p=1).item() - abs(shift)) < 1e-9
    assert fm.wasserstein_1d(x, x).item() == 0.0


def test_sliced_distance_of_a_mean_shift_is_its_norm_over_root_dimension():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    # For directions uniform on the sphere, E[(u . m)^2] = |m|^2 / K.
    distance = fm.sliced_wasserstein(x, x + shift, num_projections=2000, generator=g).item()
    assert abs(distance - shift.norm().item() / math.sqrt(4)) < 0.05
    assert fm.sliced_wasserstein(x, x.flip(0), generator=g).item() == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="x and y must have the same shape"):
        fm.wasserstein_1d(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"x must have shape \(N, K\)"):
        fm.sliced_wasserstein(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        fm.wasserstein_1d(torch.zeros(3), torch.zeros(3), p=3)
