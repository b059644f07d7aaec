"""The keys of a frame, a training sample and an observation (LeRobot's layout), for every part of ``f1``.

Data (datasets and windows), the model and policy, the environments and evaluation all name features with
these; none writes the strings itself.
"""

from __future__ import annotations

__all__ = [
    "ACTION_IS_PAD_KEY",
    "ACTION_KEY",
    "EMBODIMENT_KEY",
    "FLOW_NOISE_KEY",
    "FLOW_TIME_KEY",
    "FUTURE_INDICES_KEY",
    "FUTURE_IS_PAD_KEY",
    "FUTURE_KEY",
    "FUTURE_LATENTS_KEY",
    "HISTORY_IS_PAD_KEY",
    "HISTORY_KEY",
    "HISTORY_LATENTS_KEY",
    "IMAGE_KEY_PREFIX",
    "STATE_KEY",
    "TASK_KEY",
    "camera_key",
]

IMAGE_KEY_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
ACTION_IS_PAD_KEY = "action_is_pad"
TASK_KEY = "task"
EMBODIMENT_KEY = "embodiment"
HISTORY_KEY = "history"
HISTORY_IS_PAD_KEY = "history_is_pad"
FUTURE_KEY = "future_image"
FUTURE_IS_PAD_KEY = "future_image_is_pad"
HISTORY_LATENTS_KEY = "history.latents"
"""The history frames as their tokenizer latents ``(B, T, Cz, h, w)``, in place of ``history`` (cached)."""
FUTURE_LATENTS_KEY = "future_image.latents"
"""The future frame's tokenizer latent ``f_hat`` ``(B, Cz, h, w)``, in place of ``future_image`` (cached)."""
FUTURE_INDICES_KEY = "future_image.indices"
"""The future frame's token indices of every scale, concatenated ``(B, L)`` int64 (cached)."""

FLOW_NOISE_KEY = "flow.noise"
"""Training only, optional: the flow's starting noise ``(B, H, A)`` (or ``(B, D, H, A)`` for ``D`` draws),
drawn by the data instead of the model's global RNG (each sample's randomness then travels with it)."""
FLOW_TIME_KEY = "flow.time"
"""Training only, optional: the flow time ``tau`` in [0, 1] ``(B,)`` (or ``(B, D)``), with ``flow.noise``."""


def camera_key(camera: str) -> str:
    """``"observation.images.<camera>"``, the key of one camera's frames."""
    return IMAGE_KEY_PREFIX + camera
