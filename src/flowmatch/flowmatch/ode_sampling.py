"""``sample``: integrate a velocity field from noise (tau = 0) to data (tau = 1) with a named solver.

One functional entry in the style of ``torchdiffeq.odeint``; the velocity field is any callable
``v(x, tau) -> dx/dtau``, so a model, a closed-form field or a closure over a cached backbone all plug in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchdiffeq

from flowmatch._validation import (
    require_bool,
    require_finite,
    require_finite_number,
    require_floating,
    require_floating_dtype,
    require_generator,
    require_positive_int,
)
from flowmatch.ode_solvers import ADAPTIVE_SOLVERS, FIXED_STEP_SOLVERS, FixedStepSolver
from flowmatch.probability_path import VelocityFn
from flowmatch.realtime_chunking import RealTimeChunking, guided_velocity_fn
from flowmatch.time_grids import uniform_time_grid, validate_time_grid


@dataclass
class SampleResult:
    """What :func:`sample` returns.

    Attributes:
        x: final state at the last grid time (``tau = 1`` by default), shape and dtype of the noise.
        nfe: number of calls made to the velocity function.
        time_grid: ``(T,)`` float64 times of ``trajectory`` (for fixed-step solvers, every grid point; for
            adaptive ones, the requested output times).
        trajectory: ``(T, *noise.shape)`` states at ``time_grid`` when ``return_trajectory=True``, else None.
    """

    x: torch.Tensor
    nfe: int
    time_grid: torch.Tensor
    trajectory: torch.Tensor | None = None


def gaussian_noise(
    shape: Sequence[int],
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard normal noise ``eps`` of ``shape`` (e.g. ``(B, H, D)``) drawn from an explicit generator.

    The draw is made on the generator's device and moved to ``device``, so one seed gives the same noise
    wherever the model runs.
    """
    if not isinstance(shape, Sequence) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise ValueError(f"shape must be a sequence of ints >= 0, received {shape!r}")
    require_generator("generator", generator)
    require_floating_dtype("dtype", dtype)
    draw_device = generator.device if generator is not None else device
    noise = torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=torch.float32)
    return noise.to(device=device if device is not None else draw_device, dtype=dtype)


class _CountingField:
    """Adapts a user's ``v(x, tau (B,))`` to a solver's ``f(x, tau 0-d)``, counting and checking calls.

    The solver may carry its state in a wider ``work_dtype`` than the caller's (float32 for a bfloat16
    state) so rounding does not accumulate over steps; the field always sees the caller's dtype for ``x``
    and ``time_dtype`` (default: the same) for ``tau``.
    """

    def __init__(
        self,
        velocity_fn: VelocityFn,
        like: torch.Tensor,
        work_dtype: torch.dtype,
        time_dtype: torch.dtype | None = None,
    ) -> None:
        self.velocity_fn = velocity_fn
        self.shape = like.shape
        self.dtype = like.dtype
        self.time_dtype = time_dtype or like.dtype
        self.device = like.device
        self.work_dtype = work_dtype
        self.calls = 0

    def __call__(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        tau_batch = tau.to(device=self.device, dtype=self.time_dtype).reshape(()).expand(self.shape[0])
        dx = self.velocity_fn(x.to(self.dtype), tau_batch)
        if not isinstance(dx, torch.Tensor):
            raise TypeError(f"velocity_fn must return a torch.Tensor, returned {type(dx).__name__}")
        if dx.shape != self.shape:
            raise ValueError(
                f"velocity_fn must return the shape of x {tuple(self.shape)}, returned {tuple(dx.shape)}"
            )
        return dx.to(self.work_dtype)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32/float64 states are integrated as they are; lower precisions in float32."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def sample(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    *,
    solver: str | FixedStepSolver = "euler",
    steps: int | None = None,
    time_grid: torch.Tensor | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    return_trajectory: bool = False,
    time_dtype: torch.dtype | None = None,
    guidance: RealTimeChunking | None = None,
) -> SampleResult:
    """Integrate ``dx/dtau = velocity_fn(x, tau)`` from ``x = noise`` at ``tau = 0`` to data at ``tau = 1``.

    Args:
        velocity_fn: any callable ``(x, tau) -> dx``; ``x`` has the shape, dtype and device of ``noise``,
            ``tau`` is a ``(B,)`` tensor (``B = noise.shape[0]``, all entries equal) of the same dtype
            (or ``time_dtype``) and device. It must return a tensor shaped like ``x``; it is cast to
            ``x``'s dtype.
        noise: the starting state ``eps``, shape ``(B, ...)`` e.g. ``(B, H, D)``, floating point. Draw it
            with :func:`gaussian_noise` and an explicit ``torch.Generator`` for reproducible samples.
        solver: ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"`` (classical), ``"rk4_38"`` (the 3/8
            rule: torchdiffeq's ``"rk4"``) (fixed step; or a registered
            :class:`~flowmatch.ode_solvers.FixedStepSolver`), or an adaptive torchdiffeq method
            (``"dopri5"``, ``"dopri8"``, ``"bosh3"``, ``"fehlberg2"``, ``"adaptive_heun"``).
        steps: number of uniform steps for a fixed-step solver (default 10, pi0's choice).
        time_grid: instead of ``steps``, an increasing ``(T,)`` grid in [0, 1]; for a fixed-step solver
            the steps go between its points, for an adaptive solver it sets the start, end and the times of
            ``trajectory`` (default ``[0, 1]``).
        rtol: relative tolerance of adaptive solvers (ignored by fixed-step ones).
        atol: absolute tolerance of adaptive solvers (ignored by fixed-step ones).
        return_trajectory: also return the states at every grid time (a bool).
        time_dtype: dtype of the ``tau`` handed to ``velocity_fn`` (default: ``noise``'s). ``torch.float64``
            gives a field the grid's times unrounded, so a conversion such as pi0's ``t = 1 - tau`` is
            rounded once, to the float nearest the exact time (``1 - 0.6`` computed in float32 is
            ``0.39999998``, from float64 ``0.40000001``).
        guidance: a :class:`~flowmatch.RealTimeChunking` to inpaint the chunk toward a previous chunk's
            remaining actions (real-time chunking; fixed-step solvers only, ``noise`` ``(B, H, D)``).
            ``velocity_fn`` must then be differentiable in ``x``: each evaluation runs it with grad
            enabled on a detached ``x`` and adds the guidance term; the number of evaluations is
            unchanged. None (the default) is plain sampling, the same code path as without the argument.

    Returns:
        :class:`SampleResult` with ``x`` (shape, dtype and device of ``noise``) and ``nfe``, the number
        of ``velocity_fn`` calls, which is the cost to compare solvers by.

    Every argument is checked once, here, before the first call to ``velocity_fn``: NaN or inf in ``noise``
    or ``time_grid`` is a ``ValueError``. What ``velocity_fn`` returns is checked for type and shape at every
    call but not for NaN/inf: that would add a device synchronization per step on a GPU, so a field that
    returns NaN gives a NaN sample.
    """
    if not callable(velocity_fn):
        raise TypeError(f"velocity_fn must be callable (x, tau) -> dx, received {type(velocity_fn).__name__}")
    require_floating("noise", noise)
    if noise.ndim < 1:
        raise ValueError(f"noise must have shape (B, ...), received shape {tuple(noise.shape)}")
    method, grid = check_sample_options(
        solver=solver,
        steps=steps,
        time_grid=time_grid,
        rtol=rtol,
        atol=atol,
        return_trajectory=return_trajectory,
        time_dtype=time_dtype,
        guidance=guidance,
    )
    require_finite("noise", noise)
    if guidance is not None:
        guidance.check_against(tuple(noise.shape), noise.device)
        velocity_fn = guided_velocity_fn(velocity_fn, guidance, noise)

    field = _CountingField(velocity_fn, noise, _work_dtype(noise.dtype), time_dtype)
    if isinstance(method, str):
        return _sample_adaptive(field, noise, method, grid, rtol, atol, return_trajectory)
    return _sample_fixed(field, noise, method, grid, return_trajectory)


def check_sample_options(
    *,
    solver: str | FixedStepSolver,
    steps: int | None,
    time_grid: torch.Tensor | None,
    rtol: float,
    atol: float,
    return_trajectory: bool = False,
    time_dtype: torch.dtype | None = None,
    guidance: RealTimeChunking | None = None,
) -> tuple[str | FixedStepSolver, torch.Tensor]:
    """Check :func:`sample`'s options; return the solver (an adaptive method's name or a fixed-step
    solver) and the time grid it integrates over. A caller that draws noise first (a head's ``sample``)
    calls this before drawing, so a bad option leaves its generator untouched (``guidance`` is checked
    here as far as it goes without the noise: its type and the solver it needs)."""
    if steps is not None and time_grid is not None:
        raise ValueError("pass either steps or time_grid, not both")
    if steps is not None:
        require_positive_int("steps", steps)
    if time_grid is not None:
        validate_time_grid(time_grid)
    if time_dtype is not None and not (
        isinstance(time_dtype, torch.dtype) and torch.empty(0, dtype=time_dtype).is_floating_point()
    ):
        raise TypeError(f"time_dtype must be a floating-point torch.dtype or None, received {time_dtype!r}")
    require_bool("return_trajectory", return_trajectory)
    # Checked for every solver (fixed-step ones ignore them), so a bad value never waits for a solver switch.
    require_finite_number("rtol", rtol)
    require_finite_number("atol", atol)
    if rtol <= 0 or atol <= 0:
        raise ValueError(f"rtol and atol must be > 0, received rtol={rtol}, atol={atol}")

    if guidance is not None and not isinstance(guidance, RealTimeChunking):
        raise TypeError(f"guidance must be a RealTimeChunking or None, received {type(guidance).__name__}")
    if isinstance(solver, str) and solver in ADAPTIVE_SOLVERS:
        if guidance is not None:
            raise ValueError(
                f"guidance: real-time chunking needs a fixed-step solver, received the adaptive {solver!r}; "
                f"use one of {list(FIXED_STEP_SOLVERS)}"
            )
        if steps is not None:
            raise ValueError(f"adaptive solver {solver!r} chooses its own steps; pass rtol/atol, not steps")
        grid = torch.tensor([0.0, 1.0], dtype=torch.float64) if time_grid is None else time_grid
        return solver, grid
    fixed = _resolve_fixed_solver(solver)
    grid = uniform_time_grid(10 if steps is None else steps) if time_grid is None else time_grid
    return fixed, grid


def _resolve_fixed_solver(solver: str | FixedStepSolver) -> FixedStepSolver:
    if isinstance(solver, str):
        if solver not in FIXED_STEP_SOLVERS:
            known = [*FIXED_STEP_SOLVERS, *ADAPTIVE_SOLVERS]
            raise KeyError(f"unknown solver {solver!r}; expected one of {known}")
        return FIXED_STEP_SOLVERS[solver]
    if isinstance(solver, FixedStepSolver):
        return solver
    raise TypeError(f"solver must be a name or a FixedStepSolver, received {type(solver).__name__}")


def _sample_fixed(
    field: _CountingField,
    noise: torch.Tensor,
    solver: FixedStepSolver,
    grid: torch.Tensor,
    return_trajectory: bool,
) -> SampleResult:
    work_dtype = field.work_dtype
    # Step sizes are formed from 0-d float64 times (they do not promote the state's dtype), so a
    # low-precision state still takes steps that sum exactly to the grid's span.
    time_dtype = torch.float64 if noise.device.type in ("cpu", "cuda") else torch.float32
    times = grid.detach().to(device=noise.device, dtype=time_dtype)
    x = noise.to(work_dtype)
    states = [x] if return_trajectory else []
    for i in range(times.numel() - 1):
        x = solver.step(field, x, times[i], times[i + 1]).to(work_dtype)
        if return_trajectory:
            states.append(x)
    trajectory = torch.stack(states).to(noise.dtype) if return_trajectory else None
    return SampleResult(
        x=x.to(noise.dtype), nfe=field.calls, time_grid=times.to(torch.float64).cpu(), trajectory=trajectory
    )


def _sample_adaptive(
    field: _CountingField,
    noise: torch.Tensor,
    method: str,
    grid: torch.Tensor,
    rtol: float,
    atol: float,
    return_trajectory: bool,
) -> SampleResult:
    work_dtype = field.work_dtype
    times = grid.detach().to(device=noise.device, dtype=work_dtype)

    def ode_rhs(tau: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return field(x, tau)

    # step_t makes the solver land on every requested time instead of stepping past tau = 1 and
    # interpolating back: a learned field is never evaluated outside the [0, 1] it was trained on.
    states = torchdiffeq.odeint(
        ode_rhs,
        noise.to(work_dtype),
        times,
        method=method,
        rtol=rtol,
        atol=atol,
        options={"step_t": times},
    )
    states = states.to(noise.dtype)
    return SampleResult(
        x=states[-1],
        nfe=field.calls,
        time_grid=grid.detach().to(torch.float64).cpu(),
        trajectory=states if return_trajectory else None,
    )
