"""The factories a run file may name: built-in ones, and those that installed packages declare.

A run file is data: ``model.factory`` and ``data.factory`` are *names* looked up here, never import paths
(``"subprocess:run"`` in a file from anywhere would otherwise run code). A package adds factories by
declaring entry points, the way plugins are declared everywhere in Python::

    # pyproject.toml of the package that provides them
    [project.entry-points."f1.models"]
    my_policy = "my_package.factories:build_policy"     # factory(config: dict) -> nn.Module
    [project.entry-points."f1.datasets"]
    my_data = "my_package.factories:build_dataset"      # factory(config: dict[, policy=...]) -> Dataset

Only installed distributions declare entry points, so a name resolves to code that the user installed.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Literal

from f1.checks import did_you_mean
from f1.errors import ConfigError
from f1.train.factories import build_f1_model, build_training_data

__all__ = ["BUILT_IN_FACTORIES", "ENTRY_POINT_GROUPS", "available_factories", "resolve_factory"]

FactoryKind = Literal["model", "data"]

#: The entry-point group each kind of factory is declared in.
ENTRY_POINT_GROUPS: dict[str, str] = {"model": "f1.models", "data": "f1.datasets"}

#: The factories ``f1`` ships: the F1 model from a preset or config file, LeRobot training windows.
BUILT_IN_FACTORIES: dict[str, dict[str, Callable[..., Any]]] = {
    "model": {"f1": build_f1_model},
    "data": {"lerobot": build_training_data},
}


def available_factories(kind: FactoryKind) -> list[str]:
    """The names a run file may give as ``<kind>.factory``: built-in first, then installed ones."""
    installed = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUPS[kind])})
    return [*BUILT_IN_FACTORIES[kind], *(name for name in installed if name not in BUILT_IN_FACTORIES[kind])]


def resolve_factory(name: object, kind: FactoryKind) -> Callable[..., Any]:
    """The factory registered as ``name`` for ``kind`` (``"model"`` or ``"data"``).

    Raises:
        ConfigError: ``name`` is not a registered name (an import path such as ``"package.module:function"``
            is refused as such), naming the registered ones.
    """
    where = f"{kind}.factory"
    known = available_factories(kind)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: expected the name of a registered factory {known}, received {name!r}")
    if ":" in name:
        raise ConfigError(
            f"{where}: {name!r} is an import path; a run file names a registered factory, one of {known} "
            f"(a package registers one with an entry point in the group {ENTRY_POINT_GROUPS[kind]!r})"
        )
    if name in BUILT_IN_FACTORIES[kind]:
        return BUILT_IN_FACTORIES[kind][name]
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUPS[kind]) if ep.name == name]
    if not matches:
        raise ConfigError(
            f"{where}: unknown factory {name!r}{did_you_mean(name, known)}; registered: {known} "
            f"(built-in, and entry points in the group {ENTRY_POINT_GROUPS[kind]!r})"
        )
    try:
        factory = matches[0].load()
    except Exception as error:  # the installed package is broken: say which one
        raise ConfigError(
            f"{where}: the factory {name!r} ({matches[0].value}) fails to load: {error}"
        ) from None
    if not callable(factory):
        raise ConfigError(f"{where}: the entry point {name!r} ({matches[0].value}) is not callable")
    return factory
