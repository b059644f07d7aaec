"""``f1 serve POLICY_DIR``: load a saved policy and serve it until SIGINT/SIGTERM.

The command line's handler calls :func:`run`; a ``ValueError`` it raises is a usage error (exit 2, one
line): a missing or foreign policy directory, a bad port, size or device, a port already taken.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import torch

from f1.model import F1Policy
from f1.serve.server import PolicyServer

__all__ = ["run"]


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        expected = "a torch device such as cpu or cuda:0"
        raise ValueError(f"--device: expected {expected}, received {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: {text!r} requested but torch sees no CUDA device")
    return device


def _port(text: str) -> int:
    port = int(text) if text.strip().isdigit() else -1
    if not 0 <= port <= 65535:
        raise ValueError(f"--port: expected a port in [0, 65535] (0: any free port), received {text!r}")
    return port


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ValueError(f"--max-message-mb: expected a number > 0, received {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Serve ``args.policy`` on ``args.host``:``args.port`` (``args.max_message_mb``, ``args.device``);
    the port and size arrive as text so that every bad value gets one line, as the others do."""
    port, megabytes = _port(str(args.port)), _megabytes(str(args.max_message_mb))
    directory: Path = args.policy
    if not directory.is_dir():
        raise ValueError(f"POLICY_DIR: no such directory {directory}")
    device = _device(args.device)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    policy = F1Policy.load(directory, device=device)  # CheckpointError (a ValueError) for a foreign dir
    server = PolicyServer(policy, host=args.host, port=port, max_message_bytes=max(1, int(megabytes * 2**20)))
    listening = False

    def ready(server: PolicyServer) -> None:
        nonlocal listening
        listening = True
        config = policy.config
        print(
            f"f1 serve: {directory} (policy {config.name}, mode {config.mode}) on {server.url}; Ctrl-C stops",
            flush=True,
        )

    try:
        server.serve_forever(ready)
    except OSError as error:
        if listening:
            raise
        # a bind failure: the port is taken, or the host is not one of this machine's addresses
        reason = error.strerror or str(error)
        raise ValueError(f"--host/--port: cannot listen on {args.host}:{port} ({reason})") from None
    print("f1 serve: stopped", file=sys.stderr)
    return 0
