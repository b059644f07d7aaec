"""The facts of ``f1 serve``'s protocol: its version, the request keys and modes, the connect metadata.

openpi-client's exchange: on connect the server sends one msgpack-numpy map (:func:`server_metadata`);
then each request is one binary msgpack-numpy map (an observation plus the control keys below) and
each reply one binary map (``actions``, ``server_timing``, ...), or one text frame with a one-line error,
after which the connection keeps serving. docs/deployment.md has the tables.
"""

from __future__ import annotations

from typing import Any

from f1.keys import EMBODIMENT_KEY, HISTORY_IS_PAD_KEY, HISTORY_KEY, STATE_KEY, TASK_KEY, camera_key
from f1.model.config import F1Config
from f1.model.policy import EXECUTION_MODES

__all__ = [
    "CHUNK",
    "CONTROL_KEYS",
    "EXECUTION_HORIZON_KEY",
    "EXECUTION_KEY",
    "INFERENCE_DELAY_KEY",
    "MODES",
    "MODE_KEY",
    "PREVIOUS_ACTIONS_KEY",
    "PROTOCOL",
    "PROTOCOL_VERSION",
    "RESET_KEY",
    "SEED_KEY",
    "observation_keys",
    "server_metadata",
]

PROTOCOL = "f1-serve"
PROTOCOL_VERSION = 1
"""Raised when a request or reply key changes meaning; clients may check ``metadata["protocol_version"]``."""

MODE_KEY = "mode"
SEED_KEY = "seed"
RESET_KEY = "reset"
PREVIOUS_ACTIONS_KEY = "previous_actions"
"""Real-time chunking in mode ``chunk``: the previous chunk's raw actions ``([B,] H', A)`` aligned to the new
chunk's steps (see :meth:`F1Policy.plan`), with ``inference_delay``."""
INFERENCE_DELAY_KEY = "inference_delay"
EXECUTION_KEY = "execution"
"""Mode ``action``, with ``reset``: how the episode schedules inference (``sync``, ``async``, ``rtc``; see
:meth:`F1Policy.set_execution`), with ``inference_delay`` and ``execution_horizon``."""
EXECUTION_HORIZON_KEY = "execution_horizon"
CONTROL_KEYS = (
    MODE_KEY,
    SEED_KEY,
    RESET_KEY,
    PREVIOUS_ACTIONS_KEY,
    INFERENCE_DELAY_KEY,
    EXECUTION_KEY,
    EXECUTION_HORIZON_KEY,
)

CHUNK = "chunk"
ACTION = "action"
MODES = (CHUNK, ACTION)
"""``chunk``: a whole action chunk (:meth:`F1Policy.plan`), the observation carrying its own history;
``action``: the next action of the connection's episode (:meth:`F1Policy.select_action`), the server
keeping the history and the action queue."""

IMAGE_LAYOUTS = {"uint8": "HWC", "float": "CHW in [0, 1]"}
"""The layout of an image is told by its dtype: uint8 frames as cameras give them ``(H, W, 3)``, float
frames as the in-process policy takes them ``(3, H, W)`` in [0, 1] (float16/32/64)."""


def observation_keys(config: F1Config, mode: str) -> tuple[str, ...]:
    """The observation keys a request of ``mode`` may carry (control keys aside)."""
    keys = [*(camera_key(c) for c in config.cameras), STATE_KEY, TASK_KEY, EMBODIMENT_KEY]
    if mode == CHUNK and config.has_history:
        keys += [HISTORY_KEY, HISTORY_IS_PAD_KEY]
    return tuple(keys)


def server_metadata(config: F1Config, *, max_message_bytes: int) -> dict[str, Any]:
    """The map sent on connect: what a client needs to build requests and read replies."""
    metadata: dict[str, Any] = {
        "server": "f1",
        "protocol": PROTOCOL,
        "protocol_version": PROTOCOL_VERSION,
        "policy": config.name,
        "mode": config.mode,
        "request_modes": list(MODES),
        "execution_modes": list(EXECUTION_MODES),
        "cameras": list(config.cameras),
        "image_keys": [camera_key(c) for c in config.cameras],
        "image_size": [config.vision.image_size, config.vision.image_size],
        "image_layouts": dict(IMAGE_LAYOUTS),
        "embodiments": {
            e.name: {"state_dim": e.state_dim, "action_dim": e.action_dim, "control_hz": e.control_hz}
            for e in config.embodiments
        },
        "default_embodiment": config.default_embodiment_name,
        "chunk_size": config.action.chunk_size,
        "n_action_steps": config.action.n_action_steps,
        "chunk_requires_history": config.has_history,
        "max_message_bytes": max_message_bytes,
    }
    if config.has_history:
        metadata["history_frames"] = config.generation.history_frames
        metadata["history_offsets"] = list(config.history_offsets)
    return metadata
