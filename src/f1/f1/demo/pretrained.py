"""The demo's shipped checkpoints: stages I-II trained once, read back by a run that trains stage III.

The issue's fallback in the paper's own shape: the released F1 is pre-trained (stages I and II) on a large
corpus and adapted (stage III) to each robot. The demo's stand-in is the point gripper's demonstrations
(``"train"`` seeds, never the evaluation seeds): :func:`f1.demo.pretrain_demo` trains the tokenizer and
stages I-II of all three policies alike and writes them here with :func:`export_pretrained`; ``f1 demo``
then reads them with :func:`load_pretrained`, adds the arm (the target embodiment), trains stage III on it
and evaluates. Layout of a pretrained directory::

    manifest.json                      what was trained, how, on what (checked when read)
    policies/<mode>/                   the stage-II policy of each mode (F1Policy.save: safetensors)
    metrics/<mode>/stage_<X>/          each stage's metrics.jsonl (the report's training curves)
    metrics/tokenizer/                 the VQ-VAE's metrics.jsonl

The directory is written under a temporary name and renamed in one step, so a killed export leaves no
half-written checkpoint; :func:`load_pretrained` reads tensors only (``F1Policy.load``) and checks the
manifest against the run's budget before anything is trained on it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f1.demo.budget import DemoBudget, demo_budget
from f1.demo.data import task_record
from f1.demo.workers import StageRun
from f1.model import F1Policy
from f1.model.config import MODES
from f1.train.metrics import METRICS_FILE

__all__ = [
    "MANIFEST",
    "PRETRAINED_FORMAT",
    "PretrainedDemo",
    "export_pretrained",
    "load_pretrained",
    "pretraining_setup",
]

PRETRAINED_FORMAT = "f1-demo-pretrained/1"
MANIFEST = "manifest.json"
PRETRAINED_STAGES = {"f1": ("I", "II"), "no_gen": ("II",), "history_no_foresight": ("II",)}
"""The stages each mode's checkpoint went through (the controls have no foresight to pre-train)."""


def pretraining_setup(budget: DemoBudget) -> dict[str, Any]:
    """What a pretrained directory must have been trained with to be used under ``budget``: the task, the
    expert, the gripper's demonstrations, the optimizer's batch and learning rate, and the stage steps."""
    return {
        "budget": budget.name,
        "task": task_record(budget.task),
        "approach_margin": budget.approach_margin,
        "perturbation": budget.perturbation,
        "gripper_episodes": budget.gripper_episodes,
        "tokenizer_steps": budget.tokenizer_steps,
        "batch_size": budget.batch_size,
        "lr": budget.lr,
        "stage_steps": {"I": budget.pretrain_steps[0], "II": budget.pretrain_steps[1]},
    }


@dataclass(frozen=True)
class PretrainedDemo:
    """A pretrained directory, read and checked by :func:`load_pretrained`.

    Attributes:
        directory: where it lies.
        manifest: its ``manifest.json`` (``setup``: :func:`pretraining_setup`; ``seed``, ``data``,
            ``seconds_per_step``, ``wall_time_s``, ``commit``, ``machine``: how it was made).
    """

    directory: Path
    manifest: dict[str, Any]

    def policy_dir(self, mode: str) -> Path:
        """The stage-II policy of ``mode``."""
        return self.directory / "policies" / mode

    def load_policy(self, mode: str) -> F1Policy:
        """The stage-II policy of ``mode`` (tensors only; every key and shape checked)."""
        return F1Policy.load(self.policy_dir(mode))

    def stage_runs(self, mode: str) -> list[StageRun]:
        """The metrics of ``mode``'s pretraining stages, in order, with the step each began at."""
        steps = self.manifest["setup"]["stage_steps"]
        runs, first = [], 0
        for stage in PRETRAINED_STAGES[mode]:
            runs.append(StageRun(stage, self.directory / "metrics" / mode / f"stage_{stage}", first))
            first += int(steps[stage])
        return runs

    def pretrained_steps(self, mode: str) -> int:
        """Optimizer steps ``mode``'s checkpoint went through (all its pretraining stages)."""
        steps = self.manifest["setup"]["stage_steps"]
        return sum(int(steps[stage]) for stage in PRETRAINED_STAGES[mode])

    @property
    def tokenizer_metrics(self) -> Path:
        """The directory of the VQ-VAE's ``metrics.jsonl``."""
        return self.directory / "metrics" / "tokenizer"

    @property
    def stage_steps(self) -> tuple[int, int]:
        """Steps of stages I and II."""
        steps = self.manifest["setup"]["stage_steps"]
        return int(steps["I"]), int(steps["II"])

    def summary(self) -> dict[str, Any]:
        """The manifest without its setup (which the report's budget already holds), and the directory."""
        return {"directory": str(self.directory), **{k: v for k, v in self.manifest.items() if k != "setup"}}


def export_pretrained(
    out_dir: str | Path,
    budget: DemoBudget,
    policies: Mapping[str, Path],
    stage_dirs: Mapping[str, Mapping[str, Path]],
    tokenizer_dir: Path,
    details: Mapping[str, Any],
) -> PretrainedDemo:
    """Write a pretrained directory at ``out_dir`` (replacing one there, in one rename).

    Args:
        out_dir: the directory to write.
        budget: the budget it was trained under (its :func:`pretraining_setup` goes into the manifest).
        policies: the saved stage-II policy directory of every mode.
        stage_dirs: per mode, per stage name, the stage's run directory (its ``metrics.jsonl`` is copied;
            its optimizer checkpoints are not).
        tokenizer_dir: the directory of the VQ-VAE's ``metrics.jsonl``.
        details: how it was made (seed, data, timings, commit, machine), merged into the manifest.
    """
    missing = sorted(set(MODES) - set(policies))
    if missing:
        raise ValueError(f"policies: expected a policy of every mode {list(MODES)}, missing {missing}")
    for mode in MODES:
        stages = sorted(stage_dirs.get(mode, {}))
        if stages != sorted(PRETRAINED_STAGES[mode]):
            raise ValueError(
                f"stage_dirs[{mode!r}]: expected stages {list(PRETRAINED_STAGES[mode])}, received {stages}"
            )
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir: {out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for mode in MODES:
            F1Policy.load(policies[mode]).save(partial / "policies" / mode)
            for stage, directory in stage_dirs[mode].items():
                _copy_metrics(Path(directory), partial / "metrics" / mode / f"stage_{stage}")
        _copy_metrics(Path(tokenizer_dir), partial / "metrics" / "tokenizer")
        manifest = {"format": PRETRAINED_FORMAT, "setup": pretraining_setup(budget), **dict(details)}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            try:
                os.replace(partial, out)
            except BaseException:
                os.replace(old / out.name, out)  # the previous checkpoints stay where they were
                old.rmdir()
                raise
            shutil.rmtree(old)
        else:
            os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return PretrainedDemo(out, manifest)


def _copy_metrics(source: Path, target: Path) -> None:
    metrics = source / METRICS_FILE
    if not metrics.is_file():
        raise ValueError(f"stage_dirs: {source} holds no {METRICS_FILE}")
    target.mkdir(parents=True)
    shutil.copyfile(metrics, target / METRICS_FILE)


def load_pretrained(directory: str | Path, budget: DemoBudget | str) -> PretrainedDemo:
    """The pretrained directory at ``directory``, checked against ``budget`` (a :class:`DemoBudget` or
    the name of one in :data:`f1.demo.DEMO_BUDGETS`) before anything uses it.

    Raises:
        ValueError: naming what is wrong: no such directory or manifest, a foreign or truncated manifest,
            a setting it was trained with that the budget does not have (expected vs received), or a
            missing policy or metrics file.
    """
    budget = demo_budget(budget)
    root = Path(directory)
    hint = "train them with `f1 demo-pretrain` or run `f1 demo --from-scratch`"
    if not root.is_dir():
        raise ValueError(f"pretrained: {root} is not a directory of demo checkpoints; {hint}")
    path = root / MANIFEST
    if not path.is_file():
        raise ValueError(f"pretrained: {root} holds no {MANIFEST}; {hint}")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"pretrained: {path} is not a JSON manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PRETRAINED_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"pretrained: {path}: expected format {PRETRAINED_FORMAT!r}, received {found!r}")
    setup = manifest.get("setup")
    expected = json.loads(json.dumps(pretraining_setup(budget)))  # as JSON holds it (tuples as lists)
    if not isinstance(setup, dict):
        raise ValueError(f"pretrained: {path}: expected a 'setup' mapping, received {setup!r}")
    for key, value in expected.items():
        if setup.get(key) != value:
            raise ValueError(
                f"pretrained: {root} was trained with {key}={setup.get(key)!r}, the {budget.name!r} budget "
                f"has {key}={value!r}; {hint}"
            )
    pretrained = PretrainedDemo(root, manifest)
    for mode in MODES:
        if not (pretrained.policy_dir(mode) / "model.safetensors").is_file():
            raise ValueError(f"pretrained: {root} holds no policy of mode {mode!r}; {hint}")
        for run in pretrained.stage_runs(mode):
            if not (run.directory / METRICS_FILE).is_file():
                raise ValueError(f"pretrained: {run.directory} holds no {METRICS_FILE}")
    return pretrained
