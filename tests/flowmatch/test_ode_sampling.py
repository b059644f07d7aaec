"""Specification of ``flowmatch.sample``: the properties that make its samples trustworthy."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm

FIXED = ["euler", "midpoint", "heun", "rk4", "rk4_38"]
ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "rk4_38": 4}
# Step counts inside each solver's asymptotic range and far above float64 round-off.
STEPS = {
    "euler": [32, 64, 128, 256],
    "midpoint": [16, 32, 64, 128],
    "heun": [16, 32, 64, 128],
    "rk4": [16, 32, 64, 128],
    "rk4_38": [16, 32, 64, 128],
}

sigmas = st.floats(0.3, 2.5)
means = st.floats(-2.0, 2.0)
seeds = st.integers(0, 2**31 - 1)


def fitted_order(steps: list[int], errors: list[float]) -> float:
    """Least-squares slope of ``-log(error)`` against ``log(steps)``: the measured convergence order."""
    x = torch.log(torch.tensor(steps, dtype=torch.float64))
    y = torch.log(torch.tensor(errors, dtype=torch.float64))
    x = x - x.mean()
    return float(-(x * (y - y.mean())).sum() / (x * x).sum())


def _eps(seed: int, shape: tuple[int, ...] = (8, 3), dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _random_grid(seed: int, points: int) -> torch.Tensor:
    inner = torch.rand(points, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.cat(
        [torch.zeros(1, dtype=torch.float64), inner.sort().values, torch.ones(1, dtype=torch.float64)]
    )


@pytest.mark.parametrize("solver", FIXED)
@settings(max_examples=10, deadline=None)
@given(seed=seeds, constant=st.floats(-5, 5), points=st.integers(0, 6))
def test_a_constant_field_is_integrated_exactly_on_any_grid(
    solver: str, seed: int, constant: float, points: int
):
    eps = _eps(seed)
    grid = _random_grid(seed + 1, points)
    result = fm.sample(lambda x, tau: torch.full_like(x, constant), eps, solver=solver, time_grid=grid)
    torch.testing.assert_close(result.x, eps + constant, rtol=0, atol=1e-12)


@pytest.mark.parametrize("solver", ["midpoint", "heun", "rk4", "rk4_38"])
@settings(max_examples=5, deadline=None)
@given(seed=seeds, a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_second_and_higher_order_solvers_integrate_a_field_linear_in_time_exactly(
    solver: str, seed: int, a: float, b: float
):
    eps = _eps(seed)
    result = fm.sample(lambda x, tau: a + b * tau[:, None] + 0 * x, eps, solver=solver, steps=3)
    torch.testing.assert_close(result.x, eps + a + b / 2, rtol=0, atol=1e-12)


def _measured_order(solver: str | fm.FixedStepSolver, flow: fm.GaussianFlow, eps: torch.Tensor) -> float:
    steps_list = STEPS[solver if isinstance(solver, str) else "midpoint"]
    errors = []
    for steps in steps_list:
        grid = fm.uniform_time_grid(steps)
        result = fm.sample(flow.velocity, eps, solver=solver, time_grid=grid, return_trajectory=True)
        # Sup-norm over the whole trajectory: an error cancelling at the last time cannot fake an order.
        errors.append((result.trajectory - flow.solution(eps, grid)).abs().max().item())
    return fitted_order(steps_list, errors)


@pytest.mark.parametrize("solver", FIXED)
@settings(max_examples=3, deadline=None)
@given(mu=means, sigma=sigmas, seed=seeds)
def test_measured_convergence_order_matches_the_solver_order_on_a_gaussian_flow(
    solver: str, mu: float, sigma: float, seed: int
):
    order = _measured_order(solver, fm.GaussianFlow(mu, sigma, warped=True), _eps(seed))
    assert abs(order - ORDER[solver]) <= 0.3, (
        f"{solver}: measured order {order:.2f}, expected {ORDER[solver]}"
    )


@pytest.mark.parametrize(("solver", "expected"), [("euler", 1), ("midpoint", 3), ("heun", 2), ("rk4", 4)])
@settings(max_examples=2, deadline=None)
@given(mu=means, sigma=sigmas, seed=seeds)
def test_measured_convergence_order_on_the_linear_path_flow_including_midpoint_superconvergence(
    solver: str, expected: int, mu: float, sigma: float, seed: int
):
    # On the linear (rectified) path between Gaussians the midpoint rule's local error coefficient vanishes
    # identically, so it converges at order 3 there; see gaussian_flows.py.
    order = _measured_order(solver, fm.GaussianFlow(mu, sigma), _eps(seed))
    assert abs(order - expected) <= 0.3, f"{solver}: measured order {order:.2f}, expected {expected}"


@pytest.mark.parametrize("solver", [*FIXED, "dopri5"])
@settings(max_examples=5, deadline=None)
@given(seed=seeds, row=st.integers(0, 5))
def test_batch_elements_are_independent(solver: str, seed: int, row: int):
    # Each row follows its own Gaussian flow; the batch result must equal the rows integrated one by one,
    # and perturbing one row's noise must leave every other row bit-identical.
    mus = torch.linspace(-2, 2, 6, dtype=torch.float64)[:, None]
    sigmas_ = torch.linspace(0.4, 2.0, 6, dtype=torch.float64)[:, None]

    def field_for(mu: torch.Tensor, sigma: torch.Tensor):
        def velocity(x, tau):
            t = tau[:, None]
            return mu + (t * sigma**2 - (1 - t)) / ((1 - t) ** 2 + t**2 * sigma**2) * (x - t * mu)

        return velocity

    eps = _eps(seed, (6, 3))
    steps = {"steps": 7} if solver in FIXED else {}
    batch = fm.sample(field_for(mus, sigmas_), eps, solver=solver, **steps).x
    if solver in FIXED:
        # Adaptive step control couples rows through the shared error norm, so only fixed-step solvers are
        # compared row by row.
        single = fm.sample(
            field_for(mus[row : row + 1], sigmas_[row : row + 1]), eps[row : row + 1], solver=solver, **steps
        )
        torch.testing.assert_close(batch[row : row + 1], single.x, rtol=0, atol=1e-13)
        perturbed = eps.clone()
        perturbed[row] += 1.0
        moved = fm.sample(field_for(mus, sigmas_), perturbed, solver=solver, **steps).x
        others = torch.arange(6) != row
        assert torch.equal(moved[others], batch[others])
        assert not torch.equal(moved[row], batch[row])
    else:
        exact = mus + sigmas_ * eps
        torch.testing.assert_close(batch, exact, rtol=1e-3, atol=1e-3)


@settings(max_examples=5, deadline=None)
@given(seed=seeds)
def test_the_same_generator_seed_gives_identical_samples(seed: int):
    field = fm.GaussianFlow(1.0, 0.5).velocity
    first = fm.sample(field, fm.gaussian_noise((4, 5, 2), generator=torch.Generator().manual_seed(seed)))
    second = fm.sample(field, fm.gaussian_noise((4, 5, 2), generator=torch.Generator().manual_seed(seed)))
    other = fm.sample(field, fm.gaussian_noise((4, 5, 2), generator=torch.Generator().manual_seed(seed + 1)))
    assert torch.equal(first.x, second.x)
    assert not torch.equal(first.x, other.x)


@pytest.mark.parametrize("solver", [*FIXED, "dopri5"])
def test_time_runs_from_noise_at_zero_to_data_at_one(solver: str):
    seen: list[float] = []
    data_mean, data_std = 4.0, 0.01
    inner = fm.GaussianFlow(data_mean, data_std).velocity

    def recording(x, tau):
        seen.append(tau[0].item())
        return inner(x, tau)

    eps = _eps(0, (64, 2))
    result = fm.sample(recording, eps, solver=solver)
    assert seen[0] == 0.0
    assert min(seen) >= 0.0
    assert max(seen) <= 1.0
    if solver in FIXED:
        # The first evaluation of every step is at the step's start, and steps move forward in time.
        per_step = fm.FIXED_STEP_SOLVERS[solver].evaluations_per_step
        starts = seen[::per_step]
        assert starts == sorted(starts)
        assert starts[-1] > 0.5
    # The end state is the data distribution N(4, 0.01^2), not the noise it started from.
    assert abs(result.x.mean().item() - data_mean) < 0.05
    assert result.x.std().item() < 0.1


@pytest.mark.parametrize("solver", FIXED)
@pytest.mark.parametrize("steps", [1, 3, 10])
def test_nfe_counts_every_velocity_call(solver: str, steps: int):
    calls = 0

    def counting(x, tau):
        nonlocal calls
        calls += 1
        return -x

    result = fm.sample(counting, torch.randn(2, 3), solver=solver, steps=steps)
    assert result.nfe == calls == steps * fm.FIXED_STEP_SOLVERS[solver].evaluations_per_step


def test_adaptive_nfe_counts_every_velocity_call():
    calls = 0

    def counting(x, tau):
        nonlocal calls
        calls += 1
        return -x

    result = fm.sample(counting, torch.randn(2, 3), solver="dopri5")
    assert result.nfe == calls > 0


@pytest.mark.parametrize("solver", [*FIXED, "dopri5"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_dtype_and_device_are_preserved_and_the_field_sees_them(solver: str, dtype: torch.dtype):
    seen: set[tuple[torch.dtype, torch.dtype, str]] = set()

    def field(x, tau):
        seen.add((x.dtype, tau.dtype, x.device.type))
        assert tau.shape == (x.shape[0],)
        return torch.ones_like(x)

    noise = torch.zeros(3, 4, 2, dtype=dtype)
    result = fm.sample(field, noise, solver=solver)
    assert result.x.dtype == dtype
    assert result.x.device == noise.device
    assert seen == {(dtype, dtype, "cpu")}
    torch.testing.assert_close(result.x, torch.ones_like(noise))


@pytest.mark.parametrize(
    ("solver", "loosest", "tightest"), [("dopri5", 4, 8), ("dopri8", 4, 7), ("bosh3", 3, 5)]
)
@settings(max_examples=4, deadline=None)
@given(mu=means, sigma=st.floats(0.5, 2.5), seed=seeds, exponent=st.floats(0, 1), warped=st.booleans())
def test_the_adaptive_solver_meets_its_tolerance_on_the_closed_form_flow(
    solver: str,
    loosest: int,
    tightest: int,
    mu: float,
    sigma: float,
    seed: int,
    exponent: float,
    warped: bool,
):
    tol = 10.0 ** -(loosest + exponent * (tightest - loosest))
    eps = _eps(seed, (16, 3))
    flow = fm.GaussianFlow(mu, sigma, warped=warped)
    field = flow.velocity
    loose = fm.sample(field, eps, solver=solver, rtol=tol, atol=tol)
    tight = fm.sample(field, eps, solver=solver, rtol=tol / 100, atol=tol / 100)
    exact = mu + sigma * eps

    def relative_rms(x: torch.Tensor, tolerance: float) -> float:
        # torchdiffeq's error norm: RMS over entries of error / (atol + rtol |x|).
        return ((x - exact) / (tolerance + tolerance * exact.abs())).pow(2).mean().sqrt().item()

    # The tolerance bounds each step's local error; the global error it allows is a small multiple of it
    # (worst measured: 45x, over ~3,800 runs with sigma 0.4..3 and tolerances 1e-4..1e-8). Asking for
    # 100x less must meet the tighter bound. It need not cost more evaluations: step acceptance is
    # discrete, and 100x tighter once took the same 26 (dopri5, tol 1e-4, as a rejected step of the loose
    # run cost what the tight run's extra step did). Asking for 10,000x less must cost more.
    assert relative_rms(loose.x, tol) <= 100
    assert relative_rms(tight.x, tol / 100) <= 100
    much_tighter = fm.sample(field, eps, solver=solver, rtol=tol / 1e4, atol=tol / 1e4)
    assert much_tighter.nfe > loose.nfe


def test_adaptive_solvers_never_evaluate_outside_the_unit_interval():
    seen: list[float] = []
    inner = fm.GaussianFlow(0.5, 0.7, warped=True).velocity

    def recording(x, tau):
        seen.append(tau[0].item())
        return inner(x, tau)

    for solver in fm.ADAPTIVE_SOLVERS:
        fm.sample(recording, _eps(1), solver=solver, rtol=1e-3, atol=1e-3)
    assert min(seen) >= 0.0
    assert max(seen) <= 1.0


def test_trajectory_holds_every_grid_state_from_noise_to_result():
    eps = _eps(3)
    grid = fm.cosine_time_grid(5)
    result = fm.sample(
        fm.GaussianFlow(1.0, 0.5).velocity, eps, solver="rk4", time_grid=grid, return_trajectory=True
    )
    assert result.trajectory is not None
    assert result.trajectory.shape == (6, *eps.shape)
    assert torch.equal(result.trajectory[0], eps)
    assert torch.equal(result.trajectory[-1], result.x)
    torch.testing.assert_close(result.time_grid, grid)


def test_a_user_solver_object_plugs_in():
    class RalstonSolver:
        name, order, evaluations_per_step = "ralston", 2, 2

        def step(self, field, x, tau0, tau1):
            h = tau1 - tau0
            k1 = field(x, tau0)
            k2 = field(x + (2 * h / 3) * k1, tau0 + 2 * h / 3)
            return x + h * (k1 / 4 + 3 * k2 / 4)

    solver = RalstonSolver()
    assert isinstance(solver, fm.FixedStepSolver)
    assert abs(_measured_order(solver, fm.GaussianFlow(0.5, 0.8, warped=True), _eps(0)) - 2) <= 0.3
    assert fm.sample(lambda x, tau: x, _eps(0), solver=solver, steps=5).nfe == 10


def test_register_solver_refuses_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        fm.register_solver(fm.EulerSolver())
    with pytest.raises(TypeError, match="solver must provide"):
        fm.register_solver(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"solver": "rk5"}, KeyError, "unknown solver 'rk5'"),
        ({"steps": 0}, ValueError, "steps must be > 0"),
        ({"steps": 2.5}, TypeError, "steps must be an int"),
        ({"steps": 4, "time_grid": fm.uniform_time_grid(4)}, ValueError, "either steps or time_grid"),
        ({"solver": "dopri5", "steps": 4}, ValueError, "chooses its own steps"),
        ({"time_grid": torch.tensor([0.0, 0.6, 0.4, 1.0])}, ValueError, "strictly increasing"),
        ({"time_grid": torch.tensor([0.0, 1.5])}, ValueError, r"must lie in \[0, 1\]"),
        ({"time_grid": torch.tensor([0.0])}, ValueError, "at least 2 points"),
        ({"solver": "dopri5", "rtol": 0.0}, ValueError, "rtol and atol must be > 0"),
    ],
)
def test_bad_arguments_raise_errors_that_name_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        fm.sample(lambda x, tau: x, torch.zeros(2, 3), **kwargs)


def test_bad_noise_and_fields_raise_errors_that_name_them():
    with pytest.raises(TypeError, match="noise must have a floating-point dtype"):
        fm.sample(lambda x, tau: x, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="velocity_fn must be callable"):
        fm.sample("not a function", torch.zeros(2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"velocity_fn must return the shape of x \(2, 3\), returned \(2,\)"):
        fm.sample(lambda x, tau: x.sum(dim=1), torch.zeros(2, 3))
    with pytest.raises(TypeError, match=r"velocity_fn must return a torch\.Tensor"):
        fm.sample(lambda x, tau: 1.0, torch.zeros(2, 3))


def test_gaussian_noise_is_reproducible_and_typed():
    a = fm.gaussian_noise((3, 4), generator=torch.Generator().manual_seed(7), dtype=torch.bfloat16)
    b = fm.gaussian_noise((3, 4), generator=torch.Generator().manual_seed(7), dtype=torch.bfloat16)
    assert a.dtype == torch.bfloat16
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="dtype must be a floating-point dtype"):
        fm.gaussian_noise((3,), generator=None, dtype=torch.long)


@settings(max_examples=5, deadline=None)
@given(seed=seeds, mu=means, sigma=sigmas, steps=st.integers(1, 12))
def test_rk4_38_is_torchdiffeqs_rk4_to_the_bit_and_rk4_is_the_classical_rule(
    seed: int, mu: float, sigma: float, steps: int
):
    import torchdiffeq

    flow = fm.GaussianFlow(mu, sigma)
    eps = _eps(seed)
    grid = fm.uniform_time_grid(steps).double()

    def field(tau: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flow.velocity(x, tau.expand(x.shape[0]))

    reference = torchdiffeq.odeint(field, eps, grid, method="rk4")[-1]
    assert torch.equal(fm.sample(flow.velocity, eps, solver="rk4_38", time_grid=grid).x, reference)
    # the classical rule on a one-step grid, written out: a different fourth-order method
    h, x = 1.0 / steps, eps

    def at(tau: float) -> torch.Tensor:
        return torch.tensor(tau, dtype=torch.float64)

    for tau in grid[:-1].tolist():
        k1 = field(at(tau), x)
        k2 = field(at(tau + h / 2), x + h / 2 * k1)
        k3 = field(at(tau + h / 2), x + h / 2 * k2)
        k4 = field(at(tau + h), x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    torch.testing.assert_close(fm.sample(flow.velocity, eps, solver="rk4", time_grid=grid).x, x)


@pytest.mark.parametrize("solver", ["euler", "dopri5"])
def test_time_dtype_hands_the_field_unrounded_grid_times(solver: str):
    seen: list[torch.Tensor] = []

    def field(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        seen.append(tau)
        return torch.zeros_like(x)

    eps = _eps(0, dtype=torch.float32)
    fm.sample(field, eps, solver=solver)
    assert {t.dtype for t in seen} == {torch.float32}
    seen.clear()
    result = fm.sample(field, eps, solver=solver, time_dtype=torch.float64)
    assert {t.dtype for t in seen} == {torch.float64}
    assert result.x.dtype == torch.float32
    if solver == "euler":  # pi0's t = 1 - tau rounds once, to the float32 nearest the exact 1 - k/10
        exact = [torch.tensor(1 - k / 10, dtype=torch.float64).float() for k in range(10)]
        assert [(1 - t[0]).float() for t in seen] == exact
        assert (1 - torch.tensor(0.6, dtype=torch.float32)) != exact[6]  # what float32 times would give


def test_time_dtype_must_be_a_floating_dtype():
    with pytest.raises(TypeError, match=r"time_dtype must be a floating-point torch\.dtype"):
        fm.sample(lambda x, tau: x, _eps(0), time_dtype=torch.int64)
    with pytest.raises(TypeError, match="time_dtype"):
        fm.sample(lambda x, tau: x, _eps(0), time_dtype="float64")  # type: ignore[arg-type]
