"""The demo's report, assembled here and nowhere else: ``report.json`` (the :mod:`f1.eval.report` contract
plus the run's own keys), ``report.md`` and the three figures.

``report.json`` keys: ``wall_time_s``, ``quick``, ``cells`` (the learned policies, the scripted expert and
random actions on the four cells), ``references`` (the expert aiming at the object's current position),
``comparisons`` (:data:`COMPARISONS`), ``foresight``, ``budget``, ``training``, ``data``, ``phases_s``,
``machine``, ``seed``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from f1.demo.budget import DemoBudget, TrainingSteps
from f1.demo.data import RecordedDataset, task_record
from f1.demo.workers import StageRun
from f1.eval.foresight import ForesightSamples
from f1.eval.plots import (
    POLICY_COLOURS,
    POLICY_LABELS,
    TrainingCurve,
    plot_foresight,
    plot_success,
    plot_training_curves,
)
from f1.eval.report import Cell, compare, machine_description, success_table, write_report_json
from f1.train import read_metrics

__all__ = ["COMPARISONS", "demo_report", "report_markdown", "write_figures", "write_report"]

COMPARISONS: tuple[tuple[str, str], ...] = (
    ("f1", "no_gen"),
    ("f1", "history_no_foresight"),
    ("history_no_foresight", "no_gen"),
)
"""The pairs of policies whose success rates the report compares (a - b, per cell)."""


def demo_report(
    *,
    budget: DemoBudget,
    cells: Sequence[Cell],
    references: Sequence[Cell],
    foresight: ForesightSamples,
    steps: TrainingSteps,
    curves: Mapping[str, Sequence[StageRun]],
    recorded: Mapping[str, RecordedDataset],
    phases: Mapping[str, float],
    wall_time_s: float,
    seed: int,
) -> dict[str, Any]:
    """The ``report.json`` of a run (see the module docstring); ``curves``: each policy's stage runs."""
    return {
        "wall_time_s": wall_time_s,
        "quick": budget.name == "quick",
        "cells": [c.to_dict() for c in cells],
        "references": [c.to_dict() for c in references],
        "comparisons": [row for a, b in COMPARISONS for row in compare(cells, a, b)],
        "foresight": foresight.to_dict(),
        "budget": {**asdict(budget), "task": task_record(budget.task)},
        "training": {
            "steps_per_policy": steps.per_policy,
            "f1_stage_steps": {"I": steps.stages[0], "II": steps.stages[1], "III": steps.stages[2]},
            "control_stage_steps": {"II": steps.stages[0] + steps.stages[1], "III": steps.stages[2]},
            "calibrated_seconds_per_step": dict(steps.seconds_per_step),
            "batch_size": budget.batch_size,
            "final_losses": _final_losses(curves),
        },
        "data": {name: _dataset_summary(r) for name, r in recorded.items()},
        "phases_s": dict(phases),
        "machine": machine_description(),
        "seed": seed,
    }


def write_figures(
    out: Path,
    cells: Sequence[Cell],
    curves: Mapping[str, Sequence[StageRun]],
    tokenizer_dir: Path,
    foresight: ForesightSamples,
    history_stride: int,
) -> dict[str, Path]:
    """``success.png``, ``training_curves.png`` and ``foresight.png`` in ``out``."""
    return {
        "success": plot_success([c.to_dict() for c in cells], out / "success.png"),
        "training_curves": _plot_curves(curves, tokenizer_dir, out / "training_curves.png"),
        "foresight": plot_foresight(foresight.rows, out / "foresight.png", history_stride),
    }


def write_report(out: Path, report: Mapping[str, Any]) -> dict[str, Path]:
    """``report.json`` (validated) and ``report.md`` in ``out``."""
    return {
        "report_json": write_report_json(out / "report.json", report),
        "report_md": _write_text(out / "report.md", report_markdown(report)),
    }


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def report_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: the title, the success table, the comparisons, figures, foresight, training and run."""
    episodes = sorted({c["episodes"] for c in report["cells"]})
    lines = [
        f"# F1 demo report{' (quick run)' if report.get('quick') else ''}",
        "",
        f"Wall time: {report['wall_time_s'] / 60:.1f} min. Success rate in % on held-out seeds "
        f"({', '.join(map(str, episodes))} episodes per cell) with the Wilson 95% interval in brackets.",
        "",
        success_table([*report["cells"], *report.get("references", [])]),
        "",
        "## F1 against the controls",
        "",
        "Difference of success rates in points with Newcombe's 95% interval; the claim under test is "
        "F1 ahead of No-Gen on the dynamic variant by at least 15 points with an interval above zero.",
        "",
        "| comparison | cell | difference | 95% interval | excludes 0 |",
        "|---|---|---:|---|---|",
    ]
    for c in report["comparisons"]:
        lines.append(
            f"| {POLICY_LABELS[c['a']]} - {POLICY_LABELS[c['b']]} | {c['embodiment']} {c['variant']} | "
            f"{100 * c['difference']:+.1f} | [{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}] | "
            f"{'yes' if c['excludes_zero'] else 'no'} |"
        )
    f = report["foresight"]
    t = report["training"]
    step_seconds = {k: round(v, 3) for k, v in t["calibrated_seconds_per_step"].items()}
    lines += [
        "",
        "## Success rates",
        "",
        "![success rates](success.png)",
        "",
        "## Foresight",
        "",
        "![foresight](foresight.png)",
        "",
        f"Over {f['samples']} held-out gripper-dynamic anchors (at the tokenizer's image size): "
        "imagined frame "
        f'{f["psnr_imagined_db"]:.2f} dB PSNR against the real next frame; "nothing moves" (the current '
        f"frame) {f['psnr_no_motion_db']:.2f} dB; the real next frame through the tokenizer "
        f"{f['psnr_tokenizer_db']:.2f} dB (the best a foresight can reach).",
        "",
        "## Training",
        "",
        "![training curves](training_curves.png)",
        "",
        f"Steps per policy: {t['steps_per_policy']} at batch {t['batch_size']} (F1: stage I "
        f"{t['f1_stage_steps']['I']}, II {t['f1_stage_steps']['II']}, III {t['f1_stage_steps']['III']}; "
        f"controls: II {t['control_stage_steps']['II']}, III {t['control_stage_steps']['III']}), "
        + (
            f"sized to the budget from measured seconds per step {json.dumps(step_seconds)}."
            if step_seconds
            else "fixed by the budget."
        ),
        "",
        "## Run",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.0f} |" for k, v in report["phases_s"].items()],
        "",
        f"Machine: {report['machine']['cpu_count']} CPUs, load average "
        f"{report['machine']['load_average_1_5_15min']}, torch {report['machine']['torch']} "
        f"({report['machine']['torch_threads']} intra-op thread(s)).",
    ]
    return "\n".join(lines).rstrip() + "\n"


def _dataset_summary(data: RecordedDataset) -> dict[str, Any]:
    return {
        "episodes": data.episodes,
        "frames": data.frames,
        "variants": list(data.variants),
        "expert_success_rate": data.expert_success_rate,
    }


def _final_losses(curves: Mapping[str, Sequence[StageRun]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode, stages in curves.items():
        out[mode] = {}
        for run in stages:
            records = read_metrics(run.directory)
            if records:
                out[mode][run.stage] = {k: v for k, v in records[-1].items() if k.startswith("loss")}
    return out


def _plot_curves(curves: Mapping[str, Sequence[StageRun]], tokenizer_dir: Path, path: Path) -> Path:
    panels: dict[str, list[tuple[TrainingCurve, str]]] = {
        "action: flow-matching loss": [],
        "F1 foresight: next-scale cross-entropy": [],
        "tokenizer (VQ-VAE): loss": [],
    }
    for mode, stages in curves.items():
        for run in stages:
            curve = TrainingCurve(
                POLICY_LABELS[mode],
                run.stage,
                read_metrics(run.directory),
                run.first_step,
                POLICY_COLOURS[mode],
            )
            panels["action: flow-matching loss"].append((curve, "loss/flow"))
            if mode == "f1":
                panels["F1 foresight: next-scale cross-entropy"].append((curve, "loss/generation"))
    records = read_metrics(tokenizer_dir)
    panels["tokenizer (VQ-VAE): loss"] = [
        (TrainingCurve("total", "0", records, 0, "#9467bd"), "loss"),
        (TrainingCurve("reconstruction (MSE)", "0", records, 0, "#8c564b"), "loss/reconstruction"),
    ]
    return plot_training_curves(panels, path)
