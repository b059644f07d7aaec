"""Fresh virtual environments that see only chosen distributions of the developer environment.

Installing torch into a new environment costs minutes and gigabytes, so a fresh environment instead gets a
`.pth` file pointing at a directory of symlinks: the requested distributions and the closure of their declared
requirements, nothing else. Our own wheels are then installed with `pip --no-index`, so pip must resolve their
requirements from exactly what is visible: a requirement a wheel forgot to declare, or a module it imports
without declaring, fails there as it would for a user.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def requirement_closure(names: list[str]) -> set[str]:
    """Canonical names of `names` and everything they require, following markers and requested extras."""
    seen: set[tuple[str, str]] = set()
    todo = [(canonicalize_name(n), "") for n in names]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for spec in importlib.metadata.distribution(name).requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                dep = canonicalize_name(req.name)
                todo.append((dep, ""))
                todo.extend((dep, e) for e in req.extras)
    return {name for name, _ in seen}


def _top_level_entries(name: str) -> set[str]:
    dist = importlib.metadata.distribution(name)
    entries = set()
    for file in dist.files or []:
        parts = Path(file).parts
        if parts and parts[0] != ".." and not parts[0].endswith(".pth"):
            entries.add(parts[0])
    return entries


def make_isolated_env(root: Path, visible: list[str]) -> Path:
    """Create a venv at `root` that can import `visible` and their requirements; return its python."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    # Python 3.11's venv seeds an old setuptools that would shadow the one torch requires.
    subprocess.run(
        [str(python), "-m", "pip", "--isolated", "uninstall", "--yes", "--quiet", "setuptools"], check=True
    )
    site_dir = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    shelf = root / "visible-site"
    shelf.mkdir()
    source_site = Path(importlib.metadata.distribution("torch").locate_file(""))
    for name in sorted(requirement_closure(visible)):
        for entry in _top_level_entries(name):
            target = shelf / entry
            if not target.exists() and (source_site / entry).exists():
                os.symlink(source_site / entry, target)
    (site_dir / "visible-site.pth").write_text(str(shelf) + "\n")
    return python


def pip_install_offline(python: Path, wheel_dir: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "--isolated",
            "install",
            "--no-index",
            "--find-links",
            str(wheel_dir),
            "--disable-pip-version-check",
            "--quiet",
            *names,
        ],
        capture_output=True,
        text=True,
    )
