"""The policy server, spoken to by the real openpi-client (and by a raw websocket for frames it cannot send).

Every reply is checked against the in-process answer for the same seed; every bad input gets one error line,
one log line, and the same server answers the next good request.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync.client import ClientConnection, connect

from f1.model import F1Policy, preset
from f1.serve import PROTOCOL_VERSION, PolicyServer, Session

RECV_TIMEOUT_S = 60.0

# openpi-client 0.1.2 calls websockets' connect() outside a context manager
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager")


def _batched(observation: dict[str, Any]) -> dict[str, Any]:
    return {k: v[None] if isinstance(v, torch.Tensor) else v for k, v in observation.items()}


def _plan(policy: F1Policy, observation: dict[str, Any], seed: int, batched: bool = False) -> np.ndarray:
    """The in-process chunk for ``observation`` and ``seed``."""
    actions = policy.plan(observation if batched else _batched(observation), seed=seed).actions.numpy()
    return actions if batched else actions[0]


@contextmanager
def raw_connection(server: PolicyServer) -> Iterator[ClientConnection]:
    """A plain websocket client, past the metadata frame."""
    with connect(server.url, compression=None, max_size=None, open_timeout=10, close_timeout=5) as ws:
        metadata = msgpack_numpy.unpackb(ws.recv(timeout=RECV_TIMEOUT_S))
        assert metadata["protocol_version"] == PROTOCOL_VERSION
        yield ws


def _served(ws: ClientConnection, request: dict[str, Any]) -> dict[str, Any]:
    ws.send(msgpack_numpy.packb(request))
    reply = ws.recv(timeout=RECV_TIMEOUT_S)
    assert isinstance(reply, bytes), f"expected a reply, received the error {reply!r}"
    return msgpack_numpy.unpackb(reply)


def test_the_metadata_on_connect_describes_the_policy_and_the_limits(server, tiny_policy) -> None:
    metadata = WebsocketClientPolicy("127.0.0.1", server.port).get_server_metadata()
    config = tiny_policy.config
    assert metadata["protocol"] == "f1-serve"
    assert metadata["protocol_version"] == PROTOCOL_VERSION
    assert (metadata["policy"], metadata["mode"]) == ("tiny", "f1")
    assert metadata["request_modes"] == ["chunk", "action"]
    assert metadata["cameras"] == ["front"]
    assert metadata["image_keys"] == ["observation.images.front"]
    assert metadata["image_size"] == [64, 64]
    assert metadata["embodiments"] == {"sim_arm": {"state_dim": 8, "action_dim": 7, "control_hz": 10.0}}
    assert metadata["default_embodiment"] == "sim_arm"
    assert (metadata["chunk_size"], metadata["n_action_steps"]) == (8, 4)
    assert metadata["chunk_requires_history"] is True
    assert metadata["history_frames"] == config.generation.history_frames
    assert metadata["history_offsets"] == list(config.history_offsets)
    assert metadata["max_message_bytes"] == server.max_message_bytes


def test_a_chunk_equals_the_in_process_plan_for_the_same_seed(
    server, tiny_policy, observation_factory, as_request
) -> None:
    client = WebsocketClientPolicy("127.0.0.1", server.port)
    observation = observation_factory(1)
    reply = client.infer(as_request(observation, seed=11))
    assert reply["actions"].dtype == np.float32
    assert reply["actions"].shape == (8, 7)
    np.testing.assert_array_equal(reply["actions"], _plan(tiny_policy, observation, 11))
    assert (reply["embodiment"], reply["mode"]) == ("sim_arm", "chunk")
    assert set(reply["server_timing"]) == {"decode_ms", "queue_ms", "infer_ms", "handoff_ms"}
    assert all(v >= 0 for v in reply["server_timing"].values())
    again = client.infer(as_request(observation, seed=11))
    np.testing.assert_array_equal(again["actions"], reply["actions"])
    assert again["server_timing"]["prev_total_ms"] >= reply["server_timing"]["infer_ms"]
    other = client.infer(as_request(observation, seed=12))
    assert not np.array_equal(other["actions"], reply["actions"])


def test_a_batched_chunk_and_float_chw_frames_equal_the_in_process_plan(
    server, tiny_policy, observation_factory, as_request
) -> None:
    client = WebsocketClientPolicy("127.0.0.1", server.port)
    observation = observation_factory(2, batch=3)
    reply = client.infer(as_request(observation, seed=5))
    assert reply["actions"].shape == (3, 8, 7)
    # Within float rounding, not bit for bit: the server decodes the frames into its own tensor layout,
    # and on some CPUs (an AMD EPYC host, 2026-12-02) oneDNN's kernels then round the batch of 3
    # differently, by up to 5e-7 (a single request's chunk still matches exactly, tested above).
    np.testing.assert_allclose(
        reply["actions"], _plan(tiny_policy, observation, 5, batched=True), rtol=0, atol=1e-5
    )

    floats = {  # the in-process layout: float (3, H, W) in [0, 1]
        k: v.float() / 255 if isinstance(v, torch.Tensor) and v.dtype == torch.uint8 else v
        for k, v in observation_factory(3).items()
    }
    request = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in floats.items()}
    reply = client.infer(request | {"seed": 4})
    np.testing.assert_array_equal(reply["actions"], _plan(tiny_policy, floats, 4))


def test_without_a_seed_each_connection_draws_its_own_reproducible_stream(
    server, observation_factory, as_request
) -> None:
    request = as_request(observation_factory(1))
    first, second = (WebsocketClientPolicy("127.0.0.1", server.port) for _ in range(2))
    a1, a2 = first.infer(request)["actions"], first.infer(request)["actions"]
    b1 = second.infer(request)["actions"]
    assert not np.array_equal(a1, a2)  # the stream moves on within a connection
    np.testing.assert_array_equal(a1, b1)  # and starts alike (seeded 0) on every connection
    reset = first.infer(request | {"reset": True})["actions"]
    np.testing.assert_array_equal(reset, a1)


def test_eight_concurrent_clients_each_get_the_in_process_answer_for_their_seed(
    server, tiny_policy, observation_factory, as_request
) -> None:
    clients, rounds = 8, 2
    start = threading.Barrier(clients, timeout=60)

    def client_run(index: int) -> list[np.ndarray]:
        client = WebsocketClientPolicy("127.0.0.1", server.port)
        start.wait()
        return [
            client.infer(as_request(observation_factory(index), seed=100 * index + r))["actions"]
            for r in range(rounds)
        ]

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client_run, i) for i in range(clients)]
        replies = [f.result(timeout=120) for f in futures]
    for index, answers in enumerate(replies):
        for r, actions in enumerate(answers):
            expected = _plan(tiny_policy, observation_factory(index), 100 * index + r)
            np.testing.assert_array_equal(actions, expected, err_msg=f"client {index}, request {r}")


def test_action_mode_replays_select_action_after_reset_on_each_connection_alone(
    server, tiny_policy, observation_factory, as_request
) -> None:
    steps, seeds = 6, (5, 9)
    clients = [WebsocketClientPolicy("127.0.0.1", server.port) for _ in seeds]
    served: list[list[dict[str, Any]]] = [[], []]
    for step in range(steps):  # two episodes interleaved on two connections
        for i, (client, seed) in enumerate(zip(clients, seeds)):
            request = as_request(observation_factory(10 * i + step, history=False), mode="action")
            if step == 0:
                request |= {"reset": True, "seed": seed}
            served[i].append(client.infer(request))
    for i, seed in enumerate(seeds):
        policy = F1Policy(tiny_policy.model)
        policy.reset(seed)
        for step, reply in enumerate(served[i]):
            expected = policy.select_action(observation_factory(10 * i + step, history=False))
            assert reply["actions"].shape == (7,)
            np.testing.assert_array_equal(
                reply["actions"], expected.numpy(), err_msg=f"episode {i} step {step}"
            )
            assert reply["replanned"] is (step % tiny_policy.config.action.n_action_steps == 0)
            assert reply["mode"] == "action"


def test_a_reset_restarts_the_episode_and_a_failed_reset_keeps_the_running_one(
    server, observation_factory, as_request
) -> None:
    client = WebsocketClientPolicy("127.0.0.1", server.port)

    def act(step: int, **control: Any) -> np.ndarray:
        request = as_request(observation_factory(step, history=False), mode="action", **control)
        return client.infer(request)["actions"]

    first = [act(0, reset=True, seed=3), act(1)]
    bad = as_request(observation_factory(2, history=False), mode="action", reset=True, seed=4)
    bad["observation.state"] = np.zeros(9, np.float32)
    with pytest.raises(RuntimeError, match=r"observation\.state: expected last dimension 8"):
        client.infer(bad)
    continued = act(2)  # the episode of seed 3 goes on
    restarted = [act(0, reset=True, seed=3), act(1), act(2)]
    np.testing.assert_array_equal(np.stack([*first, continued]), np.stack(restarted))


def _bad_requests(request: dict[str, Any]) -> list[tuple[str, Any, str]]:
    def changed(**changes: Any) -> dict[str, Any]:
        return {k: v for k, v in request.items() if k not in changes} | {
            k: v for k, v in changes.items() if v is not None
        }

    nan_state = np.full(8, np.nan, dtype=np.float32)
    crafted_object = msgpack_numpy.msgpack.packb(
        {"x": {b"__ndarray__": True, b"data": b"\x80\x02N.", b"dtype": "|O", b"shape": [1]}}
    )
    return [
        ("text-frame", "hello", r"frame: expected a binary msgpack-numpy frame, received a text frame"),
        ("not-msgpack", b"\xc1\xc1", r"frame: expected one msgpack-numpy message, received 2 bytes"),
        ("not-a-map", msgpack_numpy.packb([1, 2, 3]), r"request: expected a map of observation keys"),
        ("object-dtype", crafted_object, r"ndarray dtype: expected a dtype of kind .* received '\|O'"),
        ("unknown-key", changed(prompt="pick"), r"prompt: unknown key; expected keys among"),
        ("missing-key", changed(task=None), r"task: missing from the request"),
        (
            "wrong-shape",
            changed(**{"observation.images.front": np.zeros((3, 64, 64), np.uint8)}),
            r"observation\.images\.front: expected uint8 \(64, 64, 3\) .* received shape \(3, 64, 64\)",
        ),
        (
            "wrong-dtype",
            changed(**{"observation.state": np.zeros(8, np.int32)}),
            r"observation\.state: expected float \(S,\) or \(B, S\), received int32 array",
        ),
        ("nan", changed(**{"observation.state": nan_state}), r"observation\.state: expected finite values"),
        (
            "state-width",
            changed(**{"observation.state": np.zeros(9, np.float32)}),
            r"observation\.state: expected last dimension 8 .* received shape \(1, 9\)",
        ),
        ("unknown-embodiment", changed(embodiment="so100"), r"unknown embodiment 'so100'; registered"),
        (
            "image-range",
            changed(**{"observation.images.front": np.full((3, 64, 64), 2.0, np.float32)}),
            r"observation\.images\.front: expected float images in \[0, 1\], received values in \[2, 2\]",
        ),
    ]


@pytest.mark.parametrize("case", range(12), ids=[c[0] for c in _bad_requests({})])
def test_a_bad_request_gets_one_error_line_one_log_line_and_the_connection_keeps_serving(
    server, tiny_policy, observation_factory, as_request, caplog, case: int
) -> None:
    observation = observation_factory(4)
    request = as_request(observation, seed=2)
    _, bad, message = _bad_requests(request)[case]
    frame = msgpack_numpy.packb(bad) if isinstance(bad, dict) else bad
    with caplog.at_level(logging.WARNING, logger="f1.serve"), raw_connection(server) as ws:
        ws.send(frame)
        reply = ws.recv(timeout=RECV_TIMEOUT_S)
        assert isinstance(reply, str)
        assert "\n" not in reply
        assert re.search(message, reply), reply
        lines = [r.getMessage() for r in caplog.records if r.name == "f1.serve"]
        assert len(lines) == 1
        assert reply in lines[0]
        served = _served(ws, request)  # the same connection answers the next good request
    np.testing.assert_array_equal(served["actions"], _plan(tiny_policy, observation, 2))


def test_an_oversized_message_closes_only_its_connection_and_the_server_serves_on(
    server, tiny_policy, observation_factory, as_request, caplog
) -> None:
    observation = observation_factory(5)
    request = as_request(observation, seed=1)
    bystander = WebsocketClientPolicy("127.0.0.1", server.port)
    with caplog.at_level(logging.WARNING, logger="f1.serve"), raw_connection(server) as ws:
        ws.send(b"\x00" * (server.max_message_bytes + 1))
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=RECV_TIMEOUT_S)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert f"exceeds limit of {server.max_message_bytes} bytes" in closed.value.rcvd.reason
    expected = _plan(tiny_policy, observation, 1)
    np.testing.assert_array_equal(bystander.infer(request)["actions"], expected)
    np.testing.assert_array_equal(
        WebsocketClientPolicy("127.0.0.1", server.port).infer(request)["actions"], expected
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "f1.serve"]
    assert len(lines) == 1
    assert f"refused a message over max_message_bytes={server.max_message_bytes}" in lines[0]


def test_a_client_that_leaves_mid_request_costs_one_log_line_and_nothing_else(
    server, tiny_policy, observation_factory, as_request, caplog
) -> None:
    observation = observation_factory(6)
    with caplog.at_level(logging.INFO, logger="f1.serve"):
        with raw_connection(server) as ws:
            ws.send(msgpack_numpy.packb(as_request(observation, seed=3)))
        deadline = time.monotonic() + RECV_TIMEOUT_S
        while time.monotonic() < deadline and not any(
            "before its reply" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == "f1.serve"]
    assert len(lines) == 1
    assert "disconnected before its reply" in lines[0]
    reply = WebsocketClientPolicy("127.0.0.1", server.port).infer(as_request(observation, seed=3))
    np.testing.assert_array_equal(reply["actions"], _plan(tiny_policy, observation, 3))


def test_errors_and_metadata_are_answered_while_the_model_is_busy(
    tiny_policy, observation_factory, as_request, monkeypatch
) -> None:
    running, release = threading.Event(), threading.Event()
    answer = Session.answer

    def held(self: Session, request: Any) -> dict[str, Any]:
        running.set()
        assert release.wait(RECV_TIMEOUT_S)
        return answer(self, request)

    monkeypatch.setattr(Session, "answer", held)
    observation = observation_factory(7)
    with PolicyServer(tiny_policy, port=0) as busy, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            WebsocketClientPolicy("127.0.0.1", busy.port).infer, as_request(observation, seed=8)
        )
        assert running.wait(RECV_TIMEOUT_S)
        with raw_connection(busy) as ws:  # the metadata arrived while the model is held
            ws.send(msgpack_numpy.packb({"observation.state": 0}))
            assert "observation.state: expected a numpy array" in ws.recv(timeout=RECV_TIMEOUT_S)
        assert not slow.done()
        release.set()
        np.testing.assert_array_equal(
            slow.result(timeout=RECV_TIMEOUT_S)["actions"], _plan(tiny_policy, observation, 8)
        )


def test_healthz_answers_plain_http(server) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as response:
        assert response.status == 200
        assert response.read() == b"OK\n"


def test_stop_closes_the_connections_even_mid_request_and_releases_the_port(
    tiny_policy, request_factory, caplog
) -> None:
    server = PolicyServer(tiny_policy, port=0).start()
    port = server.port
    with caplog.at_level(logging.INFO, logger="f1.serve"), raw_connection(server) as ws:
        ws.send(msgpack_numpy.packb(request_factory(0, seed=1)))  # in flight, or about to be
        server.stop()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=RECV_TIMEOUT_S)
    assert not [r.getMessage() for r in caplog.records if r.name == "f1.serve"]  # a shutdown is no error
    with pytest.raises(RuntimeError, match="not listening"):
        server.port
    with PolicyServer(tiny_policy, port=port) as again:  # the same port is free again
        assert again.port == port


def test_a_port_in_use_fails_start_with_the_os_error(server, tiny_policy) -> None:
    with pytest.raises(OSError):
        PolicyServer(tiny_policy, port=server.port).start()


def test_a_policy_without_history_plans_from_the_current_frame_alone(observation_factory, as_request) -> None:
    torch.manual_seed(0)
    policy = F1Policy(preset("tiny", mode="no_gen")).eval()
    observation = observation_factory(8, history=False)
    with PolicyServer(policy, port=0) as no_gen:
        client = WebsocketClientPolicy("127.0.0.1", no_gen.port)
        metadata = client.get_server_metadata()
        assert (metadata["mode"], metadata["chunk_requires_history"]) == ("no_gen", False)
        assert "history_frames" not in metadata
        reply = client.infer(as_request(observation, seed=6))
    np.testing.assert_array_equal(reply["actions"], _plan(policy, observation, 6))


def test_a_chunk_with_previous_actions_equals_the_in_process_real_time_chunked_plan(
    server, tiny_policy, observation_factory, as_request
) -> None:
    client = WebsocketClientPolicy("127.0.0.1", server.port)
    observation = observation_factory(3)
    previous = _plan(tiny_policy, observation_factory(2), 1)[4:]  # what is left of the chunk before
    reply = client.infer(as_request(observation, seed=7, previous_actions=previous, inference_delay=2))
    expected = tiny_policy.plan(
        _batched(observation), seed=7, previous_chunk=torch.from_numpy(previous), inference_delay=2
    ).actions[0]
    np.testing.assert_array_equal(reply["actions"], expected.numpy())
    assert not np.array_equal(reply["actions"], _plan(tiny_policy, observation, 7))
    with raw_connection(server) as ws:
        ws.send(msgpack_numpy.packb(as_request(observation, previous_actions=previous[:, :3])))
        error = ws.recv(timeout=RECV_TIMEOUT_S)
        assert isinstance(error, str)
        assert "previous_chunk" in error
        assert _served(ws, as_request(observation, seed=7))["actions"].shape == (8, 7)


def test_an_episode_reset_with_rtc_execution_replays_the_in_process_rtc_select_action(
    server, tiny_policy, observation_factory, as_request
) -> None:
    client = WebsocketClientPolicy("127.0.0.1", server.port)
    settings = {"execution": "rtc", "inference_delay": 1, "execution_horizon": 3}
    served = []
    for step in range(7):
        request = as_request(observation_factory(40 + step, history=False), mode="action")
        if step == 0:
            request |= {"reset": True, "seed": 4, **settings}
        served.append(client.infer(request))
    policy = F1Policy(tiny_policy.model)
    policy.set_execution("rtc", inference_delay=1, execution_horizon=3)
    policy.reset(4)
    for step, reply in enumerate(served):
        expected = policy.select_action(observation_factory(40 + step, history=False))
        np.testing.assert_array_equal(reply["actions"], expected.numpy(), err_msg=f"step {step}")
    bad = as_request(observation_factory(0, history=False), mode="action", reset=True, execution="rtc")
    bad["inference_delay"] = 7
    with pytest.raises(RuntimeError, match="inference_delay: expected at most"):
        client.infer(bad)
