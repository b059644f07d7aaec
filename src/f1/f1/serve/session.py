"""One connection's policy state and how it answers a :class:`~f1.serve.requests.Request`.

Every connection gets its own :class:`~f1.model.F1Policy` around the served model (the same weights):
its own action queue, history frames and random generator, so one client's episode never leaks into
another's. :meth:`Session.answer` runs the model; the server calls it from its one inference thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from f1.model import F1Model, F1Policy
from f1.serve.protocol import CHUNK
from f1.serve.requests import Request

__all__ = ["Session"]


def _to_numpy(actions: torch.Tensor, batched: bool) -> np.ndarray:
    out = actions.detach().to("cpu", torch.float32).numpy()
    return out if batched else out[0]


class Session:
    """The policy of one connection: a fresh :class:`F1Policy` sharing ``model``'s weights.

    A connection starts as an episode whose generator is seeded 0; ``reset`` starts a new one exactly as a
    new connection would (empty queue and history, the generator seeded with the request's ``seed``,
    default 0). Without a ``seed``, chunks draw from the episode's generator.
    """

    def __init__(self, model: F1Model) -> None:
        self.model = model
        self.policy = F1Policy(model)

    def answer(self, request: Request) -> dict[str, Any]:
        """The reply's content for ``request`` (the server adds ``server_timing``).

        Returns:
            ``actions``: float32 raw actions, chunk mode ``(H, A)`` (``(B, H, A)`` batched), action mode
            ``(A,)`` (``(B, A)``); ``embodiment``; ``mode``; in action mode ``replanned`` (whether this
            call ran the model rather than taking the next queued action).

        Raises:
            InputError: from the policy's checks (``UnknownEmbodimentError`` for an unknown embodiment);
                the session is then unchanged, and a failed ``reset`` request keeps the running episode.
        """
        policy = self.policy
        if request.reset:
            policy = F1Policy(self.model)
            if request.execution is not None:  # inference runs on the server's one thread, not a worker
                policy.set_execution(**request.execution)
            policy.reset(request.seed)
        if request.mode == CHUNK:
            seed = None if request.reset else request.seed  # a reset already seeded the episode
            plan = policy.plan(
                request.observation,
                seed=seed,
                previous_chunk=request.previous_actions,
                inference_delay=request.inference_delay,
            )
            self.policy = policy
            return {
                "actions": _to_numpy(plan.actions, request.batched),
                "embodiment": plan.embodiment,
                "mode": request.mode,
            }
        before = policy.last_plan
        action = policy.select_action(request.observation)
        self.policy = policy
        assert policy.last_plan is not None  # an episode's first call always plans
        return {
            "actions": _to_numpy(action, request.batched),
            "embodiment": policy.last_plan.embodiment,
            "mode": request.mode,
            "replanned": policy.last_plan is not before,
        }
