"""``f1 demo``: record demonstrations, train F1 and its two controls, evaluate closed loop, write the report.

:func:`run_demo` is the pipeline (see ``docs/demo.md``), one phase function per step:

1. :func:`record_phase`: demonstrations of the scripted expert: the point gripper on the static and the
   dynamic (conveyor) variant, and at most 50 of the planar arm (half static, half dynamic), with 10% of
   the steps perturbed (DART: a random action executed, the expert's correction recorded);
2. :func:`calibration_phase`: a few timed steps of each policy size the stages to the wall-clock budget
   (:mod:`f1.demo.budget`; skipped when the budget fixes the steps);
3. :func:`tokenizer_phase`: the initial policies, and a small VQ-VAE tokenizer trained on the gripper frames
   (shared by every policy that encodes frames);
4. :func:`training_phase`: F1 through stage I (foresight pre-training) and stage II on the gripper, stage III
   on the arm; the controls No-Gen and History-No-Foresight through the same number of optimizer steps and
   samples, side by side in worker processes (:mod:`f1.demo.workers`);
5. :func:`evaluation_phase`: closed-loop evaluation on held-out seeds of F1, the controls, the scripted
   expert and random actions on the four cells (gripper | arm) x (static | dynamic); gripper cells use the
   stage-II policy, arm cells the stage-III policy;
6. :func:`state_clone_phase`: behaviour clones of the expert on the privileged true state, without and with
   the conveyor velocity, trained per cell on ``"train"`` seeds and evaluated on the same test seeds
   (reference rows beside the lead-unaware expert);
7. :func:`counterfactual_phase`: whether F1 uses its foresight: its actions under another foresight (open
   loop) and its success with a copied or another episode's foresight (closed loop) on the gripper's
   conveyor cell;
8. :func:`report_phase`: ``report.json``, ``report.md``, ``success.png``, ``training_curves.png``,
   ``foresight.png`` (:mod:`f1.demo.report`).

From the shipped checkpoints (``run_demo(..., pretrained=DIR)``, what ``make demo`` does), phases 1-4 are
instead: the arm's demonstrations only; :func:`pretrained_phase` (the checkpoints' stage-II policies with the
arm added, the arm's frames encoded by their tokenizer); a timing of stage III; :func:`adaptation_phase`
(stage III on the arm). Phases 5-8 are the same.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from f1.data import LeRobotDataset
from f1.demo.budget import (
    DemoBudget,
    TrainingSteps,
    adaptation_probes,
    adaptation_schedule,
    adaptation_steps_within,
    demo_budget,
    job_seconds,
    stage_schedule,
    step_probes,
    training_steps,
)
from f1.demo.data import CAMERA, RecordedDataset, record_demonstrations, table_task
from f1.demo.policy import demo_policy_config, embodiment_from_stats
from f1.demo.pretrained import PretrainedDemo, load_pretrained
from f1.demo.report import demo_report, write_figures, write_report
from f1.demo.training import dataset_codes, frame_tokenizer, train_tokenizer
from f1.demo.workers import (
    StageJob,
    StageRun,
    TrainingJob,
    default_workers,
    measure_in_workers,
    train_jobs,
)
from f1.envs import EMBODIMENTS, VARIANTS, TableTaskEnv, seed_range
from f1.eval.agents import Agent, ExpertAgent, PolicyAgent, RandomAgent
from f1.eval.counterfactual import counterfactual_success, foresight_action_change
from f1.eval.foresight import ForesightSamples, collect_foresight
from f1.eval.report import Cell
from f1.eval.rollouts import evaluate
from f1.eval.state_clone import StateCloneAgent, train_state_clone
from f1.keys import camera_key
from f1.model import F1Config, F1Policy
from f1.model.config import MODES

__all__ = ["DemoResult", "run_demo"]

log = logging.getLogger(__name__)

LEAD_UNAWARE = "expert_lead_unaware"
CELLS: tuple[tuple[str, str], ...] = tuple((e, v) for e in EMBODIMENTS for v in VARIANTS)
"""(embodiment, variant) of every evaluation cell, in the report's order."""
EVALUATION_STAGE = {"gripper": "II", "arm": "III"}
"""The stage whose policy is evaluated on each embodiment."""
COUNTERFACTUAL_CELL = ("gripper", "dynamic")
"""The (embodiment, variant) on which the counterfactuals test F1's use of its foresight."""


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote: the report and its files."""

    out_dir: Path
    report: dict[str, Any]
    files: dict[str, Path]


@dataclass(frozen=True)
class RunSettings:
    """How a run works, the same for every phase: its work directory (demonstrations, tokenizer, training
    runs), the seed, the training worker processes and their torch threads, progress bars."""

    work: Path
    seed: int
    workers: int
    threads: int
    progress: bool


@dataclass(frozen=True)
class Demonstrations:
    """The recorded demonstrations, one dataset per embodiment (``"gripper"``, ``"arm"``)."""

    recorded: dict[str, RecordedDataset]
    datasets: dict[str, LeRobotDataset]

    @property
    def roots(self) -> dict[str, Path]:
        return {name: r.root for name, r in self.recorded.items()}


@dataclass(frozen=True)
class InitialPolicies:
    """The untrained policies (saved directory per mode) and the frame-codes file of every embodiment's
    demonstrations under their shared tokenizer."""

    policies: dict[str, Path]
    codes: dict[str, Path]


@dataclass(frozen=True)
class TrainedPolicies:
    """Every policy after every stage (``policies[mode][stage]``) and where each stage left its metrics."""

    policies: dict[str, dict[str, F1Policy]]
    curves: dict[str, list[StageRun]]


@dataclass(frozen=True)
class Evaluation:
    """The success cells of every policy and the reference cells (the lead-unaware expert)."""

    cells: list[Cell]
    references: list[Cell]


@dataclass(frozen=True)
class StateClones:
    """The state clones' reference cells and, per clone, how it was trained (``report.json``'s
    ``state_clones``)."""

    cells: list[Cell]
    training: list[dict[str, Any]]


class PhaseClock:
    """Wall time of the named phases of the run."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        begun = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - begun

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def run_demo(
    out_dir: str | Path = "runs/demo",
    budget: DemoBudget | str = "full",
    *,
    pretrained: str | Path | PretrainedDemo | None = None,
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
        pretrained: None runs every phase from scratch. A directory of shipped checkpoints
            (:func:`f1.demo.pretrain_demo`, checked against ``budget`` by :func:`f1.demo.load_pretrained`
            before anything else runs; or the :class:`f1.demo.PretrainedDemo` that function returned)
            replaces the gripper's demonstrations, the tokenizer and stages I-II by its stage-II policies;
            the run then records the arm, trains stage III on it for ``budget.adaptation_seconds`` and
            evaluates as from scratch.
        seed: seeds policy initialisation, batch order and sampling.
        progress: progress bars.
        threads: torch intra-op threads per process (1 is fastest on a busy 2-core machine; None leaves
            torch's choice in this process and uses 1 in the training workers).
        workers: processes that train the three policies side by side (default: one per core, at most 3;
            1 trains them one after the other in this process). The results do not depend on it.
    """
    budget = demo_budget(budget)
    source = pretrained
    if source is not None and not isinstance(source, PretrainedDemo):
        source = load_pretrained(source, budget)
    if threads is not None:
        torch.set_num_threads(threads)
    clock = PhaseClock()
    out = Path(out_dir)
    run = fresh_run(out / "work", seed, workers, threads, progress)

    if source is None:
        with clock.phase("demonstrations"):
            demonstrations = record_phase(budget, run)
        configs = policy_configs(demonstrations, budget.resolution)
        seconds: dict[str, float] = {}
        if budget.sizes_steps:
            with clock.phase("calibration"):
                seconds = calibration_phase(configs, demonstrations, budget, run)
        steps = training_steps(budget, seconds, run.workers)
        with clock.phase("tokenizer"):
            initial = tokenizer_phase(configs, demonstrations, budget, run)
        log.info(
            "steps per policy: %d (stages %s); seconds per step %s", steps.per_policy, steps.stages, seconds
        )
        with clock.phase("training"):
            trained = training_phase(initial, steps, demonstrations, budget, run)
        tokenizer_metrics = run.work / "tokenizer"
    else:
        with clock.phase("demonstrations"):
            demonstrations = record_phase(budget, run, ("arm",))
        with clock.phase("pretrained"):
            initial, configs = pretrained_phase(source, demonstrations, run)
        seconds = {}
        if budget.sizes_steps:
            with clock.phase("calibration"):
                probes = adaptation_probes(configs, demonstrations.roots["arm"], budget)
                seconds = measure_in_workers(probes, workers=run.workers, threads=run.threads)
        third = (
            adaptation_steps_within(budget, seconds, run.workers) if budget.sizes_steps else budget.max_steps
        )
        first, second = source.stage_steps
        steps = TrainingSteps(first + second + third, (first, second, third), seconds)
        log.info("stage III steps per policy: %d; seconds per step %s", third, seconds)
        with clock.phase("training"):
            trained = adaptation_phase(source, initial, steps, demonstrations, budget, run)
        tokenizer_metrics = source.tokenizer_metrics
    with clock.phase("evaluation"):
        evaluation = evaluation_phase(trained, budget, run)
    with clock.phase("state_clones"):
        clones = state_clone_phase(budget, run)
    with clock.phase("counterfactual"):
        counterfactual = counterfactual_phase(trained, evaluation, budget, run)
    return report_phase(
        out,
        budget,
        demonstrations,
        steps,
        trained,
        evaluation,
        clones,
        counterfactual,
        configs["f1"],
        clock,
        run,
        tokenizer_metrics,
        source,
    )


def fresh_run(work: Path, seed: int, workers: int | None, threads: int | None, progress: bool) -> RunSettings:
    """The run's settings, with ``work`` emptied."""
    run = RunSettings(
        work=work,
        seed=seed,
        workers=default_workers(len(MODES)) if workers is None else workers,
        threads=threads or 1,
        progress=progress,
    )
    if run.work.exists():
        shutil.rmtree(run.work)
    run.work.mkdir(parents=True)
    return run


def record_phase(
    budget: DemoBudget, run: RunSettings, embodiments: tuple[str, ...] = EMBODIMENTS
) -> Demonstrations:
    """Expert demonstrations of ``embodiments`` on both variants, one dataset each under ``work/data``."""
    episodes = {"gripper": budget.gripper_episodes, "arm": budget.arm_episodes}
    recorded = {
        name: record_demonstrations(
            run.work / "data" / name,
            budget.task,
            name,
            VARIANTS,
            episodes[name],
            perturbation=budget.perturbation,
            approach_margin=budget.approach_margin,
            progress=run.progress,
        )
        for name in embodiments
    }
    return Demonstrations(recorded, {name: LeRobotDataset(r.root) for name, r in recorded.items()})


def policy_configs(demonstrations: Demonstrations, resolution: int) -> dict[str, F1Config]:
    """The demo policy in every mode, with the recorded embodiments normalized by their datasets'
    statistics."""
    data = demonstrations.datasets
    fps = float(data["gripper"].fps)
    embodiments = tuple(
        embodiment_from_stats(name, data[name].stats or data[name].compute_stats(), fps)
        for name in EMBODIMENTS
        if name in data
    )
    return {mode: demo_policy_config(mode, resolution, embodiments) for mode in MODES}


def calibration_phase(
    configs: Mapping[str, F1Config],
    demonstrations: Demonstrations,
    budget: DemoBudget,
    run: RunSettings,
) -> dict[str, float]:
    """Seconds per training step of each :func:`f1.demo.budget.step_probes`, timed in the workers."""
    probes = step_probes(configs, demonstrations.roots["gripper"], budget)
    return measure_in_workers(probes, workers=run.workers, threads=run.threads)


def tokenizer_phase(
    configs: Mapping[str, F1Config],
    demonstrations: Demonstrations,
    budget: DemoBudget,
    run: RunSettings,
) -> InitialPolicies:
    """The untrained policies (seeded, in the order of ``MODES``), the first one that encodes frames with its
    VQ-VAE trained on the gripper frames and the others with a copy of it; each saved under
    ``work / "init"``. Every demonstration frame is then encoded once by that tokenizer (``work / "codes"``)
    for the training windows of the policies that read frames."""
    torch.manual_seed(run.seed)
    policies = {mode: F1Policy(configs[mode]) for mode in MODES}
    encoders = [frame_tokenizer(p) for p in policies.values() if p.config.has_history]
    threads_before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # nothing else runs meanwhile
    try:
        train_tokenizer(
            encoders[0],
            demonstrations.datasets["gripper"],
            camera_key(CAMERA),
            steps=budget.tokenizer_steps,
            batch_size=budget.tokenizer_batch,
            seed=run.seed,
            output_dir=run.work / "tokenizer",
            progress=run.progress,
        )
    finally:
        torch.set_num_threads(threads_before)
    for other in encoders[1:]:
        other.load_state_dict(encoders[0].state_dict())
    saved = {}
    for mode, policy in policies.items():
        saved[mode] = run.work / "init" / mode
        policy.save(saved[mode])
    encoding = next(p for p in policies.values() if p.config.has_history)
    codes = {}
    for name, dataset in demonstrations.datasets.items():
        codes[name] = dataset_codes(encoding, dataset).save(run.work / "codes" / f"{name}.safetensors")
    return InitialPolicies(saved, codes)


def train_schedules(
    initial: InitialPolicies,
    schedules: Mapping[str, tuple[StageJob, ...]],
    seconds: Mapping[str, float],
    run: RunSettings,
) -> list[TrainingJob]:
    """Each mode's saved initial policy through its schedule, on ``run.workers`` processes (the costliest
    first, by the measured ``seconds`` per step); every stage leaves its policy and metrics under
    ``work / "runs" / mode``. Returns the jobs, to find them there."""
    jobs = [
        TrainingJob(
            name=mode,
            initial=initial.policies[mode],
            stages=schedule,
            runs=run.work / "runs" / mode,
            seed=run.seed,
            cost=job_seconds(mode, schedule, seconds),
        )
        for mode, schedule in schedules.items()
    ]
    train_jobs(jobs, workers=run.workers, threads=run.threads, progress=run.progress)
    return jobs


def training_phase(
    initial: InitialPolicies,
    steps: TrainingSteps,
    demonstrations: Demonstrations,
    budget: DemoBudget,
    run: RunSettings,
) -> TrainedPolicies:
    """Every policy through its stages (:func:`f1.demo.budget.stage_schedule`) on ``workers`` processes."""
    schedules = {
        mode: stage_schedule(mode, steps.stages, budget, demonstrations.roots, initial.codes)
        for mode in initial.policies
    }
    jobs = train_schedules(initial, schedules, steps.seconds_per_step, run)
    return TrainedPolicies(
        policies={
            job.name: {s.name: F1Policy.load(job.stage_dir(s.name) / "policy") for s in job.stages}
            for job in jobs
        },
        curves={job.name: job.stage_runs() for job in jobs},
    )


def pretrained_phase(
    source: PretrainedDemo, demonstrations: Demonstrations, run: RunSettings
) -> tuple[InitialPolicies, dict[str, F1Config]]:
    """The shipped stage-II policies with the arm added (a fresh adapter normalized by the arm's
    demonstrations, seeded), saved under ``work / "init"``; the arm's frames encoded once by their shared
    tokenizer (``work / "codes"``). Returns the policies and their configurations."""
    arm = demonstrations.datasets["arm"]
    embodiment = embodiment_from_stats("arm", arm.stats or arm.compute_stats(), float(arm.fps))
    policies = {}
    for mode in MODES:
        torch.manual_seed(run.seed)
        policy = source.load_policy(mode)
        policy.add_embodiment(embodiment)
        policies[mode] = policy
    encoders = [frame_tokenizer(p) for p in policies.values() if p.config.has_history]
    reference = encoders[0].state_dict()
    for other in encoders[1:]:  # stage I-II keep the tokenizer frozen: one set of codes serves all
        if any(not torch.equal(value, reference[key]) for key, value in other.state_dict().items()):
            raise ValueError(f"pretrained: {source.directory}: the policies' VQ-VAE tokenizers differ")
    saved = {}
    for mode, policy in policies.items():
        saved[mode] = run.work / "init" / mode
        policy.save(saved[mode])
    encoding = next(p for p in policies.values() if p.config.has_history)
    codes = {"arm": dataset_codes(encoding, arm).save(run.work / "codes" / "arm.safetensors")}
    return InitialPolicies(saved, codes), {mode: p.config for mode, p in policies.items()}


def adaptation_phase(
    source: PretrainedDemo,
    initial: InitialPolicies,
    steps: TrainingSteps,
    demonstrations: Demonstrations,
    budget: DemoBudget,
    run: RunSettings,
) -> TrainedPolicies:
    """Every policy through ``steps.stages[2]`` stage-III steps on the arm from its shipped stage-II
    checkpoint, on ``workers`` processes; the stage-II policies are the shipped ones."""
    arm, codes = demonstrations.roots["arm"], initial.codes.get("arm")
    schedules = {
        mode: adaptation_schedule(mode, steps.stages[2], budget, arm, codes) for mode in initial.policies
    }
    jobs = train_schedules(initial, schedules, steps.seconds_per_step, run)
    policies, curves = {}, {}
    for job in jobs:
        policies[job.name] = {
            "II": source.load_policy(job.name),
            "III": F1Policy.load(job.stage_dir("III") / "policy"),
        }
        stage_iii = StageRun("III", job.stage_dir("III"), source.pretrained_steps(job.name))
        curves[job.name] = [*source.stage_runs(job.name), stage_iii]
    return TrainedPolicies(policies=policies, curves=curves)


def evaluation_phase(trained: TrainedPolicies, budget: DemoBudget, run: RunSettings) -> Evaluation:
    """Every policy on every cell (gripper cells with the stage-II policies, arm cells with stage III), and
    the scripted expert aiming at the object's current position (no interception) on the dynamic cells:
    how much success on the conveyor needs a prediction of the motion."""

    def cell(agent: Agent, name: str, embodiment: str, variant: str) -> Cell:
        return _evaluate_cell(agent, name, embodiment, variant, budget, run)

    cells: list[Cell] = []
    for embodiment, variant in CELLS:
        stage = EVALUATION_STAGE[embodiment]
        agents: list[tuple[str, Agent]] = [
            (mode, PolicyAgent(trained.policies[mode][stage], mode, CAMERA, embodiment)) for mode in MODES
        ]
        agents += [
            ("expert", ExpertAgent(approach_margin=budget.approach_margin)),
            ("random", RandomAgent()),
        ]
        cells += [cell(agent, name, embodiment, variant) for name, agent in agents]
    references = [
        cell(ExpertAgent(LEAD_UNAWARE, lead_aware=False), LEAD_UNAWARE, embodiment, "dynamic")
        for embodiment in EMBODIMENTS
    ]
    return Evaluation(cells, references)


def state_clone_phase(budget: DemoBudget, run: RunSettings) -> StateClones:
    """A behaviour clone of the expert on the privileged true state per cell, without and with the conveyor
    velocity (:func:`f1.eval.train_state_clone`, ``"train"`` seeds only), each evaluated on the cell's test
    seeds: the success single-frame information allows, and the success the motion adds."""
    cells: list[Cell] = []
    training: list[dict[str, Any]] = []
    for embodiment, variant in CELLS:
        for with_velocity in (False, True):
            clone = train_state_clone(
                table_task(budget.task, embodiment, variant),
                with_velocity=with_velocity,
                approach_margin=budget.approach_margin,
                episodes=budget.clone_episodes,
                steps=budget.clone_steps,
                seed=run.seed,
                progress=run.progress,
            )
            agent = StateCloneAgent(clone)
            cells.append(_evaluate_cell(agent, agent.name, embodiment, variant, budget, run))
            record = clone.training_record
            assert record is not None  # train_state_clone records it
            training.append(
                {
                    "policy": agent.name,
                    "embodiment": embodiment,
                    "variant": variant,
                    "with_velocity": with_velocity,
                    "episodes": record.episodes,
                    "samples": record.samples,
                    "steps": len(record.losses),
                    "final_loss": record.losses[-1],
                    "train_time_s": record.seconds,
                }
            )
    return StateClones(cells, training)


def counterfactual_phase(
    trained: TrainedPolicies, evaluation: Evaluation, budget: DemoBudget, run: RunSettings
) -> dict[str, Any] | None:
    """Does F1 use its foresight? On :data:`COUNTERFACTUAL_CELL`, with the policy evaluated there: open loop,
    the executed actions planned with the real future's tokens against another anchor's, the current
    frame's and the model's own (anchors: the first ``"val"`` seeds); closed loop, the success with its own
    foresight, a copied current frame and another episode's frames (the bank: the next ``"val"`` seeds) on
    the success table's test seeds, so that ``"own"`` repeats F1's cell there. None when the policy predicts
    no foresight."""
    embodiment, variant = COUNTERFACTUAL_CELL
    policy = trained.policies["f1"][EVALUATION_STAGE[embodiment]]
    if not policy.config.has_foresight:
        return None
    task = table_task(budget.task, embodiment, variant)
    val = seed_range("val")
    anchors = list(val[: budget.counterfactual_anchors])
    bank = list(
        val[budget.counterfactual_anchors : budget.counterfactual_anchors + budget.counterfactual_bank]
    )
    seeds = list(seed_range("test")[: budget.eval_episodes])
    began = time.perf_counter()
    change = foresight_action_change(policy, task, CAMERA, anchors, seed=run.seed)
    open_loop_s = time.perf_counter() - began
    success = counterfactual_success(
        policy,
        _env_factory(budget, embodiment, variant),
        seeds,
        bank_seeds=bank,
        task=task,
        camera=CAMERA,
        embodiment=embodiment,
        batch_size=budget.eval_batch,
        progress=run.progress,
        seed=run.seed,
    )
    own = success.results["own"]
    cell = next(
        c for c in evaluation.cells if (c.policy, c.embodiment, c.variant) == ("f1", embodiment, variant)
    )
    return {
        "policy": "f1",
        "stage": EVALUATION_STAGE[embodiment],
        "embodiment": embodiment,
        "variant": variant,
        "anchor_seeds": len(anchors),
        "bank_seeds": len(bank),
        "episodes": len(seeds),
        "action_change": change.to_dict(),
        "success": success.to_dict(),
        "own_matches_success_table": (own.successes, own.episodes) == (cell.successes, cell.episodes),
        "open_loop_time_s": open_loop_s,
        "closed_loop_time_s": time.perf_counter() - began - open_loop_s,
    }


def report_phase(
    out: Path,
    budget: DemoBudget,
    demonstrations: Demonstrations,
    steps: TrainingSteps,
    trained: TrainedPolicies,
    evaluation: Evaluation,
    clones: StateClones,
    counterfactual: dict[str, Any] | None,
    f1_config: F1Config,
    clock: PhaseClock,
    run: RunSettings,
    tokenizer_metrics: Path,
    pretrained: PretrainedDemo | None = None,
) -> DemoResult:
    """F1's foresight on held-out gripper-dynamic scenes, the figures, ``report.json`` and ``report.md``;
    ``tokenizer_metrics``: the directory of the VQ-VAE's ``metrics.jsonl``; ``pretrained``: the shipped
    checkpoints the run started from (None: from scratch)."""
    with clock.phase("report"):
        foresight = _foresight(trained.policies["f1"][EVALUATION_STAGE["gripper"]], budget, run.seed)
        files = write_figures(
            out,
            evaluation.cells,
            trained.curves,
            tokenizer_metrics,
            foresight,
            f1_config.generation.history_stride,
        )
    report = demo_report(
        budget=budget,
        cells=evaluation.cells,
        references=[*evaluation.references, *clones.cells],
        state_clones=clones.training,
        foresight=foresight,
        counterfactual=counterfactual,
        steps=steps,
        curves=trained.curves,
        recorded=demonstrations.recorded,
        phases=clock.phases,
        wall_time_s=clock.elapsed,
        seed=run.seed,
        pretrained=None if pretrained is None else pretrained.summary(),
    )
    report["wall_time_s"] = clock.elapsed
    files.update(write_report(out, report))
    return DemoResult(out_dir=out, report=report, files=files)


def _foresight(policy: F1Policy, budget: DemoBudget, seed: int) -> ForesightSamples:
    seeds = list(seed_range("val")[: budget.foresight_samples])
    return collect_foresight(policy, table_task(budget.task, "gripper", "dynamic"), CAMERA, seeds, seed=seed)


def _evaluate_cell(
    agent: Agent, name: str, embodiment: str, variant: str, budget: DemoBudget, run: RunSettings
) -> Cell:
    """``agent`` closed loop on the cell's held-out seeds (the ``"test"`` split), batched."""
    result = evaluate(
        agent,
        _env_factory(budget, embodiment, variant),
        list(seed_range("test")[: budget.eval_episodes]),
        batch_size=budget.eval_batch,
        progress=run.progress,
        description=f"eval {name} {embodiment} {variant}",
    )
    return Cell.from_result(result, name, variant, embodiment)


def _env_factory(budget: DemoBudget, embodiment: str, variant: str) -> Callable[[], TableTaskEnv]:
    task = table_task(budget.task, embodiment, variant)
    return lambda: TableTaskEnv(task)
