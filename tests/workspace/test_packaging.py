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
import importlib.util
import torch
for absent in ("var_foresight", "f1", "timm", "open_clip"):
    assert importlib.util.find_spec(absent) is None, f"{absent} leaked into the isolated environment"
from mot import AttentionSpec, Blockwise, ExpertConfig, MixtureOfTransformers, MoTConfig, Segment
from flowmatch import ActionDecoder, ActionEncoder, flow_matching_loss, gaussian_noise, interpolate, sample

torch.manual_seed(0)
B, P, H, D = 2, 6, 4, 3
spec = AttentionSpec(
    segments=[Segment("ctx", "ctx", P), Segment("act", "act", H, Blockwise((H,)))], sees={"act": ["ctx"]}
)
trunk = MixtureOfTransformers(MoTConfig(n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8,
    experts={"ctx": ExpertConfig(32, 64), "act": ExpertConfig(16, 32)}))
encoder, decoder = ActionEncoder(D, 16), ActionDecoder(16, D)
context, actions = torch.randn(B, P, 32), torch.randn(B, H, D)

tau = torch.rand(B)
noise = torch.randn(B, H, D)
out = trunk({"ctx": context, "act": encoder(interpolate(noise, actions, tau), tau)}, spec)
loss = flow_matching_loss(decoder(out["act"]), actions - noise)
loss.backward()
assert torch.isfinite(loss) and encoder.parameters().__next__().grad is not None

with torch.no_grad():
    cache = trunk.prefill({"ctx": context}, spec)
    field = lambda x, t: decoder(trunk.extend({"act": encoder(x, t)}, spec, cache)["act"])
    result = sample(field, gaussian_noise((B, H, D), generator=torch.Generator().manual_seed(1)), steps=10)
assert result.x.shape == (B, H, D) and result.nfe == 10
print("composed a two-expert MoT with a flow-matching head; nfe =", result.nfe)
"""


def test_mot_and_flowmatch_install_and_compose_alone(wheel_dir: Path, tmp_path: Path) -> None:
    python = make_isolated_env(tmp_path / "venv", visible=["torch", "einops", "torchdiffeq"])
    installed = pip_install_offline(python, wheel_dir, "mot", "flowmatch")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    result = run_in(python, COMPOSE_TWO_EXPERTS_WITH_FLOW_HEAD)
    assert result.returncode == 0, result.stdout + result.stderr


def test_var_foresight_installs_with_mot_only(wheel_dir: Path, tmp_path: Path) -> None:
    python = make_isolated_env(
        tmp_path / "venv", visible=["torch", "einops", "vector-quantize-pytorch", "safetensors"]
    )
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
