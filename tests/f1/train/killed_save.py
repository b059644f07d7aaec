"""A child process killed in the middle of a checkpoint save: SIGKILL, so no cleanup handler runs.

The child calls :func:`hang_after_torch_write` before the save to be killed, and the test
:func:`kill_mid_save` on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


def hang_after_torch_write(marker: Path, seconds: float = 120.0) -> None:
    """In the child: make the checkpoint writer's next ``torch.save`` write its file, create ``marker`` and
    hang (the middle of a save, where :func:`kill_mid_save` kills the process)."""
    from f1.train import checkpoint

    real_write = checkpoint._write_torch

    def write_then_hang(path: Path, obj: object) -> None:
        real_write(path, obj)
        Path(marker).touch()
        time.sleep(seconds)

    checkpoint._write_torch = write_then_hang


def kill_mid_save(
    script: str, marker: Path, *, timeout_s: float, env: Mapping[str, str] | None = None
) -> None:
    """Run ``script`` in a fresh interpreter until it creates ``marker`` (the middle of its save), then
    SIGKILL it; fails the test if it exits before, or does not get there within ``timeout_s``."""
    child = subprocess.Popen([sys.executable, "-c", script], env=None if env is None else dict(env))
    try:
        deadline = time.monotonic() + timeout_s
        while not marker.exists():
            assert child.poll() is None, "the child exited before reaching the middle of its save"
            assert time.monotonic() < deadline, "the child never reached the middle of its save"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # no cleanup handler runs
    finally:
        child.wait(timeout=30)
