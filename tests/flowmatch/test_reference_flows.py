"""The closed-form flows are exact: their solution satisfies their ODE and ends at the data."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm


@settings(max_examples=20, deadline=None)
@given(mu=st.floats(-3, 3), sigma=st.floats(0.1, 3), warped=st.booleans(), u=st.floats(0.01, 0.99))
def test_the_solution_satisfies_the_ode_and_maps_noise_to_the_data_distribution(mu, sigma, warped, u):
    flow = fm.GaussianFlow(mu, sigma, warped=warped)
    eps = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = 1e-6
    times = torch.tensor([u - h, u, u + h], dtype=torch.float64)
    states = flow.solution(eps, times)
    derivative = (states[2] - states[0]) / (2 * h)
    torch.testing.assert_close(derivative, flow.velocity(states[1], times[1].expand(5)), rtol=1e-5, atol=1e-5)
    ends = flow.solution(eps, torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ends[0], eps)
    torch.testing.assert_close(ends[1], flow.endpoint(eps))


def test_sigma_must_be_positive():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        fm.GaussianFlow(0.0, 0.0)
