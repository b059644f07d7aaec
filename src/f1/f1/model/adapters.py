"""Per-embodiment input/output projections around the shared action expert.

Each registered embodiment owns one :class:`EmbodimentAdapter`: its state token projection, its action
encoder (action chunk + flow time -> tokens, pi0's time MLP) and its action decoder (tokens -> velocity),
built from the ``flowmatch`` head pieces. The trunk never depends on an embodiment's dimensions, so adding
an embodiment to a trained policy adds one adapter and leaves every trunk weight untouched.
"""

from __future__ import annotations

import torch
from torch import nn

from f1.model.embodiment import Embodiment
from flowmatch import ActionDecoder, ActionEncoder, StateEncoder, pi0_time_from_tau, velocity_from_pi0

__all__ = ["EmbodimentAdapter"]


class EmbodimentAdapter(nn.Module):
    """State/action projections of one embodiment to and from the action expert's width ``w``.

    Args:
        embodiment: dimensions ``S`` (state) and ``A`` (action).
        width: the action expert's width ``w``.
        time_convention: ``"tau"`` (ours) or ``"pi0"`` (weights imported from pi0/F1, which embed
            ``t = 1 - tau`` and predict ``eps - a``); converted here, at the edge.
    """

    def __init__(self, embodiment: Embodiment, width: int, time_convention: str = "tau") -> None:
        super().__init__()
        self.embodiment_name = embodiment.name
        self.pi0_convention = time_convention == "pi0"
        self.state_encoder = StateEncoder(embodiment.state_dim, width)
        self.action_encoder = ActionEncoder(embodiment.action_dim, width)
        self.action_decoder = ActionDecoder(width, embodiment.action_dim)

    def encode(self, state: torch.Tensor, noisy_actions: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """Action-expert input tokens ``(B, 1 + H, w)``: the state token, then one token per chunk step.

        Args:
            state: ``(B, S)`` normalized state.
            noisy_actions: ``(B, H, A)`` the flow's current point ``a_tau``.
            tau: ``(B,)`` flow time (0 noise, 1 data).
        """
        dtype = self.state_encoder.state_in.weight.dtype
        time = (pi0_time_from_tau(tau) if self.pi0_convention else tau).to(dtype)
        state_token = self.state_encoder(state.to(dtype))
        return torch.cat([state_token, self.action_encoder(noisy_actions.to(dtype), time)], dim=1)

    def decode(self, action_tokens: torch.Tensor) -> torch.Tensor:
        """Velocity ``d a_tau / d tau`` ``(B, H, A)`` from the action expert's chunk outputs ``(B, H, w)``."""
        velocity = self.action_decoder(
            action_tokens.to(self.action_decoder.velocity_out.weight.dtype)
        ).float()
        return velocity_from_pi0(velocity) if self.pi0_convention else velocity
