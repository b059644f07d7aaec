"""Facts about the four distributions that the workspace tests share."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Distribution:
    """One installable distribution of the repository."""

    name: str  # distribution name as published, e.g. "var-foresight"
    package: str  # import name, e.g. "var_foresight"

    @property
    def project_dir(self) -> Path:
        return REPO_ROOT / "src" / self.package

    @property
    def package_dir(self) -> Path:
        return self.project_dir / self.package

    def requirements(self) -> list[Requirement]:
        meta = tomllib.loads((self.project_dir / "pyproject.toml").read_text())
        return [Requirement(r) for r in meta["project"]["dependencies"]]

    def requirement_names(self) -> set[str]:
        return {canonicalize_name(r.name) for r in self.requirements()}


DISTRIBUTIONS = (
    Distribution("mot", "mot"),
    Distribution("flowmatch", "flowmatch"),
    Distribution("var-foresight", "var_foresight"),
    Distribution("f1", "f1"),
)
OUR_NAMES = {canonicalize_name(d.name) for d in DISTRIBUTIONS}
BY_PACKAGE = {d.package: d for d in DISTRIBUTIONS}
