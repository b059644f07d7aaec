"""The linear probability path of flow matching, and the conversion to and from pi0's convention.

This library's convention (the seed's and the F1 paper's): ``tau = 0`` is noise, ``tau = 1`` is data,

    a_tau = (1 - tau) * eps + tau * a,        target velocity  d a_tau / d tau = a - eps.

pi0 (openpi, LeRobot) uses the same path with the time reversed, ``t = 1 - tau`` (``t = 1`` is noise):

    x_t = t * eps + (1 - t) * a,              target  u = d x_t / d t = eps - a = -(a - eps).

So a pi0 model is used here by converting at the edge: call it at ``t = 1 - tau`` and negate its output
(:func:`velocity_fn_from_pi0`). There is no second code path for pi0's convention.

:func:`interpolate` and :func:`target_velocity` (a training step's inputs) refuse NaN/inf. The four
conversions check types only, not values: they run inside a sampler's loop on every step (a pi0 adapter's
``t = 1 - tau`` and ``v = -u``), where a value check would cost a device synchronization per step; NaN in
gives NaN out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flowmatch._validation import require_finite, require_floating, require_in_unit_interval, require_ndim

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A velocity field ``v(x, tau) -> dx/dtau``: ``x`` (B, ...), ``tau`` (B,), output shaped like ``x``."""


def broadcast_time(tau: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape times ``tau`` (B,) or a scalar to ``(B, 1, ..., 1)`` so they broadcast over ``like``."""
    require_floating("tau", tau)
    if tau.ndim == 0:
        return tau
    require_ndim("tau", tau, (1,), "() or (B,)")
    if tau.shape[0] != like.shape[0]:
        raise ValueError(
            f"tau must have shape ({like.shape[0]},) to match the batch, received {tuple(tau.shape)}"
        )
    return tau.reshape(tau.shape[0], *([1] * (like.ndim - 1)))


def interpolate(noise: torch.Tensor, actions: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Point on the path: ``a_tau = (1 - tau) * noise + tau * actions``.

    Args:
        noise: ``eps``, shape ``(B, H, D)`` (any ``(B, ...)`` works).
        actions: the data ``a``, same shape as ``noise``.
        tau: flow time in [0, 1], shape ``(B,)`` or a scalar; 0 is noise, 1 is data.

    Returns:
        ``a_tau`` with the shape of ``actions``.

    Raises ``ValueError`` naming the argument for NaN/inf in any input or ``tau`` outside [0, 1].
    """
    _check_pair(noise, actions)
    t = broadcast_time(tau, actions)
    require_in_unit_interval("tau", tau)
    t = t.to(actions.dtype)
    return (1 - t) * noise + t * actions


def target_velocity(noise: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Regression target of the path: ``d a_tau / d tau = actions - noise``, shape of ``actions``.

    Raises ``ValueError`` naming the argument for NaN/inf in ``noise`` or ``actions``.
    """
    _check_pair(noise, actions)
    return actions - noise


def _check_pair(noise: torch.Tensor, actions: torch.Tensor) -> None:
    require_floating("noise", noise)
    require_floating("actions", actions)
    if noise.shape != actions.shape:
        raise ValueError(
            f"noise must have the shape of actions {tuple(actions.shape)}, received {tuple(noise.shape)}"
        )
    require_finite("noise", noise)
    require_finite("actions", actions)


DATA_PREDICTION_MIN_GAP = 1e-3
"""Smallest ``1 - tau`` that :func:`velocity_from_data_prediction` divides by (a sampler may evaluate the
field at ``tau = 1``, where the velocity of a data prediction is undefined)."""


def velocity_from_data_prediction(
    x: torch.Tensor, predicted: torch.Tensor, tau: torch.Tensor, *, min_gap: float = DATA_PREDICTION_MIN_GAP
) -> torch.Tensor:
    """The path's velocity at ``x`` given a prediction of the data: ``v = (a_hat - x) / (1 - tau)``.

    A model may predict the clean sample ``a_hat`` (x-prediction, as in Li and He 2025, "Back to Basics: Let
    Denoising Generative Models Denoise") instead of the velocity; on the linear path both give the same ODE,
    since ``a_tau = (1 - tau) eps + tau a`` makes ``a - eps = (a - a_tau) / (1 - tau)``. An Euler step of size
    ``1 - tau`` then lands exactly on ``a_hat``. Trained with the squared error of ``a_hat`` (a regression
    target with no noise in it), it is still a flow-matching model that samples by :func:`flowmatch.sample`.

    Args:
        x: the current point ``a_tau``, ``(B, ...)``.
        predicted: the model's ``a_hat``, shaped like ``x``.
        tau: flow time, ``(B,)`` or a scalar.
        min_gap: ``1 - tau`` is clamped to at least this (at ``tau = 1`` the velocity is undefined).

    Returns:
        ``v`` shaped like ``x``, in ``x``'s dtype.

    Raises ``TypeError`` for a tensor that is not floating point, ``ValueError`` when the shapes differ or
    ``min_gap`` is not in (0, 1]. Values are not checked (it runs inside a sampler's loop, see the module
    docstring).
    """
    require_floating("x", x)
    require_floating("predicted", predicted)
    if predicted.shape != x.shape:
        raise ValueError(
            f"predicted must have the shape of x {tuple(x.shape)}, received {tuple(predicted.shape)}"
        )
    if isinstance(min_gap, bool) or not isinstance(min_gap, int | float) or not 0 < min_gap <= 1:
        raise ValueError(f"min_gap: expected a number in (0, 1], received {min_gap!r}")
    gap = (1 - broadcast_time(tau, x)).clamp_min(min_gap).to(x.dtype)
    return (predicted - x) / gap


def tau_from_pi0_time(t: torch.Tensor) -> torch.Tensor:
    """pi0's time ``t`` (1 = noise) to this library's ``tau`` (1 = data): ``tau = 1 - t``."""
    return 1 - require_floating("t", t)


def pi0_time_from_tau(tau: torch.Tensor) -> torch.Tensor:
    """This library's ``tau`` (1 = data) to pi0's time ``t`` (1 = noise): ``t = 1 - tau``."""
    return 1 - require_floating("tau", tau)


def velocity_from_pi0(u: torch.Tensor) -> torch.Tensor:
    """pi0's velocity ``u = eps - a`` (d/dt) to this library's ``v = a - eps`` (d/dtau): ``v = -u``."""
    return -require_floating("u", u)


def pi0_velocity_from_velocity(v: torch.Tensor) -> torch.Tensor:
    """This library's velocity ``v = a - eps`` to pi0's ``u = eps - a``: ``u = -v``."""
    return -require_floating("v", v)


def velocity_fn_from_pi0(pi0_velocity_fn: VelocityFn) -> VelocityFn:
    """Wrap a pi0-convention field ``u(x, t)`` (t = 1 noise) as ``v(x, tau)`` for :func:`flowmatch.sample`.

    Integrating the result from ``tau = 0`` to ``1`` is integrating pi0's field from ``t = 1`` to ``0``.
    """
    if not callable(pi0_velocity_fn):
        raise TypeError(f"pi0_velocity_fn must be callable, received {type(pi0_velocity_fn).__name__}")

    def velocity(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return velocity_from_pi0(pi0_velocity_fn(x, pi0_time_from_tau(tau)))

    return velocity
