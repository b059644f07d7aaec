"""Every third-party module a distribution imports is among the requirements it declares.

Import contracts (import-linter, run by `make test`) forbid the wrong *edges* between our packages; this test
closes the other gap: a distribution that imports e.g. `scipy` without declaring it would install fine here
(the dev environment has everything) and break for a user who installs it alone. Imports inside a
`try: ... except ImportError` block are optional features and are allowed without a declaration.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from .distributions import DISTRIBUTIONS, Distribution

OPTIONAL_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _is_optional(handlers: list[ast.ExceptHandler]) -> bool:
    for handler in handlers:
        names = []
        if isinstance(handler.type, ast.Name):
            names = [handler.type.id]
        elif isinstance(handler.type, ast.Tuple):
            names = [e.id for e in handler.type.elts if isinstance(e, ast.Name)]
        if OPTIONAL_IMPORT_ERRORS & set(names):
            return True
    return False


class _ImportCollector(ast.NodeVisitor):
    def __init__(self) -> None:
        self.required: set[str] = set()
        self._optional_depth = 0

    def visit_Try(self, node: ast.Try) -> None:
        optional = _is_optional(node.handlers)
        self._optional_depth += optional
        for stmt in node.body:
            self.visit(stmt)
        self._optional_depth -= optional
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    def _add(self, module: str) -> None:
        if not self._optional_depth:
            self.required.add(module.split(".")[0])

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self._add(node.module)


def third_party_imports(dist: Distribution) -> dict[str, Path]:
    """Top-level module name -> first file importing it, for modules outside the stdlib and `dist` itself."""
    found: dict[str, Path] = {}
    for path in sorted(dist.package_dir.rglob("*.py")):
        collector = _ImportCollector()
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        for module in collector.required - set(sys.stdlib_module_names) - {dist.package, "__future__"}:
            found.setdefault(module, path)
    return found


def _distributions_of(module: str) -> set[str]:
    ours = {d.package: d.name for d in DISTRIBUTIONS}
    if module in ours:
        return {canonicalize_name(ours[module])}
    return {canonicalize_name(n) for n in importlib.metadata.packages_distributions().get(module, [])}


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=lambda d: d.name)
def test_every_third_party_import_is_a_declared_requirement(dist: Distribution) -> None:
    declared = dist.requirement_names()
    undeclared = {}
    for module, path in third_party_imports(dist).items():
        providers = _distributions_of(module)
        assert providers, f"{path}: imports {module!r}, which no installed distribution provides"
        if not providers & declared:
            undeclared[module] = (sorted(providers), str(path))
    assert not undeclared, f"{dist.name} imports modules it does not declare: {undeclared}"


def test_the_collector_sees_lazy_imports_and_skips_optional_ones(tmp_path: Path) -> None:
    source = (
        "import numpy as np\n"
        "def f():\n    from scipy import stats\n"
        "try:\n    import tensorboard\nexcept ImportError:\n    tensorboard = None\n"
    )
    collector = _ImportCollector()
    collector.visit(ast.parse(source))
    assert collector.required == {"numpy", "scipy"}
