"""Evaluation reports: success cells with their intervals, comparisons of two policies, the success table,
and the ``report.json`` contract (machine-read).

``report.json`` holds ``wall_time_s`` and ``cells``, a list of ``{policy, variant, embodiment, episodes,
success_rate, ci95: [lo, hi]}`` with ``policy`` one of :data:`POLICIES` (the modes of
:data:`f1.model.config.MODES`, ``expert``, ``random``), ``variant`` one of :data:`f1.envs.VARIANTS` and
``embodiment`` one of :data:`f1.envs.EMBODIMENTS`; further keys (comparisons, budget, timings, machine)
describe the run (the ``f1 demo`` report adds its own, see :mod:`f1.demo.report`).
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f1.envs import EMBODIMENTS, VARIANTS
from f1.eval.intervals import difference_interval
from f1.eval.plots import POLICY_LABELS
from f1.eval.rollouts import EvaluationResult
from f1.model.config import MODES

__all__ = [
    "POLICIES",
    "Cell",
    "compare",
    "machine_description",
    "read_report",
    "success_table",
    "validate_report",
    "write_report_json",
]

POLICIES: tuple[str, ...] = (*MODES, "expert", "random")
REFERENCE_POLICIES: tuple[str, ...] = (
    "expert_lead_unaware",
    "state_clone_no_velocity",
    "state_clone_velocity",
)
"""Reference rows of ``report["references"]`` (not ``cells``): the scripted expert aiming at the object's
current position instead of intercepting it, and the behaviour clones on the privileged true state without
and with the conveyor velocity (:class:`f1.eval.StateCloneAgent`'s names)."""
CELL_KEYS: tuple[str, ...] = ("policy", "variant", "embodiment", "episodes", "success_rate", "ci95")


@dataclass(frozen=True)
class Cell:
    """One entry of the success table: a policy on one (variant, embodiment) over held-out episodes."""

    policy: str
    variant: str
    embodiment: str
    episodes: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_steps: float
    eval_time_s: float
    grasp_rate: float = 0.0

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("policy", self.policy, POLICIES + REFERENCE_POLICIES),
            ("variant", self.variant, VARIANTS),
            ("embodiment", self.embodiment, EMBODIMENTS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {list(allowed)}, received {value!r}")

    @classmethod
    def from_result(cls, result: EvaluationResult, policy: str, variant: str, embodiment: str) -> Cell:
        return cls(
            policy=policy,
            variant=variant,
            embodiment=embodiment,
            episodes=result.episodes,
            successes=result.successes,
            success_rate=result.success_rate,
            ci95=result.ci95,
            mean_steps=sum(result.steps) / max(1, len(result.steps)),
            eval_time_s=result.wall_time_s,
            grasp_rate=result.grasp_rate,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "variant": self.variant,
            "embodiment": self.embodiment,
            "episodes": self.episodes,
            "successes": self.successes,
            "success_rate": self.success_rate,
            "ci95": [self.ci95[0], self.ci95[1]],
            "mean_steps": self.mean_steps,
            "grasp_rate": self.grasp_rate,
            "eval_time_s": self.eval_time_s,
        }


def compare(cells: Sequence[Cell], policy_a: str, policy_b: str) -> list[dict[str, Any]]:
    """Per (embodiment, variant): ``success_rate(a) - success_rate(b)`` with Newcombe's 95% interval."""
    by_key = {(c.policy, c.embodiment, c.variant): c for c in cells}
    out = []
    for embodiment in EMBODIMENTS:
        for variant in VARIANTS:
            a, b = by_key.get((policy_a, embodiment, variant)), by_key.get((policy_b, embodiment, variant))
            if a is None or b is None:
                continue
            lo, hi = difference_interval(a.successes, a.episodes, b.successes, b.episodes)
            out.append(
                {
                    "a": policy_a,
                    "b": policy_b,
                    "embodiment": embodiment,
                    "variant": variant,
                    "difference": a.success_rate - b.success_rate,
                    "ci95": [lo, hi],
                    "excludes_zero": lo > 0 or hi < 0,
                }
            )
    return out


def machine_description() -> dict[str, Any]:
    """CPU count, load average, platform and torch version (timings depend on them)."""
    import torch

    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15min": load,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``report`` follows the report.json contract (see the module docstring).

    Besides ``wall_time_s`` and ``cells`` it checks, where present: ``references`` (cells like ``cells``),
    ``foresight`` (token accuracies in [0, 1], object errors and their ratio non-negative) and
    ``counterfactual`` (success rates within their intervals, drops within theirs, action changes
    non-negative).
    """
    if not isinstance(report.get("wall_time_s"), int | float):
        raise ValueError(f"report['wall_time_s']: expected a number, received {report.get('wall_time_s')!r}")
    cells = report.get("cells")
    if not isinstance(cells, list) or not cells:
        raise ValueError("report['cells']: expected a non-empty list")
    for i, cell in enumerate(cells):
        _check_cell(f"report['cells'][{i}]", cell)
    references = report.get("references", [])
    if not isinstance(references, list):
        raise ValueError(f"report['references']: expected a list, received {type(references).__name__}")
    for i, cell in enumerate(references):
        _check_cell(f"report['references'][{i}]", cell)
    if "foresight" in report:
        _check_foresight(report["foresight"])
    if report.get("counterfactual") is not None:
        _check_counterfactual(report["counterfactual"])


def _check_cell(where: str, cell: Mapping[str, Any]) -> None:
    missing = [k for k in CELL_KEYS if k not in cell]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    Cell(
        **{k: cell[k] for k in CELL_KEYS if k != "ci95"},
        ci95=tuple(cell["ci95"]),
        successes=round(cell["success_rate"] * cell["episodes"]),
        mean_steps=0.0,
        eval_time_s=0.0,
    )
    _check_within(where, cell["success_rate"], cell["ci95"], (0.0, 1.0), "success_rate")


def _check_within(
    where: str, value: Any, ci95: Any, bounds: tuple[float, float], name: str = "difference"
) -> None:
    """``bounds[0] <= lo <= value <= hi <= bounds[1]``."""
    if not isinstance(value, int | float) or not isinstance(ci95, list | tuple) or len(ci95) != 2:
        raise ValueError(f"{where}: expected a number {name} and ci95 [lo, hi], received {value!r}, {ci95!r}")
    lo, hi = ci95
    if not bounds[0] <= lo <= value <= hi <= bounds[1]:
        raise ValueError(
            f"{where}: expected {bounds[0]} <= lo <= {name} <= hi <= {bounds[1]}, received {value}, {ci95}"
        )


def _check_foresight(foresight: Mapping[str, Any]) -> None:
    if not isinstance(foresight, Mapping):
        raise ValueError(f"report['foresight']: expected a mapping, received {type(foresight).__name__}")
    for key in ("token_accuracy_imagined_per_scale", "token_accuracy_copy_per_scale"):
        values = foresight.get(key, [])
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and 0 <= v <= 1 for v in values
        ):
            raise ValueError(f"report['foresight'][{key!r}]: expected shares in [0, 1], received {values!r}")
    for key, value in foresight.items():
        if key.startswith("object_error_") and isinstance(value, Mapping):
            mean = value.get("mean")
            if mean is not None and not (isinstance(mean, int | float) and mean >= 0):
                raise ValueError(
                    f"report['foresight'][{key!r}]['mean']: expected >= 0 or None, received {mean!r}"
                )
    ratio = foresight.get("object_error_ratio_imagined_to_copy")
    if ratio is not None and not (isinstance(ratio, int | float) and math.isfinite(ratio) and ratio >= 0):
        raise ValueError(
            "report['foresight']['object_error_ratio_imagined_to_copy']: expected a non-negative number or "
            f"None, received {ratio!r}"
        )


def _check_counterfactual(counterfactual: Mapping[str, Any]) -> None:
    where = "report['counterfactual']"
    success = counterfactual.get("success")
    if not isinstance(success, Mapping) or "own" not in success:
        raise ValueError(f"{where}['success']: expected the conditions' results, received {success!r}")
    for name, entry in success.items():
        if name.startswith("drop_"):
            _check_within(
                f"{where}['success'][{name!r}]", entry.get("difference"), entry.get("ci95"), (-1, 1)
            )
        else:
            _check_within(
                f"{where}['success'][{name!r}]",
                entry.get("success_rate"),
                entry.get("ci95"),
                (0, 1),
                "success_rate",
            )
    changes = counterfactual.get("action_change", {}).get("changes", {})
    for name, change in changes.items():
        for key in ("mean_abs", "mean_l2"):
            value = change.get(key)
            if not (isinstance(value, int | float) and value >= 0):
                raise ValueError(
                    f"{where}['action_change']['changes'][{name!r}][{key!r}]: expected >= 0, "
                    f"received {value!r}"
                )


def write_report_json(path: str | Path, report: Mapping[str, Any]) -> Path:
    """Validate ``report`` and write it as indented JSON."""
    validate_report(report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def read_report(path: str | Path) -> dict[str, Any]:
    """A ``report.json`` written by :func:`write_report_json`, validated."""
    report = json.loads(Path(path).read_text())
    validate_report(report)
    return report


def _percent(cell: Mapping[str, Any]) -> str:
    lo, hi = cell["ci95"]
    return f"{100 * cell['success_rate']:.1f} [{100 * lo:.0f}, {100 * hi:.0f}]"


def success_table(cells: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table: one row per policy, one column per (embodiment, variant); ``rate [lo, hi]`` in %."""
    columns = [
        (e, v)
        for e in EMBODIMENTS
        for v in VARIANTS
        if any(c["embodiment"] == e and c["variant"] == v for c in cells)
    ]
    lines = [
        "| policy | " + " | ".join(f"{e} {v}" for e, v in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for policy in POLICIES + REFERENCE_POLICIES:
        row = []
        for embodiment, variant in columns:
            match = [
                c
                for c in cells
                if c["policy"] == policy and c["embodiment"] == embodiment and c["variant"] == variant
            ]
            row.append(_percent(match[0]) if match else "-")
        if any(r != "-" for r in row):
            lines.append(f"| {POLICY_LABELS[policy]} | " + " | ".join(row) + " |")
    return "\n".join(lines)
