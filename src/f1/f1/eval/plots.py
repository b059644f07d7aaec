"""Figures of the demo report (matplotlib, Agg backend, PNG): success bars with confidence intervals,
training curves, and the foresight picture."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ForesightRow", "TrainingCurve", "plot_foresight", "plot_success", "plot_training_curves"]

POLICY_COLOURS = {
    "f1": "#1f77b4",
    "no_gen": "#ff7f0e",
    "history_no_foresight": "#2ca02c",
    "expert": "#7f7f7f",
    "random": "#d62728",
}
POLICY_LABELS = {
    "f1": "F1",
    "no_gen": "No-Gen",
    "history_no_foresight": "History-No-Foresight",
    "expert": "scripted expert",
    "random": "random",
    "expert_lead_unaware": "expert aiming at the object's current position",
    "state_clone_no_velocity": "clone of the expert on the true state, no velocity",
    "state_clone_velocity": "clone of the expert on the true state with velocity",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_success(cells: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Grouped bars: success rate per (embodiment, variant), one bar per policy, Wilson 95% error bars.

    ``cells``: report cells (``policy``, ``variant``, ``embodiment``, ``success_rate``, ``ci95``).
    """
    if not cells:
        raise ValueError("cells: expected at least one evaluation cell")
    plt = _pyplot()
    groups = sorted(
        {(c["embodiment"], c["variant"]) for c in cells}, key=lambda g: (g[0] != "gripper", g[1] != "static")
    )
    policies = [p for p in POLICY_COLOURS if any(c["policy"] == p for c in cells)]
    width = 0.8 / len(policies)
    figure, axis = plt.subplots(figsize=(1.6 + 2.2 * len(groups), 3.8))
    for k, policy in enumerate(policies):
        xs, ys, lows, highs = [], [], [], []
        for g, (embodiment, variant) in enumerate(groups):
            match = [
                c
                for c in cells
                if c["policy"] == policy and c["embodiment"] == embodiment and c["variant"] == variant
            ]
            if not match:
                continue
            cell = match[0]
            xs.append(g - 0.4 + width * (k + 0.5))
            ys.append(100 * cell["success_rate"])
            lows.append(100 * (cell["success_rate"] - cell["ci95"][0]))
            highs.append(100 * (cell["ci95"][1] - cell["success_rate"]))
        axis.bar(
            xs,
            ys,
            width * 0.95,
            yerr=[lows, highs],
            capsize=2,
            color=POLICY_COLOURS[policy],
            label=POLICY_LABELS[policy],
        )
    axis.set_xticks(range(len(groups)), [f"{e}\n{v}" for e, v in groups])
    axis.set_ylabel("success rate (%)")
    axis.set_ylim(0, 105)
    axis.set_title("Closed-loop success on held-out seeds (Wilson 95% intervals)")
    axis.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


@dataclass(frozen=True)
class TrainingCurve:
    """The logged records of one training run (``metrics.jsonl``), drawn after ``step_offset`` steps.

    Attributes:
        label: legend entry (e.g. ``"F1"``).
        stage: stage label (e.g. ``"II"``).
        records: ``{"step": ..., "loss/flow": ..., ...}`` dicts, in order.
        step_offset: steps of the earlier stages of the same policy.
        colour: line colour.
    """

    label: str
    stage: str
    records: Sequence[Mapping[str, float]]
    step_offset: int = 0
    colour: str | None = None


def plot_training_curves(panels: Mapping[str, Sequence[tuple[TrainingCurve, str]]], path: str | Path) -> Path:
    """One panel per title; each entry draws ``metric`` of a curve against the policy's cumulative step.

    ``panels``: title -> list of (curve, metric name), e.g. ``{"action (flow loss)": [(f1_stage2,
    "loss/flow"), ...]}``. Stage boundaries are marked with dotted vertical lines.
    """
    if not panels:
        raise ValueError("panels: expected at least one panel")
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for axis, (title, entries) in zip(axes[0], panels.items()):
        labelled: set[str] = set()
        for curve, metric in entries:
            points = [(r["step"] + curve.step_offset, r[metric]) for r in curve.records if metric in r]
            if not points:
                continue
            xs, ys = zip(*points)
            label = None if curve.label in labelled else curve.label
            labelled.add(curve.label)
            axis.plot(xs, ys, color=curve.colour, label=label, linewidth=1.2)
            if curve.step_offset:
                axis.axvline(curve.step_offset, color=curve.colour or "k", linestyle=":", alpha=0.5)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("optimizer step")
        axis.set_yscale("log")
        axis.grid(alpha=0.3)
        if labelled:
            axis.legend(fontsize=8)
    return _save(figure, path)


@dataclass(frozen=True)
class ForesightRow:
    """One example of the foresight picture; images uint8 ``(H, W, 3)``.

    Attributes:
        history: the frames the policy saw, oldest first (the current frame last).
        predicted: the imagined frame (decoded foresight tokens).
        real: the frame that actually came ``stride`` steps later.
        reconstructed: the real frame through the tokenizer (the best the foresight can reach), optional.
        caption: a label for the row (e.g. the instruction and PSNR values).
    """

    history: Sequence[np.ndarray]
    predicted: np.ndarray
    real: np.ndarray
    reconstructed: np.ndarray | None = None
    caption: str = ""


def plot_foresight(rows: Sequence[ForesightRow], path: str | Path, stride: int) -> Path:
    """Rows of history | predicted next frame | (tokenizer reconstruction) | real next frame."""
    if not rows:
        raise ValueError("rows: expected at least one example")
    plt = _pyplot()
    n_history = len(rows[0].history)
    with_reconstruction = rows[0].reconstructed is not None
    titles = [
        f"history t{-stride * (n_history - 1 - i):+d}" if i < n_history - 1 else "now (t)"
        for i in range(n_history)
    ]
    titles += [f"imagined t+{stride}"]
    if with_reconstruction:
        titles += [f"real t+{stride}\nthrough tokenizer"]
    titles += [f"real t+{stride}"]
    columns = len(titles)
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(1.9 * columns, 2.1 * len(rows) + 0.3), squeeze=False
    )
    for r, row in enumerate(rows):
        images = [*row.history, row.predicted]
        if with_reconstruction:
            images.append(row.reconstructed)
        images.append(row.real)
        for c, image in enumerate(images):
            axis = axes[r][c]
            axis.imshow(image, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(titles[c], fontsize=8)
        if row.caption:
            axes[r][0].set_ylabel(row.caption, fontsize=7)
    figure.suptitle("Foresight: what F1 imagines next, against what happened", fontsize=10)
    return _save(figure, path)


def _save(figure: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path
