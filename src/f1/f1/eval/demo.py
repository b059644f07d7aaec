"""``f1 demo``: record demonstrations, train F1 and its two controls, evaluate closed loop, write the report.

The pipeline (see ``docs/demo.md``):

1. demonstrations of the scripted expert: the point gripper on the static and the dynamic (conveyor)
   variant, and at most 50 of the planar arm (half static, half dynamic), with 10% of the steps perturbed
   (DART: a random action executed, the expert's correction recorded);
2. a small VQ-VAE tokenizer trained on the gripper frames (shared by every policy that encodes frames);
3. F1: stage I (foresight pre-training) and stage II on the gripper, stage III on the arm; the controls
   No-Gen and History-No-Foresight get the same number of optimizer steps and samples (stage I's steps go
   to their stage II, since they have no foresight to pre-train);
4. closed-loop evaluation on held-out seeds of F1, the controls, the scripted expert and random actions on
   the four cells (gripper | arm) x (static | dynamic); gripper cells use the stage-II policy, arm cells the
   stage-III policy;
5. ``report.json``, ``report.md``, ``success.png``, ``training_curves.png``, ``foresight.png``.

The three policies train side by side in worker processes (one per core, see :mod:`f1.eval.demo_workers`).
Step counts follow a wall-clock budget: a few steps of each policy, timed in those workers, size the
stages so that the training of all three fits ``DemoBudget.train_seconds``; the other phases have fixed
sizes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from f1.data import LeRobotDataset
from f1.envs import seed_range
from f1.eval.agents import Agent, ExpertAgent, PolicyAgent, RandomAgent
from f1.eval.demo_data import CAMERA, RecordedDataset, TaskSpec, record_demonstrations
from f1.eval.demo_policy import demo_policy_config, embodiment_from_stats
from f1.eval.demo_training import StagePlan, train_tokenizer
from f1.eval.demo_workers import (
    StageJob,
    StepProbe,
    TrainingJob,
    default_workers,
    measure_in_workers,
    plan_workers,
    train_jobs,
)
from f1.eval.foresight import collect_foresight
from f1.eval.plots import (
    POLICY_COLOURS,
    POLICY_LABELS,
    TrainingCurve,
    plot_foresight,
    plot_success,
    plot_training_curves,
)
from f1.eval.report import Cell, compare, machine_description, write_report_json, write_report_markdown
from f1.eval.rollouts import evaluate
from f1.model import F1Config, F1Policy
from f1.train import read_metrics

__all__ = ["DEMO_BUDGETS", "DemoBudget", "DemoResult", "run_demo"]

log = logging.getLogger(__name__)

LEARNED = ("f1", "no_gen", "history_no_foresight")
LEAD_UNAWARE = "expert_lead_unaware"
CELLS = (("gripper", "static"), ("gripper", "dynamic"), ("arm", "static"), ("arm", "dynamic"))


DEMO_TASK = TaskSpec(
    resolution=64,
    num_objects=1,
    num_bins=1,
    grasp_radius=0.075,
    object_size=0.15,
    conveyor_speed_range=(0.06, 0.10),
)
"""The demo's table task: one object and one bin; objects 0.15 table widths wide (10 px at 64 px) that a
gripper closing anywhere over them grasps; a belt running 0.06 to 0.10 table widths per step, faster than
the grasp radius, so that closing where the object is now misses it: the scripted expert that aims at the
object's current position instead of intercepting it succeeds in about 37% of dynamic episodes (the
intercepting expert in 100%), which the report shows beside the policies. With the environment's defaults
(0.1-wide objects, 0.03 grasp radius), no policy trained from scratch in the demo's budget got past a few
percent, and the belt (0.01 to 0.04 per step) let that aiming expert succeed in 69% of dynamic episodes
(see ``docs/results/demo/NOTES.md``)."""


@dataclass(frozen=True)
class DemoBudget:
    """How big a demo run is.

    Attributes:
        name: ``"full"`` or ``"quick"``.
        task: the table task (resolution, objects, bins).
        gripper_episodes: expert demonstrations of the gripper per variant.
        arm_episodes: expert demonstrations of the arm per variant (at most 25: 50 in all).
        perturbation: share of demonstration steps executed as random actions, labelled with the
            expert's correction (DART; see :mod:`f1.eval.demo_data`).
        tokenizer_steps, tokenizer_batch: VQ-VAE training (it uses every core of the machine).
        train_seconds: wall-clock budget for the policies' training (all three, all stages); the other
            phases have fixed sizes (episodes, tokenizer steps, evaluation episodes).
        min_steps, max_steps: bounds of the steps per policy that the budget may choose.
        stage_fractions: share of the steps in stages I, II and III.
        batch_size, lr: optimizer batch and peak learning rate of the stages.
        eval_episodes: held-out episodes per (policy, cell).
        eval_batch: episodes run in lockstep.
        foresight_samples: anchors for the foresight numbers (the picture shows 3).
    """

    name: str
    task: TaskSpec = field(default_factory=lambda: DEMO_TASK)
    gripper_episodes: int = 150
    arm_episodes: int = 25
    perturbation: float = 0.1
    tokenizer_steps: int = 600
    tokenizer_batch: int = 32
    train_seconds: float = 900.0
    min_steps: int = 60
    max_steps: int = 20_000
    stage_fractions: tuple[float, float, float] = (0.15, 0.55, 0.30)
    batch_size: int = 16
    lr: float = 2e-3
    eval_episodes: int = 100
    eval_batch: int = 100
    foresight_samples: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.arm_episodes <= 25:
            raise ValueError(
                f"arm_episodes: expected 1 to 25 per variant (50 in all), received {self.arm_episodes}"
            )
        if abs(sum(self.stage_fractions) - 1) > 1e-6 or min(self.stage_fractions) <= 0:
            raise ValueError(
                "stage_fractions: expected three positive shares summing to 1, "
                f"received {self.stage_fractions}"
            )
        for name in (
            "gripper_episodes",
            "tokenizer_steps",
            "tokenizer_batch",
            "min_steps",
            "batch_size",
            "eval_episodes",
            "eval_batch",
            "foresight_samples",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, received {value!r}")
        if self.max_steps < self.min_steps:
            raise ValueError(f"max_steps: expected >= min_steps={self.min_steps}, received {self.max_steps}")


DEMO_BUDGETS: dict[str, DemoBudget] = {
    "full": DemoBudget(name="full"),
    "quick": DemoBudget(
        name="quick",
        task=replace(DEMO_TASK, resolution=32),
        gripper_episodes=6,
        arm_episodes=3,
        tokenizer_steps=10,
        tokenizer_batch=8,
        train_seconds=15.0,
        min_steps=12,
        max_steps=12,
        batch_size=4,
        eval_episodes=4,
        eval_batch=4,
        foresight_samples=2,
    ),
}


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote: the report and its files."""

    out_dir: Path
    report: dict[str, Any]
    files: dict[str, Path]


def _stage_steps(total: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    first = max(1, round(total * fractions[0]))
    third = max(1, round(total * fractions[2]))
    return first, max(1, total - first - third), third


class _Clock:
    """Wall time of the named phases of the run."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}

    def phase(self, name: str) -> Callable[[], None]:
        begun = time.perf_counter()

        def done() -> None:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - begun

        return done

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def run_demo(
    out_dir: str | Path = "runs/demo",
    budget: DemoBudget | str = "full",
    *,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
    workers: int | None = None,
) -> DemoResult:
    """Run the whole demo and write its report to ``out_dir`` (see the module docstring).

    Args:
        out_dir: report files go here; the demonstrations and training runs under ``out_dir/work``
            (replaced on every run).
        budget: a :class:`DemoBudget` or the name of one in :data:`DEMO_BUDGETS`.
        seed: seeds policy initialisation, batch order and sampling.
        progress: progress bars.
        threads: torch intra-op threads per process (1 is fastest on a busy 2-core machine; None leaves
            torch's choice in this process and uses 1 in the training workers).
        workers: processes that train the three policies side by side (default: one per core, at most 3;
            1 trains them one after the other in this process). The results do not depend on it.
    """
    if isinstance(budget, str):
        if budget not in DEMO_BUDGETS:
            raise ValueError(f"budget: expected one of {list(DEMO_BUDGETS)}, received {budget!r}")
        budget = DEMO_BUDGETS[budget]
    if threads is not None:
        torch.set_num_threads(threads)
    clock = _Clock()
    out = Path(out_dir)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    task = budget.task

    # 1. demonstrations
    done = clock.phase("demonstrations")
    recorded = {
        name: record_demonstrations(
            work / "data" / name,
            task,
            name,
            ("static", "dynamic"),
            episodes,
            perturbation=budget.perturbation,
            progress=progress,
        )
        for name, episodes in (("gripper", budget.gripper_episodes), ("arm", budget.arm_episodes))
    }
    done()
    data = {name: LeRobotDataset(r.root) for name, r in recorded.items()}
    fps = float(data["gripper"].fps)
    embodiments = tuple(
        embodiment_from_stats(name, data[name].stats or data[name].compute_stats(), fps)
        for name in ("gripper", "arm")
    )
    configs = {mode: demo_policy_config(mode, task.resolution, embodiments) for mode in LEARNED}

    # 2. sizing the stages to the budget (skipped when the budget leaves no choice)
    workers = default_workers(len(LEARNED)) if workers is None else workers
    roots = {name: r.root for name, r in recorded.items()}
    seconds: dict[str, float] = {}
    total_steps = budget.max_steps
    if budget.min_steps < budget.max_steps:
        done = clock.phase("calibration")
        seconds = measure_in_workers(
            _step_probes(configs, roots["gripper"], budget), workers=workers, threads=threads or 1
        )
        done()
        total_steps = _steps_within(budget, seconds, workers)
    steps = _stage_steps(total_steps, budget.stage_fractions)
    log.info("steps per policy: %d (stages %s); seconds per step %s", total_steps, steps, seconds)

    # 3. tokenizer + training
    torch.manual_seed(seed)
    policies = {mode: F1Policy(configs[mode]) for mode in LEARNED}
    done = clock.phase("tokenizer")
    tokenizer = policies["f1"].generation.tokenizer  # type: ignore[union-attr]
    threads_before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # nothing else runs meanwhile
    try:
        train_tokenizer(
            tokenizer,
            data["gripper"],
            f"observation.images.{CAMERA}",
            steps=budget.tokenizer_steps,
            batch_size=budget.tokenizer_batch,
            seed=seed,
            output_dir=work / "tokenizer",
            progress=progress,
        )
    finally:
        torch.set_num_threads(threads_before)
    policies["history_no_foresight"].generation.tokenizer.load_state_dict(tokenizer.state_dict())  # type: ignore[union-attr]
    done()
    done = clock.phase("training")
    jobs = []
    for mode in LEARNED:
        policies[mode].save(work / "init" / mode)
        schedule = _schedule(mode, steps, budget, roots)
        jobs.append(
            TrainingJob(
                name=mode,
                initial=work / "init" / mode,
                stages=schedule,
                runs=work / "runs" / mode,
                seed=seed,
                cost=_job_seconds(mode, schedule, seconds),
            )
        )
    del policies
    train_jobs(jobs, workers=workers, threads=threads or 1, progress=progress)
    trained = {
        job.name: {stage.name: F1Policy.load(job.stage_dir(stage.name) / "policy") for stage in job.stages}
        for job in jobs
    }
    curves = {job.name: _curves(job) for job in jobs}
    done()

    # 4. evaluation
    done = clock.phase("evaluation")
    cells = _evaluate_cells(trained, task, budget, progress)
    references = _evaluate_references(task, budget, progress)
    done()

    # 5. foresight, figures, report
    done = clock.phase("report")
    foresight_seeds = list(seed_range("val")[: budget.foresight_samples])
    foresight = collect_foresight(trained["f1"]["II"], task, "gripper", "dynamic", foresight_seeds, seed=seed)
    files = {
        "success": plot_success([c.to_dict() for c in cells], out / "success.png"),
        "training_curves": _plot_curves(curves, work / "tokenizer", out / "training_curves.png"),
        "foresight": plot_foresight(
            foresight.rows, out / "foresight.png", configs["f1"].generation.history_stride
        ),
    }
    done()
    report = {
        "wall_time_s": clock.elapsed,
        "quick": budget.name == "quick",
        "cells": [c.to_dict() for c in cells],
        "references": [c.to_dict() for c in references],
        "comparisons": compare(cells, "f1", "no_gen")
        + compare(cells, "f1", "history_no_foresight")
        + compare(cells, "history_no_foresight", "no_gen"),
        "foresight": foresight.to_dict(),
        "budget": {**asdict(budget), "task": task.to_dict()},
        "training": {
            "steps_per_policy": total_steps,
            "f1_stage_steps": {"I": steps[0], "II": steps[1], "III": steps[2]},
            "control_stage_steps": {"II": steps[0] + steps[1], "III": steps[2]},
            "calibrated_seconds_per_step": seconds,
            "batch_size": budget.batch_size,
            "final_losses": _final_losses(curves),
        },
        "data": {name: _dataset_summary(r) for name, r in recorded.items()},
        "phases_s": clock.phases,
        "machine": machine_description(),
        "seed": seed,
    }
    report["wall_time_s"] = clock.elapsed
    files["report_json"] = write_report_json(out / "report.json", report)
    files["report_md"] = write_report_markdown(out / "report.md", report, _sections(report))
    return DemoResult(out_dir=out, report=report, files=files)


def _steps_within(budget: DemoBudget, seconds: Mapping[str, float], workers: int) -> int:
    """Steps per policy so that F1 (stages I-III) and both controls, spread over ``workers`` processes,
    train within ``budget.train_seconds``."""
    first, second, third = budget.stage_fractions
    per_step = [
        first * seconds["f1_stage1"] + (second + third) * seconds["f1"],
        seconds["no_gen"],
        seconds["history_no_foresight"],
    ]
    wall_per_step = plan_workers(per_step, workers)
    return int(min(budget.max_steps, max(budget.min_steps, budget.train_seconds / wall_per_step)))


def _schedule(
    mode: str, steps: tuple[int, int, int], budget: DemoBudget, roots: Mapping[str, Path]
) -> tuple[StageJob, ...]:
    """F1: stages I, II on the gripper and III on the arm. The controls: the same steps in II and III
    (stage I's go to stage II), flow loss only."""
    batch, lr = budget.batch_size, budget.lr
    if mode == "f1":
        return (
            StageJob("I", roots["gripper"], StagePlan(1, steps[0], batch, lr)),
            StageJob("II", roots["gripper"], StagePlan(2, steps[1], batch, lr)),
            StageJob("III", roots["arm"], StagePlan(3, steps[2], batch, lr)),
        )
    flow = {"flow": 1.0}
    return (
        StageJob("II", roots["gripper"], StagePlan(2, steps[0] + steps[1], batch, lr, flow)),
        StageJob("III", roots["arm"], StagePlan(3, steps[2], batch, lr, flow)),
    )


def _job_seconds(mode: str, schedule: tuple[StageJob, ...], seconds: Mapping[str, float]) -> float:
    """Estimated training seconds of a schedule (1 per step when nothing was measured)."""
    total = 0.0
    for stage in schedule:
        key = "f1_stage1" if stage.plan.stage == 1 else mode
        total += stage.plan.steps * seconds.get(key, 1.0)
    return total


def _curves(job: TrainingJob) -> list[tuple[str, Path, int]]:
    """(stage, metrics dir, step offset) of each stage of ``job``, for the training curves."""
    curves, offset = [], 0
    for stage in job.stages:
        curves.append((stage.name, job.stage_dir(stage.name), offset))
        offset += stage.plan.steps
    return curves


def _evaluate_cells(
    trained: Mapping[str, Mapping[str, F1Policy]], task: TaskSpec, budget: DemoBudget, progress: bool
) -> list[Cell]:
    """Every policy on every cell: gripper cells with the stage-II policies, arm cells with stage III."""
    seeds = list(seed_range("test")[: budget.eval_episodes])
    cells: list[Cell] = []
    for embodiment, variant in CELLS:
        stage = "II" if embodiment == "gripper" else "III"
        agents: list[tuple[str, Agent]] = [
            (mode, PolicyAgent(trained[mode][stage], mode, CAMERA, embodiment)) for mode in LEARNED
        ]
        agents += [("expert", ExpertAgent()), ("random", RandomAgent())]
        for name, agent in agents:
            result = evaluate(
                agent,
                _env_factory(task, embodiment, variant),
                seeds,
                batch_size=budget.eval_batch,
                progress=progress,
                description=f"eval {name} {embodiment} {variant}",
            )
            cells.append(Cell.from_result(result, name, variant, embodiment))
    return cells


def _evaluate_references(task: TaskSpec, budget: DemoBudget, progress: bool) -> list[Cell]:
    """The scripted expert aiming at the object's current position (no interception) on the dynamic
    cells: how much success on the conveyor needs a prediction of the motion."""
    seeds = list(seed_range("test")[: budget.eval_episodes])
    cells = []
    for embodiment in ("gripper", "arm"):
        result = evaluate(
            ExpertAgent(LEAD_UNAWARE, lead_aware=False),
            _env_factory(task, embodiment, "dynamic"),
            seeds,
            batch_size=budget.eval_batch,
            progress=progress,
            description=f"eval {LEAD_UNAWARE} {embodiment} dynamic",
        )
        cells.append(Cell.from_result(result, LEAD_UNAWARE, "dynamic", embodiment))
    return cells


def _step_probes(configs: Mapping[str, F1Config], gripper: Path, budget: DemoBudget) -> list[StepProbe]:
    """Timings of F1 (stages I and II) and of the two controls, costliest first."""
    probe = max(2, min(4, budget.batch_size)) - 1
    batch, lr = budget.batch_size, budget.lr
    flow = {"flow": 1.0}
    return [
        StepProbe("f1", configs["f1"], gripper, StagePlan(2, 10, batch, lr), probe),
        StepProbe("f1_stage1", configs["f1"], gripper, StagePlan(1, 10, batch, lr), probe),
        StepProbe(
            "history_no_foresight",
            configs["history_no_foresight"],
            gripper,
            StagePlan(2, 10, batch, lr, flow),
            probe,
        ),
        StepProbe("no_gen", configs["no_gen"], gripper, StagePlan(2, 10, batch, lr, flow), probe),
    ]


def _env_factory(task: TaskSpec, embodiment: str, variant: str) -> Callable[[], Any]:
    return lambda: task.make_env(embodiment, variant)


def _dataset_summary(data: RecordedDataset) -> dict[str, Any]:
    return {
        "episodes": data.episodes,
        "frames": data.frames,
        "variants": list(data.variants),
        "expert_success_rate": data.expert_success_rate,
    }


def _final_losses(curves: dict[str, list[tuple[str, Path, int]]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode, stages in curves.items():
        out[mode] = {}
        for stage, directory, _ in stages:
            records = read_metrics(directory)
            if records:
                out[mode][stage] = {k: v for k, v in records[-1].items() if k.startswith("loss")}
    return out


def _plot_curves(curves: dict[str, list[tuple[str, Path, int]]], tokenizer_dir: Path, path: Path) -> Path:
    panels: dict[str, list[tuple[TrainingCurve, str]]] = {
        "action: flow-matching loss": [],
        "F1 foresight: next-scale cross-entropy": [],
        "tokenizer (VQ-VAE): loss": [],
    }
    for mode, stages in curves.items():
        for stage, directory, offset in stages:
            curve = TrainingCurve(
                POLICY_LABELS[mode], stage, read_metrics(directory), offset, POLICY_COLOURS[mode]
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


def _sections(report: dict[str, Any]) -> list[str]:
    lines = [
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
    return lines
