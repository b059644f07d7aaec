"""Training-time distributions: range, reproducibility and the distributions they claim to be."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm

SAMPLERS = {
    "uniform": fm.UniformTimeSampler(),
    "beta": fm.BetaTimeSampler(),
    "logit_normal": fm.LogitNormalTimeSampler(),
}


@pytest.mark.parametrize("name", SAMPLERS)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 64))
def test_times_lie_in_the_unit_interval_and_repeat_with_the_seed(name: str, seed: int, batch: int):
    sampler = SAMPLERS[name]
    first = sampler(batch, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    second = sampler(batch, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert first.shape == (batch,)
    assert first.dtype == torch.float64
    assert torch.equal(first, second)
    assert bool(((first >= 0) & (first <= 1)).all())


def _ks_distance(samples: torch.Tensor, cdf) -> float:
    ordered = samples.sort().values.to(torch.float64)
    n = ordered.numel()
    empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
    return (empirical - cdf(ordered)).abs().max().item()


def test_beta_sampler_is_pi0s_distribution_converted_to_tau():
    tau = fm.BetaTimeSampler()(40_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = 1 - tau  # pi0's time: 0.999 * Beta(1.5, 1) + 0.001, whose CDF is ((t - 0.001) / 0.999) ** 1.5
    assert t.min() >= 0.001
    assert t.max() <= 1.0
    assert (
        _ks_distance(t, lambda x: ((x - 0.001) / 0.999).clamp(0, 1) ** 1.5) < 0.012
    )  # 99.9% KS bound 0.0098
    # Most training happens near noise: P(tau < 0.5) = 1 - 0.5^1.5 ~ 0.65.
    assert abs((tau < 0.5).double().mean().item() - (1 - 0.5**1.5)) < 0.01


def test_beta_sampler_without_pi0_conversion_uses_the_draw_as_tau():
    tau = fm.BetaTimeSampler(alpha=2.0, beta=5.0, scale=1.0, offset=0.0, pi0_convention=False)(
        40_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    assert abs(tau.mean().item() - 2 / 7) < 0.005
    assert abs(tau.var().item() - 10 / (49 * 8)) < 0.002


@pytest.mark.parametrize("concentration", [0.3, 1.0, 1.5, 4.0])
def test_gamma_draws_have_the_gamma_mean_and_variance(concentration: float):
    from flowmatch.time_sampling import sample_gamma

    draws = sample_gamma(concentration, 40_000, generator=torch.Generator().manual_seed(2)).double()
    assert abs(draws.mean().item() - concentration) < 0.03 * max(1.0, concentration)
    assert abs(draws.var().item() - concentration) < 0.08 * max(1.0, concentration)


def test_logit_normal_sampler_is_a_sigmoid_of_a_normal():
    tau = fm.LogitNormalTimeSampler(mean=0.5, std=0.8)(
        40_000, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    z = torch.log(tau / (1 - tau))
    assert abs(z.mean().item() - 0.5) < 0.02
    assert abs(z.std().item() - 0.8) < 0.02


def test_uniform_sampler_is_uniform():
    tau = fm.UniformTimeSampler()(40_000, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert _ks_distance(tau, lambda x: x) < 0.012


def test_make_time_sampler_builds_by_name_and_rejects_unknown_names_and_bad_parameters():
    assert fm.make_time_sampler("logit_normal", std=2.0) == fm.LogitNormalTimeSampler(std=2.0)
    with pytest.raises(KeyError, match="unknown time sampler 'cosine'"):
        fm.make_time_sampler("cosine")
    with pytest.raises(ValueError, match="alpha and beta must be > 0"):
        fm.BetaTimeSampler(alpha=-1.0)
    with pytest.raises(ValueError, match="scale \\+ offset <= 1"):
        fm.BetaTimeSampler(scale=0.999, offset=0.01)
    with pytest.raises(ValueError, match="std must be > 0"):
        fm.LogitNormalTimeSampler(std=0.0)
    with pytest.raises(ValueError, match="need 0 <= low < high <= 1"):
        fm.UniformTimeSampler(low=0.5, high=0.2)
    with pytest.raises(ValueError, match="batch_size must be > 0"):
        fm.UniformTimeSampler()(0)
    assert math.isfinite(fm.BetaTimeSampler()(1).item())
