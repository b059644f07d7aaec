"""The two ends of a flow-matching action head, with any backbone in between.

``ActionEncoder``: noisy action chunk ``(B, H, D)`` + flow time ``tau`` -> action tokens ``(B, H, w)``.
``StateEncoder``: proprioceptive state ``(B, S)`` -> one state token ``(B, 1, w)``.
``ActionDecoder``: action tokens ``(B, H, w)`` -> velocity ``(B, H, D)``.

A backbone (the standalone :class:`flowmatch.TransformerBackbone`, or a MoT action expert) maps the tokens
of width ``w`` to tokens of the same width; these modules are all a backbone needs on either side.

Their ``forward`` checks type and shape, not values: they run at every step of a sampler's loop, where a
NaN/inf check would add a device synchronization per step. The entries that take a user's tensors once
(:meth:`flowmatch.FlowMatchingHead.loss` and ``sample``, :func:`flowmatch.sample`,
:func:`flowmatch.interpolate`) refuse NaN and inf.
"""

from __future__ import annotations

import torch
from einops import repeat
from torch import nn

from flowmatch._validation import require_floating, require_positive_int, require_shape
from flowmatch.time_embedding import check_periods, embed_time


class ActionEncoder(nn.Module):
    """Noisy action chunk + flow time -> action tokens, fused by an MLP as in pi0.

    ``token_h = W_out silu(W_in [W_a a_h ; emb(tau)])`` with ``emb`` the sinusoidal time embedding of width
    ``w``: ``Linear(D, w)``, then ``Linear(2w, w)``, SiLU, ``Linear(w, w)``.
    """

    def __init__(self, action_dim: int, width: int, *, min_period: float = 4e-3, max_period: float = 4.0):
        super().__init__()
        self.action_dim = require_positive_int("action_dim", action_dim)
        self.width = require_positive_int("width", width)
        if width % 2:
            raise ValueError(
                f"width must be even (the time embedding has sin and cos halves), received {width}"
            )
        check_periods(min_period, max_period)
        self.min_period = min_period
        self.max_period = max_period
        self.action_in = nn.Linear(action_dim, width)
        self.fuse_in = nn.Linear(2 * width, width)
        self.fuse_out = nn.Linear(width, width)

    def forward(self, noisy_actions: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """Encode ``noisy_actions`` (B, H, D) at times ``tau`` (B,) or scalar into tokens ``(B, H, w)``."""
        require_floating("noisy_actions", noisy_actions)
        require_shape("noisy_actions", noisy_actions, (None, None, self.action_dim))
        batch, horizon, _ = noisy_actions.shape
        require_floating("tau", tau)
        if tau.ndim == 0:
            tau = tau.expand(batch)
        require_shape("tau", tau, (batch,))
        # The embedding is computed from float32 times at least: bfloat16 cannot tell 0.500 from 0.501,
        # which the 4e-3 period is there to resolve.
        time_emb = embed_time(
            tau.to(torch.promote_types(tau.dtype, torch.float32)),
            self.width,
            min_period=self.min_period,
            max_period=self.max_period,
        ).to(noisy_actions.dtype)
        time_tokens = repeat(time_emb, "b w -> b h w", h=horizon)
        action_tokens = self.action_in(noisy_actions)
        fused = self.fuse_in(torch.cat([action_tokens, time_tokens], dim=-1))
        return self.fuse_out(nn.functional.silu(fused))


class StateEncoder(nn.Module):
    """Proprioceptive state ``(B, S)`` -> one token ``(B, 1, w)`` by ``Linear(S, w)`` (pi0's state token)."""

    def __init__(self, state_dim: int, width: int):
        super().__init__()
        self.state_dim = require_positive_int("state_dim", state_dim)
        self.width = require_positive_int("width", width)
        self.state_in = nn.Linear(state_dim, width)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Encode ``state`` (B, S) into ``(B, 1, w)``."""
        require_floating("state", state)
        require_shape("state", state, (None, self.state_dim))
        return self.state_in(state)[:, None, :]


class ActionDecoder(nn.Module):
    """Action tokens ``(B, H, w)`` -> velocity ``(B, H, D)`` by ``Linear(w, D)``."""

    def __init__(self, width: int, action_dim: int):
        super().__init__()
        self.width = require_positive_int("width", width)
        self.action_dim = require_positive_int("action_dim", action_dim)
        self.velocity_out = nn.Linear(width, action_dim)

    def forward(self, action_tokens: torch.Tensor) -> torch.Tensor:
        """Decode ``action_tokens`` (B, H, w) to the velocity ``(B, H, D)``."""
        require_floating("action_tokens", action_tokens)
        require_shape("action_tokens", action_tokens, (None, None, self.width))
        return self.velocity_out(action_tokens)
