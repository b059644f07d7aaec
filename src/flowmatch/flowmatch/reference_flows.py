"""Closed-form Gaussian-to-Gaussian flows: exact answers to check a solver (or a custom one) against.

Noise ``eps ~ N(0, I)``, data ``N(mu, sigma^2 I)``, the linear path ``x_tau = (1 - tau) eps + tau a``. The
marginal velocity is ``v(x, tau) = mu + (tau sigma^2 - (1 - tau)) / s(tau)^2 * (x - tau mu)`` with
``s(tau)^2 = (1 - tau)^2 + tau^2 sigma^2``, and the exact flow is ``x_tau = tau mu + s(tau) eps``, which maps
``eps`` to ``mu + sigma eps`` at ``tau = 1``.

``warped=True`` runs the same path on the clock ``tau = sin(pi u / 2)``. It exists because on the linear
path the explicit midpoint rule is third-order accurate (its local error coefficient
``a^3/6 + a''/24 + a a'/4`` vanishes identically for ``a = s'/s`` with ``s^2`` quadratic), which would hide a
broken second-order method; on the warped clock every solver shows its textbook order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from flowmatch._validation import (
    require_bool,
    require_finite,
    require_finite_number,
    require_floating,
    require_ndim,
)


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (x.ndim - 1)))


@dataclass(frozen=True)
class GaussianFlow:
    """The flow from ``N(0, I)`` to ``N(mu, sigma^2 I)``; ``velocity`` plugs into :func:`flowmatch.sample`."""

    mu: float
    sigma: float
    warped: bool = False

    def __post_init__(self) -> None:
        require_finite_number("mu", self.mu)
        require_finite_number("sigma", self.sigma)
        require_bool("warped", self.warped)
        if self.sigma <= 0:
            raise ValueError(f"sigma must be > 0, received {self.sigma}")

    def clock(self, u: torch.Tensor) -> torch.Tensor:
        """Path time ``tau`` at solver time ``u``: ``u`` itself, or ``sin(pi u / 2)`` when warped."""
        return torch.sin(math.pi / 2 * u) if self.warped else u

    def velocity(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``dx/du`` at states ``x`` (B, ...) and times ``u`` (B,) or a scalar.

        Types and shapes are checked, values are not: this is a field a sampler calls at every step.
        """
        require_floating("x", x)
        require_floating("u", u)
        if u.ndim and u.shape != x.shape[:1]:
            raise ValueError(f"u must have shape () or ({x.shape[0]},), received {tuple(u.shape)}")
        t = _per_sample(self.clock(u), x)
        s2 = (1 - t) ** 2 + t**2 * self.sigma**2
        v = self.mu + (t * self.sigma**2 - (1 - t)) / s2 * (x - t * self.mu)
        if self.warped:
            v = _per_sample((math.pi / 2) * torch.cos(math.pi / 2 * u), x) * v
        return v

    def solution(self, eps: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Exact states ``(T, *eps.shape)`` at solver times ``u`` (T,) starting from ``eps`` at ``u = 0``."""
        require_floating("eps", eps)
        require_finite("eps", eps)
        require_floating("u", u)
        require_ndim("u", u, (1,), "(T,)")
        require_finite("u", u)
        t = self.clock(u.to(eps.dtype)).reshape(-1, *([1] * eps.ndim))
        return t * self.mu + ((1 - t) ** 2 + t**2 * self.sigma**2).sqrt() * eps[None]

    def endpoint(self, eps: torch.Tensor) -> torch.Tensor:
        """The exact sample ``mu + sigma eps`` that ``eps`` flows to."""
        require_floating("eps", eps)
        require_finite("eps", eps)
        return self.mu + self.sigma * eps
