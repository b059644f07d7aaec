"""A decoded request -> a checked :class:`Request` with torch tensors: the server's input boundary.

Everything the wire format leaves open is settled here, before the request reaches the model: the map's
keys (unknown ones are refused, naming the closest known key), the control values, each array's dtype,
layout, shape and finiteness. An unbatched request (``observation.state`` ``(S,)``) gets a batch of one
here, so the policy always sees ``(B, ...)``. What depends on the embodiment (the state's width, the
embodiment's name) is checked by :meth:`F1Model.parse`, whose errors name the key the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from f1.checks import did_you_mean
from f1.errors import ProtocolError
from f1.keys import EMBODIMENT_KEY, HISTORY_IS_PAD_KEY, HISTORY_KEY, STATE_KEY, TASK_KEY, camera_key
from f1.model.config import F1Config
from f1.model.policy import EXECUTION_MODES
from f1.serve.protocol import (
    ACTION,
    CHUNK,
    CONTROL_KEYS,
    EXECUTION_HORIZON_KEY,
    EXECUTION_KEY,
    INFERENCE_DELAY_KEY,
    MODE_KEY,
    MODES,
    PREVIOUS_ACTIONS_KEY,
    RESET_KEY,
    SEED_KEY,
    observation_keys,
)

__all__ = ["Request", "parse_request"]

_MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Request:
    """One checked request.

    Attributes:
        mode: ``"chunk"`` or ``"action"`` (see :data:`f1.serve.protocol.MODES`).
        observation: the policy's observation: ``observation.images.<camera>`` ``(B, 3, H, W)`` (uint8 or
            float32 in [0, 1]), ``observation.state`` ``(B, S)`` float32, ``task``, optionally
            ``embodiment``, and in chunk mode ``history`` ``(B, T, 3, H', W')`` / ``history_is_pad``
            ``(B, T)`` bool.
        batched: False when the request was unbatched (the reply drops the batch dimension again).
        seed: the request's seed, or None.
        reset: start a new episode on this connection before answering.
        previous_actions: mode ``chunk``, real-time chunking: the previous chunk's raw actions
            ``(B, H', A)`` float32 (see :meth:`F1Policy.plan`), or None.
        inference_delay: with ``previous_actions`` (mode ``chunk``) or ``execution`` (mode ``action``).
        execution: mode ``action`` with ``reset``: ``{"mode", "inference_delay", "execution_horizon"}``
            for :meth:`F1Policy.set_execution`, or None (the connection's default, ``sync``).
    """

    mode: str
    observation: dict[str, Any]
    batched: bool
    seed: int | None = None
    reset: bool = False
    previous_actions: torch.Tensor | None = None
    inference_delay: int = 0
    execution: dict[str, Any] | None = None


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _array(key: str, value: object, expected: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ProtocolError(f"{key}: expected a numpy array {expected}, received {_describe(value)}")
    return value


def _finite(key: str, value: np.ndarray) -> None:
    if not np.isfinite(value).all():
        raise ProtocolError(f"{key}: expected finite values, received NaN or inf")


def _frames(
    key: str, value: object, lead: tuple[str, ...], size: int | None, batch: int | None
) -> torch.Tensor:
    """Frames ``(*lead, H, W, 3)`` uint8 or ``(*lead, 3, H, W)`` float -> ``(*lead, 3, H, W)`` tensor
    (uint8 kept, floats as float32); ``size`` fixes ``H = W`` when given, ``batch`` the first size."""
    hw = f"{size}, {size}" if size is not None else "H, W"
    dims = ", ".join((*lead, ""))
    expected = f"uint8 ({dims}{hw}, 3) or float ({dims}3, {hw}) in [0, 1]"
    array = _array(key, value, expected)
    if array.dtype == np.uint8:
        layout, image_shape = "HWC", array.shape[len(lead) :]
        ok = len(image_shape) == 3 and image_shape[2] == 3
        hw_got = image_shape[:2]
    elif array.dtype.kind == "f":
        layout, image_shape = "CHW", array.shape[len(lead) :]
        ok = len(image_shape) == 3 and image_shape[0] == 3
        hw_got = image_shape[1:]
    else:
        raise ProtocolError(f"{key}: expected {expected}, received dtype {array.dtype}")
    if array.ndim != len(lead) + 3 or not ok or (size is not None and tuple(hw_got) != (size, size)):
        raise ProtocolError(
            f"{key}: expected {expected} (a {array.dtype} image is {layout}), received shape {array.shape}"
        )
    if batch is not None and array.shape[0] != batch:
        raise ProtocolError(
            f"{key}: expected batch size {batch} (as observation.state), received shape {array.shape}"
        )
    if layout == "CHW":
        _finite(key, array)
        return torch.from_numpy(array.astype(np.float32, copy=False))
    return torch.from_numpy(array).movedim(-1, -3)


def _state(value: object) -> tuple[torch.Tensor, bool]:
    expected = "float (S,) or (B, S)"
    state = _array(STATE_KEY, value, expected)
    if state.dtype.kind != "f" or state.ndim not in (1, 2):
        raise ProtocolError(f"{STATE_KEY}: expected {expected}, received {_describe(state)}")
    _finite(STATE_KEY, state)
    batched = state.ndim == 2
    tensor = torch.from_numpy(state.astype(np.float32, copy=False))
    return (tensor if batched else tensor[None]), batched


def _strings(key: str, value: object, batch: int | None) -> str | list[str]:
    """A str, or (batched requests) a list of ``batch`` str."""
    if isinstance(value, str):
        return value
    if batch is not None and isinstance(value, list) and all(isinstance(v, str) for v in value):
        if len(value) != batch:
            raise ProtocolError(f"{key}: expected {batch} strings (the batch size), received {len(value)}")
        return value
    expected = "a str" if batch is None else f"a str or a list of {batch} str"
    raise ProtocolError(f"{key}: expected {expected}, received {value!r:.80}")


def _control(message: Mapping[str, Any]) -> tuple[str, int | None, bool]:
    mode = message.get(MODE_KEY, CHUNK)
    if mode not in MODES:
        raise ProtocolError(f"{MODE_KEY}: expected one of {list(MODES)}, received {mode!r:.80}")
    seed = message.get(SEED_KEY)
    if seed is not None:
        if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer):
            raise ProtocolError(f"{SEED_KEY}: expected an int in [0, 2**63), received {seed!r:.80}")
        seed = int(seed)
        if not 0 <= seed <= _MAX_SEED:
            raise ProtocolError(f"{SEED_KEY}: expected an int in [0, 2**63), received {seed}")
    reset = message.get(RESET_KEY, False)
    if not isinstance(reset, bool | np.bool_):
        raise ProtocolError(f"{RESET_KEY}: expected true or false, received {reset!r:.80}")
    if mode == ACTION and seed is not None and not reset:
        raise ProtocolError(
            f"{SEED_KEY}: mode 'action' draws from the episode's generator; send the seed with "
            f"{RESET_KEY}=true to start a seeded episode"
        )
    return mode, seed, bool(reset)


def _count(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer) or value < minimum:
        raise ProtocolError(f"{key}: expected an int >= {minimum}, received {value!r:.80}")
    return int(value)


def _realtime_chunking(
    message: Mapping[str, Any], mode: str, reset: bool, batch: int | None
) -> tuple[torch.Tensor | None, int, dict[str, Any] | None]:
    """The real-time chunking keys: ``previous_actions`` + ``inference_delay`` (mode ``chunk``) or, with
    ``reset``, ``execution`` + ``inference_delay`` + ``execution_horizon`` (mode ``action``)."""
    delay = _count(INFERENCE_DELAY_KEY, message.get(INFERENCE_DELAY_KEY, 0), 0)
    if mode == CHUNK:
        for key in (EXECUTION_KEY, EXECUTION_HORIZON_KEY):
            if key in message:
                raise ProtocolError(
                    f"{key}: sets how mode 'action' schedules its episode (with {RESET_KEY}=true); mode "
                    f"'chunk' takes {PREVIOUS_ACTIONS_KEY} and {INFERENCE_DELAY_KEY} instead"
                )
        if PREVIOUS_ACTIONS_KEY not in message:
            if delay:
                raise ProtocolError(
                    f"{INFERENCE_DELAY_KEY}: needs {PREVIOUS_ACTIONS_KEY} (the chunk whose first steps "
                    "execute while this one is planned)"
                )
            return None, 0, None
        lead = "B, " if batch is not None else ""
        expected = f"float ({lead}H', A)"
        previous = _array(PREVIOUS_ACTIONS_KEY, message[PREVIOUS_ACTIONS_KEY], expected)
        ndim = 3 if batch is not None else 2
        if (
            previous.dtype.kind != "f"
            or previous.ndim != ndim
            or (batch is not None and previous.shape[0] != batch)
        ):
            raise ProtocolError(
                f"{PREVIOUS_ACTIONS_KEY}: expected {expected}, received {_describe(previous)}"
            )
        _finite(PREVIOUS_ACTIONS_KEY, previous)
        tensor = torch.from_numpy(previous.astype(np.float32, copy=False))
        return (tensor if batch is not None else tensor[None]), delay, None
    if PREVIOUS_ACTIONS_KEY in message:
        raise ProtocolError(
            f"{PREVIOUS_ACTIONS_KEY}: mode 'action' keeps the episode's chunks on the server; start the "
            f"episode with {RESET_KEY}=true and {EXECUTION_KEY}='rtc' instead"
        )
    given = [k for k in (EXECUTION_KEY, INFERENCE_DELAY_KEY, EXECUTION_HORIZON_KEY) if k in message]
    if not given:
        return None, 0, None
    if not reset:
        raise ProtocolError(f"{given[0]}: sets up an episode; send it with {RESET_KEY}=true")
    execution = message.get(EXECUTION_KEY, "sync")
    if execution not in EXECUTION_MODES:
        raise ProtocolError(
            f"{EXECUTION_KEY}: expected one of {list(EXECUTION_MODES)}, received {execution!r:.80}"
        )
    horizon = message.get(EXECUTION_HORIZON_KEY)
    if horizon is not None:
        horizon = _count(EXECUTION_HORIZON_KEY, horizon, 1)
    return None, delay, {"mode": execution, "inference_delay": delay, "execution_horizon": horizon}


def _check_keys(message: Mapping[Any, Any], config: F1Config, mode: str) -> None:
    known = [*observation_keys(config, mode), *CONTROL_KEYS]
    for key in message:
        if not isinstance(key, str):
            raise ProtocolError(f"request: expected str keys, received the key {key!r:.80}")
        if key in known:
            continue
        if key in (HISTORY_KEY, HISTORY_IS_PAD_KEY):
            why = (
                f"mode {mode!r} keeps the episode's history on the server"
                if config.has_history
                else f"policy mode {config.mode!r} reads no history"
            )
            raise ProtocolError(f"{key}: not accepted here ({why}); send only the current observation")
        raise ProtocolError(f"{key}: unknown key{did_you_mean(key, known)}; expected keys among {known}")


def parse_request(message: object, config: F1Config) -> Request:
    """Check a decoded request against the policy's ``config`` and convert its arrays to tensors.

    Args:
        message: the decoded msgpack map: the observation (images uint8 ``(H, W, 3)`` or float
            ``(3, H, W)`` in [0, 1], with a leading batch dimension when ``observation.state`` is
            ``(B, S)``; ``history`` ``([B,] T, H, W, 3)`` uint8 or ``([B,] T, 3, H, W)`` float in chunk
            mode) and the control keys ``mode``, ``seed``, ``reset`` and, for real-time chunking,
            ``previous_actions`` / ``inference_delay`` (mode ``chunk``) or ``execution`` /
            ``inference_delay`` / ``execution_horizon`` (mode ``action``, with ``reset``).
        config: the served policy's configuration.

    Raises:
        ProtocolError: naming the key, the expected and the received value.
    """
    if not isinstance(message, Mapping):
        raise ProtocolError(
            f"request: expected a map of observation keys to values, received {_describe(message)}"
        )
    mode, seed, reset = _control(message)
    _check_keys(message, config, mode)
    if STATE_KEY not in message:
        raise ProtocolError(f"{STATE_KEY}: missing from the request (expected float (S,) or (B, S))")
    state, batched = _state(message[STATE_KEY])
    batch = state.shape[0] if batched else None
    lead = ("B",) if batched else ()
    observation: dict[str, Any] = {STATE_KEY: state}
    size = config.vision.image_size
    for camera in config.cameras:
        key = camera_key(camera)
        if key not in message:
            raise ProtocolError(
                f"{key}: missing from the request (expected uint8 ({size}, {size}, 3) or float "
                f"(3, {size}, {size}) in [0, 1]); keys present: {sorted(message)}"
            )
        frames = _frames(key, message[key], lead, size, batch)
        observation[key] = frames if batched else frames[None]
    if TASK_KEY not in message:
        raise ProtocolError(f"{TASK_KEY}: missing from the request (expected the instruction, a str)")
    observation[TASK_KEY] = _strings(TASK_KEY, message[TASK_KEY], batch)
    if EMBODIMENT_KEY in message:
        observation[EMBODIMENT_KEY] = _strings(EMBODIMENT_KEY, message[EMBODIMENT_KEY], batch)
    if mode == CHUNK and config.has_history:
        if HISTORY_KEY not in message:
            dims = ", ".join((*lead, "T"))
            raise ProtocolError(
                f"{HISTORY_KEY}: missing from the request (policy mode {config.mode!r} plans from the "
                f"foresight camera's past frames, oldest first, current last: uint8 ({dims}, H, W, 3) or "
                f"float ({dims}, 3, H, W))"
            )
        history = _frames(HISTORY_KEY, message[HISTORY_KEY], (*lead, "T"), None, batch)
        observation[HISTORY_KEY] = history if batched else history[None]
        if HISTORY_IS_PAD_KEY in message:
            frames = history.shape[-4]
            expected = f"bool ({', '.join((*lead, str(frames)))})"
            pad = _array(HISTORY_IS_PAD_KEY, message[HISTORY_IS_PAD_KEY], expected)
            if pad.dtype != np.bool_ or pad.shape != (*history.shape[:-4], frames):
                raise ProtocolError(f"{HISTORY_IS_PAD_KEY}: expected {expected}, received {_describe(pad)}")
            tensor = torch.from_numpy(pad)
            observation[HISTORY_IS_PAD_KEY] = tensor if batched else tensor[None]
    previous, delay, execution = _realtime_chunking(message, mode, reset, batch)
    return Request(
        mode=mode,
        observation=observation,
        batched=batched,
        seed=seed,
        reset=reset,
        previous_actions=previous,
        inference_delay=delay,
        execution=execution,
    )
