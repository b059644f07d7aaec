"""The server's input boundary: every bad request is refused naming the key, the expected and the received."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from f1.errors import ProtocolError
from f1.model import preset
from f1.serve import parse_request

CONFIG = preset("tiny")
NO_GEN = preset("tiny", mode="no_gen")


def test_uint8_frames_are_hwc_and_float_frames_chw_and_both_reach_the_policy_as_chw(request_factory) -> None:
    request = request_factory(0)
    parsed = parse_request(request, CONFIG)
    image = parsed.observation["observation.images.front"]
    assert image.shape == (1, 3, 64, 64)
    assert image.dtype == torch.uint8
    assert torch.equal(image[0], torch.from_numpy(request["observation.images.front"]).permute(2, 0, 1))
    assert parsed.observation["history"].shape == (1, 2, 3, 64, 64)
    assert parsed.observation["observation.state"].shape == (1, 8)
    assert (parsed.mode, parsed.batched, parsed.seed, parsed.reset) == ("chunk", False, None, False)

    floats = dict(request, **{"observation.images.front": np.full((3, 64, 64), 0.5)})
    image = parse_request(floats, CONFIG).observation["observation.images.front"]
    assert image.dtype == torch.float32
    assert image.shape == (1, 3, 64, 64)


def test_a_batched_request_keeps_its_batch_and_control_keys_are_read(request_factory) -> None:
    parsed = parse_request(request_factory(0, batch=3, mode="chunk", seed=np.int64(7), reset=True), CONFIG)
    assert parsed.batched
    assert parsed.observation["observation.images.front"].shape == (3, 3, 64, 64)
    assert parsed.observation["history"].shape == (3, 2, 3, 64, 64)
    assert (parsed.seed, parsed.reset) == (7, True)
    action = parse_request(request_factory(0, history=False, mode="action", reset=True, seed=3), CONFIG)
    assert (action.mode, action.seed, action.reset) == ("action", 3, True)
    assert "history" not in action.observation


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.__setitem__(key, value)


NAN_STATE = np.full(8, np.nan, dtype=np.float32)
INF_IMAGE = np.full((3, 64, 64), np.inf, dtype=np.float32)

BAD = [
    (
        "unknown-key",
        _set("observation.stat", 1),
        r"observation\.stat: unknown key \(did you mean 'observation\.state'\?\)",
    ),
    ("bytes-key", _set(b"task", "x"), r"request: expected str keys, received the key b'task'"),
    (
        "missing-state",
        _drop("observation.state"),
        r"observation\.state: missing from the request \(expected float",
    ),
    (
        "missing-image",
        _drop("observation.images.front"),
        r"observation\.images\.front: missing from the request "
        r"\(expected uint8 \(64, 64, 3\) or float \(3, 64, 64\)",
    ),
    ("missing-task", _drop("task"), r"task: missing from the request"),
    ("missing-history", _drop("history"), r"history: missing from the request \(policy mode 'f1'"),
    (
        "state-list",
        _set("observation.state", [0.0] * 8),
        r"observation\.state: expected a numpy array float \(S,\) or \(B, S\), received list",
    ),
    (
        "state-int",
        _set("observation.state", np.zeros(8, np.int64)),
        r"observation\.state: expected float \(S,\) or \(B, S\), received int64 array of shape \(8,\)",
    ),
    (
        "state-3d",
        _set("observation.state", np.zeros((1, 1, 8), np.float32)),
        r"received float32 array of shape \(1, 1, 8\)",
    ),
    (
        "state-nan",
        _set("observation.state", NAN_STATE),
        r"observation\.state: expected finite values, received NaN or inf",
    ),
    (
        "image-chw-uint8",
        _set("observation.images.front", np.zeros((3, 64, 64), np.uint8)),
        r"observation\.images\.front: expected uint8 \(64, 64, 3\) or float \(3, 64, 64\) in \[0, 1\] "
        r"\(a uint8 image is HWC\), received shape \(3, 64, 64\)",
    ),
    (
        "image-size",
        _set("observation.images.front", np.zeros((32, 32, 3), np.uint8)),
        r"\(a uint8 image is HWC\), received shape \(32, 32, 3\)",
    ),
    (
        "image-int16",
        _set("observation.images.front", np.zeros((64, 64, 3), np.int16)),
        r"observation\.images\.front: expected uint8 .* received dtype int16",
    ),
    (
        "image-batched",
        _set("observation.images.front", np.zeros((1, 64, 64, 3), np.uint8)),
        r"received shape \(1, 64, 64, 3\)",
    ),
    (
        "image-inf",
        _set("observation.images.front", INF_IMAGE),
        r"observation\.images\.front: expected finite values, received NaN or inf",
    ),
    (
        "history-layout",
        _set("history", np.zeros((2, 3, 64, 64), np.uint8)),
        r"history: expected uint8 \(T, H, W, 3\) or float \(T, 3, H, W\) in \[0, 1\] "
        r"\(a uint8 image is HWC\), received shape \(2, 3, 64, 64\)",
    ),
    (
        "history-pad",
        _set("history_is_pad", np.zeros(3, bool)),
        r"history_is_pad: expected bool \(2\), received bool array of shape \(3,\)",
    ),
    ("task-int", _set("task", 3), r"task: expected a str, received 3"),
    ("task-list-unbatched", _set("task", ["a"]), r"task: expected a str, received \['a'\]"),
    ("embodiment-int", _set("embodiment", 1), r"embodiment: expected a str, received 1"),
    ("mode", _set("mode", "chunks"), r"mode: expected one of \['chunk', 'action'\], received 'chunks'"),
    ("seed-float", _set("seed", 1.5), r"seed: expected an int in \[0, 2\*\*63\), received 1\.5"),
    ("seed-bool", _set("seed", True), r"seed: expected an int in \[0, 2\*\*63\), received True"),
    ("seed-negative", _set("seed", -1), r"seed: expected an int in \[0, 2\*\*63\), received -1"),
    ("reset-int", _set("reset", 1), r"reset: expected true or false, received 1"),
]


@pytest.mark.parametrize(("mutate", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_request_names_the_key_the_expected_and_the_received(request_factory, mutate, message) -> None:
    request = request_factory(0)
    mutate(request)
    with pytest.raises(ProtocolError, match=message):
        parse_request(request, CONFIG)


def test_a_batched_request_needs_one_batch_size_and_a_list_of_that_many_tasks(request_factory) -> None:
    request = request_factory(0, batch=2)
    request["observation.images.front"] = request["observation.images.front"][:1]
    with pytest.raises(
        ProtocolError,
        match=r"observation\.images\.front: expected batch size 2 \(as observation\.state\), "
        r"received shape \(1, 64, 64, 3\)",
    ):
        parse_request(request, CONFIG)
    request = request_factory(0, batch=2, task=["a", "b", "c"])
    with pytest.raises(ProtocolError, match=r"task: expected 2 strings \(the batch size\), received 3"):
        parse_request(request, CONFIG)
    assert parse_request(request_factory(0, batch=2, task=["a", "b"]), CONFIG).observation["task"] == [
        "a",
        "b",
    ]


def test_history_is_refused_where_the_server_keeps_it_or_the_policy_reads_none(request_factory) -> None:
    with pytest.raises(
        ProtocolError,
        match=r"history: not accepted here \(mode 'action' keeps the episode's history on the server\)",
    ):
        parse_request(request_factory(0, mode="action"), CONFIG)
    with pytest.raises(
        ProtocolError, match=r"history: not accepted here \(policy mode 'no_gen' reads no history\)"
    ):
        parse_request(request_factory(0), NO_GEN)
    assert "history" not in parse_request(request_factory(0, history=False), NO_GEN).observation


def test_a_seed_in_action_mode_comes_with_reset(request_factory) -> None:
    with pytest.raises(
        ProtocolError,
        match=r"seed: mode 'action' draws from the episode's generator; send the seed with reset=true",
    ):
        parse_request(request_factory(0, history=False, mode="action", seed=3), CONFIG)


@pytest.mark.parametrize("message", [[1, 2], "text", None, np.zeros(3)], ids=["list", "str", "nil", "array"])
def test_a_request_that_is_not_a_map_is_refused(message: Any) -> None:
    with pytest.raises(
        ProtocolError, match=r"request: expected a map of observation keys to values, received"
    ):
        parse_request(message, CONFIG)


def test_real_time_chunking_keys_reach_the_request(request_factory) -> None:
    previous = np.zeros((6, 7), np.float32)
    chunk = parse_request(request_factory(0, previous_actions=previous, inference_delay=np.int64(2)), CONFIG)
    assert chunk.previous_actions is not None
    assert chunk.previous_actions.shape == (1, 6, 7)
    assert chunk.inference_delay == 2
    batched = parse_request(request_factory(0, batch=2, previous_actions=np.zeros((2, 6, 7))), CONFIG)
    assert batched.previous_actions is not None
    assert batched.previous_actions.dtype == torch.float32
    assert batched.previous_actions.shape == (2, 6, 7)
    episode = parse_request(
        request_factory(0, history=False, mode="action", reset=True, execution="rtc", inference_delay=1),
        CONFIG,
    )
    assert episode.execution == {"mode": "rtc", "inference_delay": 1, "execution_horizon": None}
    assert parse_request(request_factory(0), CONFIG).previous_actions is None


RTC_BAD = [
    (
        "previous-int",
        {"previous_actions": np.zeros((6, 7), np.int64)},
        r"previous_actions: expected float \(H', A\), received int64 array of shape \(6, 7\)",
    ),
    (
        "previous-1d",
        {"previous_actions": np.zeros(7, np.float32)},
        r"previous_actions: expected float \(H', A\), received float32 array of shape \(7,\)",
    ),
    (
        "previous-nan",
        {"previous_actions": np.full((6, 7), np.nan, np.float32)},
        r"previous_actions: expected finite values, received NaN or inf",
    ),
    (
        "previous-list",
        {"previous_actions": [[0.0] * 7]},
        r"previous_actions: expected a numpy array float \(H', A\), received list",
    ),
    ("delay-alone", {"inference_delay": 2}, r"inference_delay: needs previous_actions"),
    (
        "delay-negative",
        {"previous_actions": np.zeros((6, 7), np.float32), "inference_delay": -1},
        r"inference_delay: expected an int >= 0, received -1",
    ),
    ("delay-float", {"inference_delay": 1.0}, r"inference_delay: expected an int >= 0, received 1\.0"),
    ("execution-in-chunk", {"execution": "rtc"}, r"execution: sets how mode 'action' schedules its episode"),
    (
        "previous-in-action",
        {"mode": "action", "previous_actions": np.zeros((6, 7), np.float32)},
        r"previous_actions: mode 'action' keeps the episode's chunks on the server",
    ),
    (
        "execution-without-reset",
        {"mode": "action", "execution": "rtc"},
        r"execution: sets up an episode; send it with reset=true",
    ),
    (
        "execution-unknown",
        {"mode": "action", "reset": True, "execution": "later"},
        r"execution: expected one of \['sync', 'async', 'rtc'\], received 'later'",
    ),
    (
        "horizon-zero",
        {"mode": "action", "reset": True, "execution": "rtc", "execution_horizon": 0},
        r"execution_horizon: expected an int >= 1, received 0",
    ),
]


@pytest.mark.parametrize(("extra", "message"), [b[1:] for b in RTC_BAD], ids=[b[0] for b in RTC_BAD])
def test_a_bad_real_time_chunking_key_names_the_key_the_expected_and_the_received(
    request_factory, extra: dict[str, Any], message: str
) -> None:
    request = request_factory(0, history=extra.get("mode") != "action") | extra
    with pytest.raises(ProtocolError, match=message):
        parse_request(request, CONFIG)
