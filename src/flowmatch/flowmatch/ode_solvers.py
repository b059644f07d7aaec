"""Fixed-step ODE solvers for ``dx/dtau = v(x, tau)`` and the registry that names them.

A solver advances the state over one interval ``[tau0, tau1]`` of a time grid. Solvers see a field that
takes a 0-d time tensor; :func:`flowmatch.sample` adapts it to the user's ``v(x, tau)`` with ``tau`` of
shape ``(B,)`` and counts the evaluations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from flowmatch._validation import require_positive_int

ScalarTimeField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``f(x, tau)`` with ``tau`` a 0-d tensor; returns ``dx/dtau`` shaped like ``x``."""


@runtime_checkable
class FixedStepSolver(Protocol):
    """One explicit Runge-Kutta step; ``evaluations_per_step`` field calls per interval."""

    name: str
    order: int
    evaluations_per_step: int

    def step(
        self, field: ScalarTimeField, x: torch.Tensor, tau0: torch.Tensor, tau1: torch.Tensor
    ) -> torch.Tensor:
        """Return the state at ``tau1`` from the state ``x`` at ``tau0`` (0-d time tensors)."""
        ...


@dataclass(frozen=True)
class EulerSolver:
    """``x + h v(x, tau0)``: order 1, one evaluation; pi0 samples with 10 of these steps."""

    name: str = "euler"
    order: int = 1
    evaluations_per_step: int = 1

    def step(
        self, field: ScalarTimeField, x: torch.Tensor, tau0: torch.Tensor, tau1: torch.Tensor
    ) -> torch.Tensor:
        """Advance ``x`` from ``tau0`` to ``tau1``."""
        return x + (tau1 - tau0) * field(x, tau0)


@dataclass(frozen=True)
class MidpointSolver:
    """Explicit midpoint rule: order 2, two evaluations."""

    name: str = "midpoint"
    order: int = 2
    evaluations_per_step: int = 2

    def step(
        self, field: ScalarTimeField, x: torch.Tensor, tau0: torch.Tensor, tau1: torch.Tensor
    ) -> torch.Tensor:
        """Advance ``x`` from ``tau0`` to ``tau1``."""
        h = tau1 - tau0
        x_mid = x + (h / 2) * field(x, tau0)
        return x + h * field(x_mid, tau0 + h / 2)


@dataclass(frozen=True)
class HeunSolver:
    """Heun's method (explicit trapezoid): order 2, two evaluations."""

    name: str = "heun"
    order: int = 2
    evaluations_per_step: int = 2

    def step(
        self, field: ScalarTimeField, x: torch.Tensor, tau0: torch.Tensor, tau1: torch.Tensor
    ) -> torch.Tensor:
        """Advance ``x`` from ``tau0`` to ``tau1``."""
        h = tau1 - tau0
        k1 = field(x, tau0)
        k2 = field(x + h * k1, tau1)
        return x + (h / 2) * (k1 + k2)


@dataclass(frozen=True)
class RK4Solver:
    """The classical fourth-order Runge-Kutta method (weights 1/6, 1/3, 1/3, 1/6): order 4, four
    evaluations. torchdiffeq's and flow_matching's ``"rk4"`` is the 3/8 rule instead:
    :class:`RK4ThreeEighthsSolver` (``"rk4_38"``)."""

    name: str = "rk4"
    order: int = 4
    evaluations_per_step: int = 4

    def step(
        self, field: ScalarTimeField, x: torch.Tensor, tau0: torch.Tensor, tau1: torch.Tensor
    ) -> torch.Tensor:
        """Advance ``x`` from ``tau0`` to ``tau1``."""
        h = tau1 - tau0
        half = tau0 + h / 2
        k1 = field(x, tau0)
        k2 = field(x + (h / 2) * k1, half)
        k3 = field(x + (h / 2) * k2, half)
        k4 = field(x + h * k3, tau1)
        return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


@dataclass(frozen=True)
class RK4ThreeEighthsSolver:
    """Kutta's 3/8 rule (weights 1/8, 3/8, 3/8, 1/8): order 4, four evaluations.

    This is what torchdiffeq's and flow_matching's ``method="rk4"`` compute; the arithmetic follows the
    same order, so a sample on the same grid matches theirs to the last bits.
    """

    name: str = "rk4_38"
    order: int = 4
    evaluations_per_step: int = 4

    def step(
        self, field: ScalarTimeField, x: torch.Tensor, tau0: torch.Tensor, tau1: torch.Tensor
    ) -> torch.Tensor:
        """Advance ``x`` from ``tau0`` to ``tau1``."""
        h = tau1 - tau0
        third = 1 / 3
        k1 = field(x, tau0)
        k2 = field(x + h * k1 * third, tau0 + h * third)
        k3 = field(x + h * (k2 - k1 * third), tau0 + h * (2 / 3))
        k4 = field(x + h * (k1 - k2 + k3), tau1)
        return x + (k1 + 3 * (k2 + k3) + k4) * h * 0.125


FIXED_STEP_SOLVERS: dict[str, FixedStepSolver] = {
    solver.name: solver
    for solver in (EulerSolver(), MidpointSolver(), HeunSolver(), RK4Solver(), RK4ThreeEighthsSolver())
}
"""Fixed-step solvers by name."""

ADAPTIVE_SOLVERS: tuple[str, ...] = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
"""Adaptive step-size methods, run by torchdiffeq."""


def register_solver(solver: FixedStepSolver) -> None:
    """Add a fixed-step solver to the registry under ``solver.name`` (refuses to replace an existing one).

    ``name`` must be a non-empty str, ``order`` and ``evaluations_per_step`` positive ints and ``step``
    callable; on any error the registry is left as it was.
    """
    if not isinstance(solver, FixedStepSolver) or not callable(solver.step):
        raise TypeError(
            "solver must provide name, order, evaluations_per_step and step(field, x, tau0, tau1), "
            f"received {type(solver).__name__}"
        )
    if not isinstance(solver.name, str):
        raise TypeError(f"solver.name must be a str, received {type(solver.name).__name__}")
    if not solver.name:
        raise ValueError("solver.name must be a non-empty str, received ''")
    require_positive_int("solver.order", solver.order)
    require_positive_int("solver.evaluations_per_step", solver.evaluations_per_step)
    if solver.name in FIXED_STEP_SOLVERS or solver.name in ADAPTIVE_SOLVERS:
        raise ValueError(f"a solver named {solver.name!r} is already registered")
    FIXED_STEP_SOLVERS[solver.name] = solver


def available_solvers() -> list[str]:
    """Names accepted by :func:`flowmatch.sample`: the fixed-step ones, then the adaptive ones."""
    return [*FIXED_STEP_SOLVERS, *ADAPTIVE_SOLVERS]
