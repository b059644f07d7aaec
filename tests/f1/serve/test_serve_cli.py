"""`f1 serve`: a saved policy served by the command in a subprocess; bad arguments exit 2 with one line."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from f1.cli import main
from f1.model import F1Policy

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager")


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory, tiny_policy: F1Policy) -> Path:
    directory = tmp_path_factory.mktemp("served") / "policy"
    tiny_policy.save(directory)
    return directory


def test_the_command_serves_a_saved_policy_until_sigterm(policy_dir, tiny_policy, request_factory) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "f1.cli", "serve", str(policy_dir), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)  # the command ended

    threading.Thread(target=read, daemon=True).start()
    try:
        line = lines.get(timeout=120)
        found = re.search(r"on ws://127\.0\.0\.1:(\d+); Ctrl-C stops", line or "")
        assert found, f"{line!r}; stderr: {process.stderr.read() if line is None else ''}"
        reply = WebsocketClientPolicy("127.0.0.1", int(found.group(1))).infer(request_factory(0, seed=7))
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "f1 serve: stopped" in stderr
    observation = {
        k: torch.from_numpy(v).movedim(-1, -3)[None] if k.startswith(("observation.images", "history")) else v
        for k, v in request_factory(0).items()
    }
    observation["observation.state"] = torch.from_numpy(observation["observation.state"])[None]
    expected = F1Policy.load(policy_dir).plan(observation, seed=7).actions[0].numpy()
    # another process may pick other CPU kernels: equal to float32 rounding, not bit for bit
    np.testing.assert_allclose(reply["actions"], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{missing}"], r"POLICY_DIR: no such directory .*missing"),
        (["{empty}"], r"model\.safetensors' is missing"),
        (["{policy}", "--port", "70000"], r"--port: expected a port in \[0, 65535\] .* received '70000'"),
        (["{policy}", "--port", "http"], r"--port: expected a port .* received 'http'"),
        (["{policy}", "--max-message-mb", "-1"], r"--max-message-mb: expected a number > 0, received '-1'"),
        (["{policy}", "--device", "gpu9"], r"--device: expected a torch device .* received 'gpu9'"),
    ],
    ids=["missing-dir", "not-a-policy", "port-range", "port-text", "size", "device"],
)
def test_bad_arguments_exit_2_with_one_line(policy_dir, tmp_path, capsys, arguments, message) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "policy": policy_dir}
    assert main(["serve", *(a.format(**paths) for a in arguments)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("f1 serve: error: ")
    assert re.search(message, err), err


def test_a_port_in_use_exits_2_with_one_line(policy_dir, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(policy_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(
        rf"f1 serve: error: --host/--port: cannot listen on 127\.0\.0\.1:{port} \(.+\)\n", err
    ), err


def test_without_the_serve_extra_the_command_says_what_to_install(policy_dir, capsys, monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "f1.serve" or m.startswith("f1.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "msgpack", None)  # import msgpack now raises ImportError
    assert main(["serve", str(policy_dir)]) == 2
    err = capsys.readouterr().err
    assert err == "f1 serve: error: f1.serve needs msgpack and websockets: pip install 'f1[serve]'\n"
