"""The linear path, its target velocity, and the conversion to pi0's reversed-time convention."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm

seeds = st.integers(0, 2**31 - 1)


def _pair(seed: int, shape=(4, 5, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(
        shape, generator=g, dtype=torch.float64
    )


@settings(max_examples=20, deadline=None)
@given(seed=seeds)
def test_tau_zero_is_noise_and_tau_one_is_data(seed: int):
    noise, actions = _pair(seed)
    assert torch.equal(fm.interpolate(noise, actions, torch.zeros(4, dtype=torch.float64)), noise)
    assert torch.equal(fm.interpolate(noise, actions, torch.ones(4, dtype=torch.float64)), actions)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, tau=st.floats(0.01, 0.99))
def test_target_velocity_is_the_time_derivative_of_the_path(seed: int, tau: float):
    noise, actions = _pair(seed)
    h = 1e-6
    t = torch.full((4,), tau, dtype=torch.float64)
    derivative = (fm.interpolate(noise, actions, t + h) - fm.interpolate(noise, actions, t - h)) / (2 * h)
    torch.testing.assert_close(derivative, fm.target_velocity(noise, actions), rtol=1e-6, atol=1e-6)


def test_per_sample_times_apply_to_their_own_row():
    noise, actions = _pair(0)
    tau = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    mixed = fm.interpolate(noise, actions, tau)
    for i in range(4):
        torch.testing.assert_close(mixed[i], (1 - tau[i]) * noise[i] + tau[i] * actions[i])


@settings(max_examples=20, deadline=None)
@given(seed=seeds, tau=st.floats(0.0, 1.0))
def test_pi0_convention_is_the_same_path_in_reversed_time(seed: int, tau: float):
    noise, actions = _pair(seed)
    tau_t = torch.full((4,), tau, dtype=torch.float64)
    t = fm.pi0_time_from_tau(tau_t)
    pi0_point = t[:, None, None] * noise + (1 - t[:, None, None]) * actions  # x_t = t eps + (1 - t) a
    pi0_target = noise - actions  # u = eps - a
    torch.testing.assert_close(fm.interpolate(noise, actions, tau_t), pi0_point)
    torch.testing.assert_close(fm.velocity_from_pi0(pi0_target), fm.target_velocity(noise, actions))
    torch.testing.assert_close(fm.pi0_velocity_from_velocity(fm.target_velocity(noise, actions)), pi0_target)
    torch.testing.assert_close(fm.tau_from_pi0_time(t), tau_t)


def test_a_pi0_field_sampled_here_equals_pi0s_own_ten_euler_steps_from_t1_to_t0():
    g = torch.Generator().manual_seed(3)
    weight = torch.randn(3, 3, generator=g, dtype=torch.float64)

    def pi0_field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # u(x, t), t = 1 is noise
        return torch.tanh(x @ weight) * (1 + t[:, None, None])

    noise = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    # pi0's inference loop: dt = -1/10, x <- x + dt * u(x, t) from t = 1 down to t = 0.
    x, t = noise.clone(), 1.0
    for _ in range(10):
        x = x + (-0.1) * pi0_field(x, torch.full((2,), t, dtype=torch.float64))
        t -= 0.1
    ours = fm.sample(fm.velocity_fn_from_pi0(pi0_field), noise, solver="euler", steps=10)
    torch.testing.assert_close(ours.x, x, rtol=1e-12, atol=1e-12)


def test_bad_inputs_raise_errors_that_name_them():
    noise, actions = _pair(0)
    with pytest.raises(
        ValueError, match=r"noise must have the shape of actions \(4, 5, 3\), received \(4, 5, 2\)"
    ):
        fm.interpolate(noise[..., :2], actions, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"tau must have shape \(4,\) to match the batch, received \(3,\)"):
        fm.interpolate(noise, actions, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="tau must have a floating-point dtype"):
        fm.interpolate(noise, actions, torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="pi0_velocity_fn must be callable"):
        fm.velocity_fn_from_pi0(3)  # type: ignore[arg-type]


@settings(max_examples=20, deadline=None)
@given(seed=seeds, tau=st.floats(0.0, 0.99))
def test_a_data_prediction_of_the_true_data_gives_the_target_velocity(seed: int, tau: float):
    noise, actions = _pair(seed)
    t = torch.full((4,), tau, dtype=torch.float64)
    point = fm.interpolate(noise, actions, t)
    velocity = fm.velocity_from_data_prediction(point, actions, t)
    torch.testing.assert_close(velocity, fm.target_velocity(noise, actions), rtol=1e-9, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, tau=st.floats(0.0, 0.99))
def test_an_euler_step_to_tau_one_lands_on_the_data_prediction(seed: int, tau: float):
    point, predicted = _pair(seed)
    t = torch.full((4,), tau, dtype=torch.float64)
    step = (1 - t)[:, None, None]
    landed = point + step * fm.velocity_from_data_prediction(point, predicted, t)
    torch.testing.assert_close(landed, predicted, rtol=1e-9, atol=1e-9)


def test_data_prediction_at_tau_one_divides_by_the_min_gap():
    point, predicted = _pair(1)
    one = torch.ones(4, dtype=torch.float64)
    velocity = fm.velocity_from_data_prediction(point, predicted, one, min_gap=0.5)
    torch.testing.assert_close(velocity, (predicted - point) / 0.5)
    assert torch.isfinite(fm.velocity_from_data_prediction(point, predicted, one)).all()


def test_data_prediction_refuses_bad_arguments():
    point, predicted = _pair(2)
    tau = torch.full((4,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="predicted must have the shape of x"):
        fm.velocity_from_data_prediction(point, predicted[:, :2], tau)
    for gap in (0.0, 1.5, -1e-3, True, "0.1"):
        with pytest.raises(ValueError, match="min_gap"):
            fm.velocity_from_data_prediction(point, predicted, tau, min_gap=gap)
    with pytest.raises(TypeError, match="predicted"):
        fm.velocity_from_data_prediction(point, predicted.long(), tau)
    with pytest.raises(ValueError, match="tau must have shape"):
        fm.velocity_from_data_prediction(point, predicted, torch.full((3,), 0.5, dtype=torch.float64))
