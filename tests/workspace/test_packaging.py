"""Each wheel builds, and `mot` + `flowmatch` work installed alone, beside torch and nothing else of ours."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .distributions import DISTRIBUTIONS
from .isolated_env import make_isolated_env, pip_install_offline

pytestmark = [pytest.mark.packaging, pytest.mark.slow]


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    for dist in DISTRIBUTIONS:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                str(out),
                str(dist.project_dir),
            ],
            check=True,
        )
    return out


def test_every_distribution_builds_a_typed_wheel(wheel_dir: Path) -> None:
    import zipfile

    wheels = sorted(wheel_dir.glob("*.whl"))
    assert len(wheels) == len(DISTRIBUTIONS), [w.name for w in wheels]
    for dist in DISTRIBUTIONS:
        (wheel,) = wheel_dir.glob(f"{dist.package}-*.whl")
        names = zipfile.ZipFile(wheel).namelist()
        assert f"{dist.package}/py.typed" in names
        assert f"{dist.package}/__init__.py" in names
        assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]


def run_in(python: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-c", textwrap.dedent(script)], capture_output=True, text=True)


COMPOSE_TWO_EXPERTS_WITH_FLOW_HEAD = """
import importlib.util, torch
for absent in ("var_foresight", "f1", "timm", "open_clip"):
    assert importlib.util.find_spec(absent) is None, f"{absent} leaked into the isolated environment"
import mot, flowmatch
print("imported", mot.__name__, flowmatch.__name__)
"""


def test_mot_and_flowmatch_install_and_compose_alone(wheel_dir: Path, tmp_path: Path) -> None:
    python = make_isolated_env(tmp_path / "venv", visible=["torch", "einops", "torchdiffeq"])
    installed = pip_install_offline(python, wheel_dir, "mot", "flowmatch")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    result = run_in(python, COMPOSE_TWO_EXPERTS_WITH_FLOW_HEAD)
    assert result.returncode == 0, result.stdout + result.stderr


def test_var_foresight_installs_with_mot_only(wheel_dir: Path, tmp_path: Path) -> None:
    python = make_isolated_env(tmp_path / "venv", visible=["torch", "einops", "vector-quantize-pytorch"])
    installed = pip_install_offline(python, wheel_dir, "var-foresight")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    result = run_in(
        python,
        """
        import importlib.util
        import var_foresight, mot
        assert importlib.util.find_spec("flowmatch") is None and importlib.util.find_spec("f1") is None
        """,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wheel_with_an_undeclared_requirement_fails_to_install(wheel_dir: Path, tmp_path: Path) -> None:
    # The isolation is real: flowmatch needs torchdiffeq, which this environment does not see.
    python = make_isolated_env(tmp_path / "venv", visible=["torch", "einops"])
    installed = pip_install_offline(python, wheel_dir, "flowmatch")
    assert installed.returncode != 0
    assert "torchdiffeq" in installed.stdout + installed.stderr
