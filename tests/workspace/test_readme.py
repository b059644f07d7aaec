"""The README's code is kept true: its shell commands are the Makefile's, and every Python block runs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from .distributions import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_begins_with_the_two_commands() -> None:
    first_block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", README, flags=re.S)
    assert first_block is not None
    commands = [line.strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M)
    assert re.search(r"^test:", makefile, flags=re.M)


def test_readme_has_an_example_per_block() -> None:
    for package in ("mot", "flowmatch", "var_foresight", "f1"):
        assert any(re.search(rf"^(from|import) {package}\b", b, flags=re.M) for b in PYTHON_BLOCKS), package


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_readme_python_block_runs(block: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )
    assert result.returncode == 0, f"README block failed:\n{block}\n{result.stdout}\n{result.stderr}"
