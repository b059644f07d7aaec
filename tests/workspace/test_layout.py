"""The repository layout that lets each distribution be installed and typed on its own."""

from __future__ import annotations

import tomllib

import pytest

from .distributions import DISTRIBUTIONS, REPO_ROOT, Distribution

ARCHITECTURE_REQUIREMENTS = {
    "mot": {"torch", "einops"},
    "flowmatch": {"torch", "einops", "torchdiffeq"},
    "var-foresight": {"torch", "einops", "vector-quantize-pytorch", "mot"},
    "f1": {"mot", "flowmatch", "var-foresight", "timm", "open-clip-torch", "safetensors"},
}


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=lambda d: d.name)
def test_each_distribution_is_a_typed_pep621_project(dist: Distribution) -> None:
    meta = tomllib.loads((dist.project_dir / "pyproject.toml").read_text())
    assert meta["project"]["name"] == dist.name
    assert meta["project"]["requires-python"] == ">=3.11"
    assert (dist.package_dir / "__init__.py").is_file()
    assert (dist.package_dir / "py.typed").is_file()


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=lambda d: d.name)
def test_requirements_follow_the_architecture_table(dist: Distribution) -> None:
    declared = dist.requirement_names()
    missing = ARCHITECTURE_REQUIREMENTS[dist.name] - declared
    assert not missing, f"{dist.name} must declare {sorted(missing)}"
    for req in dist.requirements():
        pinned = any(spec.operator == "==" for spec in req.specifier)
        # Ranges, not pins; the one pin the architecture asks for is vector-quantize-pytorch (its API moves).
        assert not pinned or req.name == "vector-quantize-pytorch", f"{dist.name} pins {req}"


def test_var_foresight_pins_vector_quantize_pytorch() -> None:
    dist = next(d for d in DISTRIBUTIONS if d.name == "var-foresight")
    (vq,) = [r for r in dist.requirements() if r.name == "vector-quantize-pytorch"]
    assert str(vq.specifier) == "==1.32.0"


def test_repository_has_tests_benchmarks_and_docs_for_every_block() -> None:
    for dist in DISTRIBUTIONS:
        assert (REPO_ROOT / "tests" / dist.package).is_dir()
    assert (REPO_ROOT / "benchmarks").is_dir()
    assert (REPO_ROOT / "mkdocs.yml").is_file()
    for page in ("index.md", "mot.md", "flowmatch.md", "var_foresight.md", "f1.md"):
        assert (REPO_ROOT / "docs" / page).is_file(), page
