"""Time grids run from noise (0) to data (1), strictly increasing, with the documented spacing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm

GRIDS = {
    "uniform": {},
    "power": {"exponent": 2.0},
    "cosine": {},
    "shifted": {"shift": 3.0},
}


@pytest.mark.parametrize("name", GRIDS)
@settings(max_examples=10, deadline=None)
@given(steps=st.integers(1, 50))
def test_every_grid_runs_from_zero_to_one_strictly_increasing(name: str, steps: int):
    grid = fm.make_time_grid(name, steps, **GRIDS[name])
    assert grid.shape == (steps + 1,)
    assert grid[0].item() == 0.0
    assert abs(grid[-1].item() - 1.0) < 1e-12
    assert bool((grid[1:] > grid[:-1]).all())
    fm.sample(lambda x, tau: x, torch.zeros(1, 1), time_grid=grid)  # accepted by the sampler


def test_shift_and_power_move_steps_to_the_documented_end():
    uniform = fm.uniform_time_grid(10)
    torch.testing.assert_close(fm.shifted_time_grid(10, 1.0), uniform)
    torch.testing.assert_close(fm.power_time_grid(10, 1.0), uniform)
    assert fm.shifted_time_grid(10, 3.0)[1] < uniform[1]  # more resolution near noise
    assert fm.power_time_grid(10, 2.0)[-2] > uniform[-2]  # more resolution near data
    cosine = fm.cosine_time_grid(10)
    steps = cosine[1:] - cosine[:-1]
    assert steps[0] < steps[5] > steps[-1]


def test_bad_grid_arguments_raise():
    with pytest.raises(KeyError, match="unknown time grid 'linear'"):
        fm.make_time_grid("linear", 4)
    with pytest.raises(ValueError, match="exponent must be > 0"):
        fm.power_time_grid(4, 0.0)
    with pytest.raises(ValueError, match="shift must be > 0"):
        fm.shifted_time_grid(4, -1.0)
    with pytest.raises(ValueError, match="steps must be > 0"):
        fm.uniform_time_grid(0)
