"""Specification of real-time chunking (``sample(..., guidance=RealTimeChunking(...))``, ``rtc_weights``)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm

FIXED = ["euler", "midpoint", "heun", "rk4", "rk4_38"]
seeds = st.integers(0, 2**31 - 1)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, int, int]:
    """``(H, d, s)`` with ``0 <= d < H`` and ``0 <= s <= H - d``."""
    horizon = draw(st.integers(1, 24))
    delay = draw(st.integers(0, horizon - 1))
    return horizon, delay, draw(st.integers(0, horizon - delay))


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _guide(target: torch.Tensor, **options: object) -> fm.RealTimeChunking:
    return fm.RealTimeChunking(target, **{"inference_delay": 2, "execution_horizon": 2, **options})


# --- weights -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", fm.RTC_SCHEDULES)
@settings(max_examples=40, deadline=None)
@given(layout=layouts())
def test_weights_are_one_before_the_delay_zero_from_h_minus_s_and_non_increasing_in_between(
    schedule: str, layout: tuple[int, int, int]
):
    horizon, delay, execution = layout
    weights = fm.rtc_weights(horizon, delay, execution, schedule, dtype=torch.float64)
    assert weights.shape == (horizon,)
    assert bool(((weights >= 0) & (weights <= 1)).all())
    assert bool((weights[1:] <= weights[:-1]).all())
    assert bool((weights[:delay] == 1).all())
    assert bool((weights[horizon - execution :] == 0).all())


@settings(max_examples=30, deadline=None)
@given(layout=layouts())
def test_the_overlap_follows_the_schedule_formula(layout: tuple[int, int, int]):
    horizon, delay, execution = layout
    end = horizon - execution
    linear = fm.rtc_weights(horizon, delay, execution, "linear", dtype=torch.float64)
    exp = fm.rtc_weights(horizon, delay, execution, "exp", dtype=torch.float64)
    ones = fm.rtc_weights(horizon, delay, execution, "ones", dtype=torch.float64)
    zeros = fm.rtc_weights(horizon, delay, execution, "zeros", dtype=torch.float64)
    for i in range(delay, end):
        c = (end - i) / (end - delay + 1)
        assert linear[i].item() == pytest.approx(c, abs=1e-12)
        assert exp[i].item() == pytest.approx(c * math.expm1(c) / math.expm1(1), abs=1e-12)
        assert 0 < exp[i] <= linear[i] < 1
        assert ones[i] == 1
        assert zeros[i] == 0


def test_weights_of_the_papers_example_layout():
    # H = 8, d = 3, s = 2: three frozen steps, three decaying, two free
    weights = fm.rtc_weights(8, 3, 2, "linear")
    torch.testing.assert_close(weights, torch.tensor([1, 1, 1, 0.75, 0.5, 0.25, 0, 0]))


# --- sampling ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", FIXED)
@settings(max_examples=8, deadline=None)
@given(seed=seeds, steps=st.integers(1, 12))
def test_a_guidance_cap_of_zero_gives_the_plain_sample_bit_for_bit(solver: str, seed: int, steps: int):
    flow = fm.GaussianFlow(mu=0.5, sigma=0.7)
    noise = _randn(seed, 3, 6, 2)
    target = _randn(seed + 1, 6, 2)
    plain = fm.sample(flow.velocity, noise, solver=solver, steps=steps)
    guided = fm.sample(
        flow.velocity, noise, solver=solver, steps=steps, guidance=_guide(target, max_guidance=0.0)
    )
    assert torch.equal(guided.x, plain.x)


@pytest.mark.parametrize("solver", FIXED)
@settings(max_examples=5, deadline=None)
@given(seed=seeds, steps=st.integers(1, 12))
def test_no_guidance_is_the_plain_sample_bit_for_bit(solver: str, seed: int, steps: int):
    flow = fm.GaussianFlow(mu=-0.3, sigma=1.3)
    noise = _randn(seed, 2, 5, 3)
    plain = fm.sample(flow.velocity, noise, solver=solver, steps=steps)
    assert torch.equal(fm.sample(flow.velocity, noise, solver=solver, steps=steps, guidance=None).x, plain.x)


@pytest.mark.parametrize("solver", FIXED)
def test_guidance_leaves_the_number_of_field_evaluations_unchanged(solver: str):
    flow = fm.GaussianFlow(mu=0.0, sigma=1.0)
    noise, target = _randn(0, 2, 6, 2), _randn(1, 6, 2)
    calls = {"n": 0}

    def field(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return flow.velocity(x, tau)

    plain = fm.sample(field, noise, solver=solver, steps=7)
    plain_calls, calls["n"] = calls["n"], 0
    guided = fm.sample(field, noise, solver=solver, steps=7, guidance=_guide(target))
    assert guided.nfe == plain.nfe == calls["n"] == plain_calls


@settings(max_examples=10, deadline=None)
@given(
    seed=seeds,
    mu=st.floats(-1.5, 1.5),
    sigma=st.one_of(st.floats(0.3, 0.8), st.floats(1.25, 2.0)),
    delay=st.integers(1, 5),
)
def test_the_frozen_prefix_reaches_the_target_with_an_error_that_shrinks_as_steps_grow(
    seed: int, mu: float, sigma: float, delay: int
):
    # The Gaussian reference flow ignores the target, so whatever brings the prefix to it is the guidance.
    # With the cap above every weight the Euler grid reaches (about `steps`), the guided flow's limit puts
    # the frozen steps exactly on the target; the error is the discretization's. (At sigma = 1 it is
    # exact at any step count: the next test.)
    flow = fm.GaussianFlow(mu=mu, sigma=sigma)
    noise, target = _randn(seed, 4, 8, 2), _randn(seed + 1, 8, 2)
    errors = []
    for steps in (8, 32, 128):
        guide = _guide(target, inference_delay=delay, execution_horizon=8 - delay, max_guidance=1e4)
        x = fm.sample(flow.velocity, noise, steps=steps, guidance=guide).x
        errors.append((x[:, :delay] - target[:delay]).abs().max().item())
    unguided = (fm.sample(flow.velocity, noise, steps=128).x[:, :delay] - target[:delay]).abs().max().item()
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3 * max(unguided, 1e-3)


@settings(max_examples=10, deadline=None)
@given(seed=seeds, steps=st.integers(2, 40), delay=st.integers(1, 6))
def test_for_unit_variance_data_uncapped_euler_guidance_puts_the_prefix_on_the_target(
    seed: int, steps: int, delay: int
):
    # For data N(0, I) the paper's r2 is the exact posterior variance, the guided field is then the exact
    # conditional flow (Y - x) / (1 - tau) on the frozen steps, and Euler's last step lands on Y.
    flow = fm.GaussianFlow(mu=0.0, sigma=1.0)
    noise, target = _randn(seed, 3, 8, 2), _randn(seed + 1, 8, 2)
    guide = _guide(target, inference_delay=delay, execution_horizon=8 - delay, max_guidance=1e4)
    x = fm.sample(flow.velocity, noise, steps=steps, guidance=guide).x
    torch.testing.assert_close(x[:, :delay], target[:delay].expand(3, delay, 2), rtol=0, atol=1e-9)


@settings(max_examples=10, deadline=None)
@given(seed=seeds, mu=st.floats(-1.0, 1.0), sigma=st.floats(0.5, 1.5))
def test_the_papers_cap_pulls_the_frozen_prefix_toward_the_target(seed: int, mu: float, sigma: float):
    flow = fm.GaussianFlow(mu=mu, sigma=sigma)
    noise, target = _randn(seed, 16, 8, 2), _randn(seed + 1, 8, 2)
    plain = fm.sample(flow.velocity, noise, steps=10).x
    guided = fm.sample(flow.velocity, noise, steps=10, guidance=_guide(target, inference_delay=3)).x
    guided_error = (guided[:, :3] - target[:3]).norm()
    plain_error = (plain[:, :3] - target[:3]).norm()
    assert guided_error < 0.5 * plain_error


@pytest.mark.parametrize("solver", FIXED)
def test_steps_with_zero_weight_are_untouched_when_the_field_does_not_couple_steps(solver: str):
    flow = fm.GaussianFlow(mu=0.2, sigma=0.8)  # elementwise: step i's velocity reads only step i
    noise, target = _randn(3, 4, 8, 2), _randn(4, 8, 2)
    plain = fm.sample(flow.velocity, noise, solver=solver, steps=6).x
    guided = fm.sample(
        flow.velocity, noise, solver=solver, steps=6, guidance=_guide(target, inference_delay=2)
    ).x
    assert torch.equal(guided[:, 6:], plain[:, 6:])  # s = 2: steps 6 and 7 are free
    assert not torch.equal(guided[:, :2], plain[:, :2])


def test_a_target_shared_by_the_batch_equals_the_same_target_per_sample():
    flow = fm.GaussianFlow(mu=0.1, sigma=0.9)
    noise, target = _randn(5, 3, 8, 2), _randn(6, 8, 2)
    shared = fm.sample(flow.velocity, noise, guidance=_guide(target)).x
    per_sample = fm.sample(flow.velocity, noise, guidance=_guide(target.expand(3, 8, 2).clone())).x
    torch.testing.assert_close(shared, per_sample, rtol=0, atol=1e-12)


def test_each_sample_is_guided_toward_its_own_target_only():
    flow = fm.GaussianFlow(mu=0.1, sigma=0.9)
    noise, targets = _randn(7, 3, 8, 2), _randn(8, 3, 8, 2)
    batched = fm.sample(flow.velocity, noise, guidance=_guide(targets)).x
    for b in range(3):
        alone = fm.sample(flow.velocity, noise[b : b + 1], guidance=_guide(targets[b])).x
        torch.testing.assert_close(batched[b : b + 1], alone, rtol=0, atol=1e-12)


def test_steps_marked_invalid_get_no_guidance():
    flow = fm.GaussianFlow(mu=0.1, sigma=0.9)
    noise, target = _randn(9, 2, 8, 2), _randn(10, 8, 2)
    none_valid = torch.zeros(2, 8, dtype=torch.bool)
    plain = fm.sample(flow.velocity, noise).x
    assert torch.equal(fm.sample(flow.velocity, noise, guidance=_guide(target, valid=none_valid)).x, plain)


def test_guidance_runs_inside_no_grad_and_returns_a_detached_sample():
    head = fm.FlowMatchingHead(fm.FlowMatchingHeadConfig(action_dim=2, horizon=6, context_dim=4, width=16))
    context = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    target = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    plain = head.sample(context, generator=torch.Generator().manual_seed(2))
    guide = fm.RealTimeChunking(target, inference_delay=2, execution_horizon=2)
    with torch.no_grad():
        guided = head.sample(context, generator=torch.Generator().manual_seed(2), guidance=guide)
    assert not guided.x.requires_grad
    assert guided.nfe == plain.nfe
    assert (guided.x[:, :2] - target[:2]).norm() < (plain.x[:, :2] - target[:2]).norm()
    assert all(p.grad is None for p in head.parameters())
    capped = fm.RealTimeChunking(target, inference_delay=2, execution_horizon=2, max_guidance=0.0)
    assert torch.equal(
        head.sample(context, generator=torch.Generator().manual_seed(2), guidance=capped).x, plain.x
    )


def test_a_low_precision_state_is_guided_in_its_own_dtype():
    flow = fm.GaussianFlow(mu=0.0, sigma=1.0)
    noise = torch.randn(2, 6, 2, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    target = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    result = fm.sample(flow.velocity, noise, guidance=_guide(target))
    assert result.x.dtype == torch.bfloat16
    assert bool(torch.isfinite(result.x).all())


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"target": [[0.0]]}, TypeError, "target must be a torch.Tensor"),
        ({"target": torch.zeros(8, 2, dtype=torch.int64)}, TypeError, "target must have a floating-point"),
        ({"target": torch.zeros(8)}, ValueError, r"target must have shape \(B, H, D\) or \(H, D\)"),
        ({"target": torch.zeros(0, 2)}, ValueError, "target must not be empty"),
        ({"target": torch.full((8, 2), float("nan"))}, ValueError, "target must be finite"),
        ({"inference_delay": True}, TypeError, "inference_delay must be an int"),
        ({"inference_delay": -1}, ValueError, "inference_delay must be >= 0"),
        ({"inference_delay": 8, "execution_horizon": 0}, ValueError, r"inference_delay must be < .* 8"),
        ({"execution_horizon": 2.0}, TypeError, "execution_horizon must be an int"),
        ({"execution_horizon": -1}, ValueError, "execution_horizon must be >= 0"),
        ({"inference_delay": 3, "execution_horizon": 6}, ValueError, r"execution_horizon must be <= .* = 5"),
        ({"max_guidance": -1.0}, ValueError, "max_guidance must be >= 0"),
        ({"max_guidance": float("inf")}, ValueError, "max_guidance must be finite"),
        ({"max_guidance": "5"}, TypeError, "max_guidance must be a real number"),
        ({"schedule": "cosine"}, KeyError, "unknown real-time chunking schedule 'cosine'"),
        ({"schedule": 1}, TypeError, "schedule must be a str"),
        ({"valid": torch.ones(8)}, TypeError, "valid must be a bool tensor"),
        ({"valid": torch.ones(7, dtype=torch.bool)}, ValueError, r"valid must have shape \(8,\)"),
        ({"valid": [True] * 8}, TypeError, "valid must be a torch.Tensor"),
    ],
)
def test_bad_real_time_chunking_settings_raise_naming_the_argument(options: dict, error: type, match: str):
    values = {"target": torch.zeros(8, 2), "inference_delay": 2, "execution_horizon": 2, **options}
    with pytest.raises(error, match=match):
        fm.RealTimeChunking(**values)


@pytest.mark.parametrize("horizon", [0, -1, True])
def test_bad_weight_layouts_raise_naming_the_argument(horizon: object):
    with pytest.raises((TypeError, ValueError), match="horizon must be"):
        fm.rtc_weights(horizon, 0, 0)  # type: ignore[arg-type]


def _never_called(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    raise AssertionError("velocity_fn was called before the arguments were checked")


@pytest.mark.parametrize(
    ("noise", "guidance", "options", "error", "match"),
    [
        (
            torch.zeros(2, 8, 2),
            torch.zeros(7, 2),
            {},
            ValueError,
            r"guidance.target must have shape \(8, 2\)",
        ),
        (torch.zeros(2, 8, 2), torch.zeros(3, 8, 2), {}, ValueError, r"or \(2, 8, 2\) to match the noise"),
        (torch.zeros(2, 8, 2), torch.zeros(8, 3), {}, ValueError, "guidance.target must have shape"),
        (torch.zeros(2, 16), torch.zeros(8, 2), {}, ValueError, r"samples chunks \(B, H, D\)"),
        (torch.zeros(2, 8, 2), torch.zeros(8, 2), {"solver": "dopri5"}, ValueError, "needs a fixed-step"),
        (torch.zeros(2, 8, 2), "previous chunk", {}, TypeError, "guidance must be a RealTimeChunking"),
    ],
)
def test_a_guidance_that_does_not_fit_the_sample_raises_before_the_field_is_called(
    noise: torch.Tensor, guidance: object, options: dict, error: type, match: str
):
    if isinstance(guidance, torch.Tensor):
        guidance = _guide(guidance)
    with pytest.raises(error, match=match):
        fm.sample(_never_called, noise, guidance=guidance, **options)  # type: ignore[arg-type]


def test_a_valid_mask_of_another_batch_raises_before_the_field_is_called():
    guide = _guide(torch.zeros(8, 2), valid=torch.ones(3, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"guidance.valid must have shape \(8,\) or \(2, 8\)"):
        fm.sample(_never_called, torch.zeros(2, 8, 2), guidance=guide)


def test_a_head_refuses_a_bad_guidance_before_drawing_its_noise():
    head = fm.FlowMatchingHead(fm.FlowMatchingHeadConfig(action_dim=2, horizon=6, context_dim=4, width=16))
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    with pytest.raises(ValueError, match=r"guidance\.target must have shape"):
        head.sample(torch.zeros(3, 4), generator=generator, guidance=_guide(torch.zeros(8, 2)))
    with pytest.raises(ValueError, match="needs a fixed-step"):
        head.sample(
            torch.zeros(3, 4), generator=generator, solver="dopri5", guidance=_guide(torch.zeros(6, 2))
        )
    assert torch.equal(generator.get_state(), before)


def test_a_field_that_returns_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"velocity_fn must return the shape of x \(2, 8, 2\)"):
        fm.sample(lambda x, tau: x[:, :1], torch.zeros(2, 8, 2), guidance=_guide(torch.zeros(8, 2)))
