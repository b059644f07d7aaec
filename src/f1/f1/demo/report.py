"""The demo's report, assembled here and nowhere else: ``report.json`` (the :mod:`f1.eval.report` contract
plus the run's own keys), ``report.md`` and the three figures.

``report.json`` keys: ``wall_time_s``, ``quick``, ``cells`` (the learned policies, the scripted expert and
random actions on the four cells), ``references`` (the expert aiming at the object's current position on
the dynamic cells; the clones of the expert on the true state without and with velocity on all four),
``state_clones`` (how each clone was trained), ``comparisons`` (:data:`COMPARISONS`), ``foresight`` (F1's
imagined frame against the copy baseline, with ``object_error_ratio_target`` and ``meets_target``),
``counterfactual`` (whether F1 uses its foresight; None when the policy predicts none), ``budget``,
``pretrained`` (the shipped stage-II checkpoints a run started from; None from scratch), ``training``,
``data``, ``phases_s``, ``machine``, ``seed``.
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

OBJECT_ERROR_RATIO_TARGET = 0.5
"""The foresight's target: the named object's position error in the imagined frame at most this share of
the copy baseline's (the current frame through the tokenizer)."""

OPEN_LOOP_LABELS = {
    "real": "the real future's tokens",
    "other_episode": "another anchor's real future",
    "copy": "a copy of the current frame",
    "sampled": "the model's own foresight",
}
CLOSED_LOOP_LABELS = {
    "own": "own foresight",
    "copy": "a copy of the current frame",
    "other_episode": "another episode's frames",
}
"""The conditions of ``report.json``'s ``counterfactual`` (``action_change``, ``success``), as report.md
names them."""


def demo_report(
    *,
    budget: DemoBudget,
    cells: Sequence[Cell],
    references: Sequence[Cell],
    state_clones: Sequence[Mapping[str, Any]],
    foresight: ForesightSamples,
    counterfactual: Mapping[str, Any] | None,
    steps: TrainingSteps,
    curves: Mapping[str, Sequence[StageRun]],
    recorded: Mapping[str, RecordedDataset],
    phases: Mapping[str, float],
    wall_time_s: float,
    seed: int,
    pretrained: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``report.json`` of a run (see the module docstring); ``curves``: each policy's stage runs;
    ``state_clones``: per clone, how it was trained; ``counterfactual``: as ``run.counterfactual_phase``
    returns it; ``pretrained``: the shipped checkpoints' summary (:meth:`f1.demo.PretrainedDemo.summary`)
    when stages I-II were not trained in this run."""
    ratio = foresight.object_error_ratio
    return {
        "wall_time_s": wall_time_s,
        "quick": budget.name == "quick",
        "cells": [c.to_dict() for c in cells],
        "references": [c.to_dict() for c in references],
        "state_clones": {
            "episodes": budget.clone_episodes,
            "steps": budget.clone_steps,
            "clones": [dict(c) for c in state_clones],
        },
        "comparisons": [row for a, b in COMPARISONS for row in compare(cells, a, b)],
        "foresight": {
            **foresight.to_dict(),
            "object_error_ratio_target": OBJECT_ERROR_RATIO_TARGET,
            "meets_target": None if ratio is None else ratio <= OBJECT_ERROR_RATIO_TARGET,
        },
        "counterfactual": None if counterfactual is None else dict(counterfactual),
        "budget": {**asdict(budget), "task": task_record(budget.task)},
        "pretrained": None if pretrained is None else dict(pretrained),
        "training": {
            "steps_per_policy": steps.per_policy,
            "f1_stage_steps": {"I": steps.stages[0], "II": steps.stages[1], "III": steps.stages[2]},
            # the controls match F1's action-training stages; F1's stage I comes on top
            "control_stage_steps": {"II": steps.stages[1], "III": steps.stages[2]},
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
        "Reference rows: the scripted expert aiming at the object's current position (no interception; "
        "dynamic cells), and behaviour clones of the expert on the privileged true state (not the image), "
        "without and with the conveyor velocity: what single-frame information allows, and what knowing "
        "the motion adds.",
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
        f"{f['psnr_imagined_db']:.2f} dB PSNR against the real next frame; the copy baseline "
        '("nothing moves": the current frame through the tokenizer, as the imagined frame goes) '
        f"{f['psnr_no_motion_db']:.2f} dB"
        + (
            f" ({f['psnr_no_motion_raw_db']:.2f} dB for the raw current frame)"
            if f.get("psnr_no_motion_raw_db") is not None
            else ""
        )
        + f"; the real next frame through the tokenizer {f['psnr_tokenizer_db']:.2f} dB (the best a "
        "foresight can reach).",
        "",
        *_foresight_future_section(f),
        *_counterfactual_section(report.get("counterfactual")),
        "## Training",
        "",
        "![training curves](training_curves.png)",
        "",
        f"Steps: F1 {t['steps_per_policy']} at batch {t['batch_size']} (stage I "
        f"{t['f1_stage_steps']['I']}, II {t['f1_stage_steps']['II']}, III {t['f1_stage_steps']['III']}; "
        f"the controls the same action-training steps: II {t['control_stage_steps']['II']}, "
        f"III {t['control_stage_steps']['III']}), "
        + (
            f"sized to the budget from measured seconds per step {json.dumps(step_seconds)}."
            if step_seconds
            else "fixed by the budget."
        ),
        *_pretrained_lines(report.get("pretrained")),
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


def _pretrained_lines(p: Mapping[str, Any] | None) -> list[str]:
    if p is None:
        return []
    made = ", ".join(
        f"{label} {p[key]}"
        for key, label in (("commit", "commit"), ("seed", "seed"))
        if p.get(key) is not None
    )
    hours = p.get("wall_time_s")
    return [
        "",
        f"Stages I and II were not trained in this run: every policy starts stage III from the shipped "
        f"stage-II checkpoint in `{p['directory']}` (trained once by `f1 demo-pretrain` on the gripper's "
        'demonstrations of `"train"` seeds'
        + (f"; {made}" if made else "")
        + (f"; {hours / 3600:.2f} h of training" if hours else "")
        + "), and the gripper cells evaluate those checkpoints.",
    ]


def _number(value: float | None, scale: float = 1.0, digits: int = 3, sign: str = "") -> str:
    return "-" if value is None else f"{scale * value:{sign}.{digits}f}"


def _foresight_future_section(f: Mapping[str, Any]) -> list[str]:
    """Does the foresight carry the future? F1's imagined frame against the copy baseline."""
    accuracy = (f.get("token_accuracy_imagined_finest"), f.get("token_accuracy_copy_finest"))
    errors = {k: f.get(f"object_error_{k}") or {} for k in ("imagined", "copy", "tokenizer", "real")}
    ratio = f.get("object_error_ratio_imagined_to_copy")
    target = f.get("object_error_ratio_target", OBJECT_ERROR_RATIO_TARGET)
    if ratio is None:
        verdict = (
            "not measurable (the object was not found in both frames of any anchor, or the copy's error is 0)"
        )
    else:
        verdict = f"{ratio:.2f}: target {'met' if ratio <= target else 'not met'}"

    def error(name: str) -> str:
        e = errors[name]
        if not e:
            return "-"
        found = f" ({e['found']}/{e['found'] + e['not_found']} found)"
        return _number(e.get("mean")) + found

    return [
        "## Does the foresight carry the future?",
        "",
        f"Over the {f.get('samples', '-')} anchors above, F1's imagined frame against the copy baseline (the "
        "current frame through the tokenizer: a foresight that imagines nothing moves). Token accuracy: "
        "share of the finest scale's token indices equal to the real future frame's. Object error: the named "
        "object located by its colour, distance from its true position at t + stride in table widths "
        "(mean over the anchors where it was found).",
        "",
        "| measure | imagined | copy | real future through the tokenizer | raw real future |",
        "|---|---:|---:|---:|---:|",
        f"| finest-scale token accuracy (%) | {_number(accuracy[0], 100, 1)} | "
        f"{_number(accuracy[1], 100, 1)} | 100.0 | - |",
        f"| object error (table widths) | {error('imagined')} | {error('copy')} | {error('tokenizer')} | "
        f"{error('real')} |",
        "",
        f"Object error of the imagined frame / the copy's (anchors where both found it): {verdict} "
        f"(the target: at most {target:g} of the copy baseline's error).",
        "",
    ]


def _counterfactual_section(c: Mapping[str, Any] | None) -> list[str]:
    """Is the foresight used? F1's actions and success under another foresight."""
    lines = ["## Is the foresight used?", ""]
    if c is None:
        return [*lines, "Not measured: the F1 policy predicts no foresight.", ""]
    change = c["action_change"]
    lines += [
        f"On the {c['embodiment']} {c['variant']} cell, the stage-{c['stage']} F1 policy. Open loop, over "
        f"{change['anchors']} held-out anchors: the first {change['executed_steps']} executed actions "
        f"planned from the same flow noise with {OPEN_LOOP_LABELS[change['reference']]} as the "
        "foresight against those planned with another foresight (raw action units; relative: over the "
        f"reference actions' own spread, mean L2 distance from their mean {change['spread_l2']:.4f}). A "
        "policy that ignores its foresight changes nothing.",
        "",
        "| foresight | mean abs change | mean L2 change | relative L2 change |",
        "|---|---:|---:|---:|",
    ]
    for name, ch in change["changes"].items():
        lines.append(
            f"| {OPEN_LOOP_LABELS.get(name, name)} | {ch['mean_abs']:.4f} | {ch['mean_l2']:.4f} | "
            f"{_number(ch['relative_l2'], digits=2)} |"
        )
    success = c["success"]
    lines += [
        "",
        f"Closed loop, on the success table's {c['episodes']} test seeds (own foresight "
        f"{'repeats' if c.get('own_matches_success_table') else 'does not repeat'} F1's cell there): success "
        "in % with the Wilson 95% interval, and the drop from the own foresight's in points with Newcombe's "
        "95% interval (positive: the policy does worse without its own foresight).",
        "",
        "| foresight | success | drop | 95% interval | excludes 0 |",
        "|---|---:|---:|---|---|",
    ]
    for name, result in success.items():
        if name.startswith("drop_"):
            continue
        lo, hi = result["ci95"]
        rate = f"{100 * result['success_rate']:.1f} [{100 * lo:.0f}, {100 * hi:.0f}]"
        drop = success.get(f"drop_{name}")
        if drop is None:
            lines.append(f"| {CLOSED_LOOP_LABELS.get(name, name)} | {rate} | - | - | - |")
            continue
        lo, hi = drop["ci95"]
        lines.append(
            f"| {CLOSED_LOOP_LABELS.get(name, name)} | {rate} | {100 * drop['difference']:+.1f} | "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {'yes' if lo > 0 or hi < 0 else 'no'} |"
        )
    return [*lines, ""]


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
