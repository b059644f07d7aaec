"""A child process killed in the middle of a checkpoint save: SIGKILL, so no cleanup handler runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


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
