"""Distributions of the flow time ``tau`` used for training (``tau = 0`` noise, ``tau = 1`` data).

Every sampler draws from an explicit ``torch.Generator`` so training is reproducible, and returns ``(B,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Protocol

import torch

from flowmatch._validation import (
    require_bool,
    require_finite_number,
    require_floating_dtype,
    require_generator,
    require_name,
    require_positive_int,
)


class TimeSampler(Protocol):
    """Draws ``batch_size`` flow times in [0, 1]."""

    def __call__(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Return times ``tau`` of shape ``(batch_size,)``."""
        ...


@dataclass(frozen=True)
class UniformTimeSampler:
    """``tau ~ U(low, high)``; the default ``U(0, 1)`` is the plain flow-matching choice."""

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        require_finite_number("low", self.low)
        require_finite_number("high", self.high)
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"need 0 <= low < high <= 1, received low={self.low}, high={self.high}")

    def __call__(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Return ``(batch_size,)`` uniform times."""
        _check_call(batch_size, generator, dtype)
        u = torch.rand(batch_size, generator=generator, device=device, dtype=dtype)
        return self.low + (self.high - self.low) * u


@dataclass(frozen=True)
class BetaTimeSampler:
    """pi0's time distribution: ``t = scale * Beta(alpha, beta) + offset`` in pi0's convention (t = 1 noise).

    With ``pi0_convention=True`` (default) the draw is converted at the edge, ``tau = 1 - t``, so the
    defaults put most mass on the noisy end (small ``tau``) and never reach pure data (``tau <= 0.999``).
    With ``pi0_convention=False`` the draw is used as ``tau`` directly.
    """

    alpha: float = 1.5
    beta: float = 1.0
    scale: float = 0.999
    offset: float = 0.001
    pi0_convention: bool = True

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "scale", "offset"):
            require_finite_number(name, getattr(self, name))
        require_bool("pi0_convention", self.pi0_convention)
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError(f"alpha and beta must be > 0, received alpha={self.alpha}, beta={self.beta}")
        if self.scale <= 0 or self.offset < 0 or self.scale + self.offset > 1:
            raise ValueError(
                "need scale > 0, offset >= 0 and scale + offset <= 1 so times stay in [0, 1], "
                f"received scale={self.scale}, offset={self.offset}"
            )

    def __call__(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Return ``(batch_size,)`` times ``tau``."""
        _check_call(batch_size, generator, dtype)
        x = sample_gamma(self.alpha, batch_size, generator=generator, device=device)
        y = sample_gamma(self.beta, batch_size, generator=generator, device=device)
        draw = self.scale * (x / (x + y)) + self.offset
        tau = 1 - draw if self.pi0_convention else draw
        return tau.to(dtype)


@dataclass(frozen=True)
class LogitNormalTimeSampler:
    """``tau = sigmoid(N(mean, std^2))``: concentrates training on intermediate times (SD3's choice)."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        require_finite_number("mean", self.mean)
        require_finite_number("std", self.std)
        if self.std <= 0:
            raise ValueError(f"std must be > 0, received {self.std}")

    def __call__(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Return ``(batch_size,)`` times ``tau`` in (0, 1)."""
        _check_call(batch_size, generator, dtype)
        z = torch.randn(batch_size, generator=generator, device=device, dtype=torch.float32)
        return torch.sigmoid(self.mean + self.std * z).to(dtype)


def _check_call(batch_size: object, generator: object, dtype: object) -> None:
    require_positive_int("batch_size", batch_size)
    require_generator("generator", generator)
    require_floating_dtype("dtype", dtype)


def sample_gamma(
    concentration: float,
    size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw ``(size,)`` samples of ``Gamma(concentration, 1)`` in float32 from an explicit generator.

    ``torch.distributions`` cannot take a generator, so this is the Marsaglia-Tsang squeeze method
    (vectorised rejection; acceptance > 95% for ``concentration >= 1``), with the boost
    ``Gamma(k) = Gamma(k + 1) * U^(1/k)`` for ``concentration < 1``.
    """
    # inf would never be accepted by the rejection loop below (it would spin forever), NaN neither.
    require_finite_number("concentration", concentration)
    if concentration <= 0:
        raise ValueError(f"concentration must be > 0, received {concentration}")
    require_positive_int("size", size)
    boosted = concentration < 1
    k = concentration + 1 if boosted else concentration
    d = k - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(size, device=device, dtype=torch.float32)
    pending = torch.arange(size, device=device)
    while pending.numel():
        n = pending.numel()
        z = torch.randn(n, generator=generator, device=device)
        u = torch.rand(n, generator=generator, device=device)
        v = (1 + c * z) ** 3
        log_v = torch.log(v.clamp_min(1e-30))
        accept = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * log_v)
        out[pending[accept]] = d * v[accept]
        pending = pending[~accept]
    if boosted:
        u = torch.rand(size, generator=generator, device=device)
        out = out * u ** (1.0 / concentration)
    return out


_TIME_SAMPLERS: dict[str, type] = {
    "uniform": UniformTimeSampler,
    "beta": BetaTimeSampler,
    "logit_normal": LogitNormalTimeSampler,
}


def make_time_sampler(name: str, **params: float | bool) -> TimeSampler:
    """Build a time sampler by name: ``"uniform"``, ``"beta"`` (pi0's) or ``"logit_normal"``.

    ``params`` are the sampler's fields; an unknown one is a ``KeyError`` naming the fields it has.
    """
    require_name("name", name, _TIME_SAMPLERS, "time sampler")
    accepted = [f.name for f in fields(_TIME_SAMPLERS[name])]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise KeyError(
            f"unknown parameters {unknown} for time sampler {name!r}; expected a subset of {accepted}"
        )
    return _TIME_SAMPLERS[name](**params)
