"""Training the demo's policies side by side: one worker process per core, one torch thread each.

The demo's policies are small, so a torch op rarely keeps more than one core busy; one process per core
keeps them all working (the speed-up measured in the committed full run is in
``docs/results/demo/NOTES.md``). Each job starts from a policy saved on disk (so initialisation does not
depend on how jobs are spread over workers), runs its stages with :func:`f1.demo.training.run_stage` and
leaves every stage's policy and metrics on disk; the results are the same as training the jobs one after
the other.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from f1.data import FrameCodes, LeRobotDataset
from f1.demo.training import StagePlan, measure_step_seconds, run_stage
from f1.model import F1Config, F1Policy
from f1.train import read_metrics

__all__ = [
    "StageJob",
    "StageRun",
    "StepProbe",
    "TrainingJob",
    "default_workers",
    "measure_in_workers",
    "plan_workers",
    "train_jobs",
]


@dataclass(frozen=True)
class StageJob:
    """One stage of a job: its name (``"I"``, ``"II"``, ``"III"``), dataset directory and plan, and the
    dataset's frame codes under the shared tokenizer (a :class:`f1.data.FrameCodes` file; None: encoded by
    the stage, or not needed by the mode)."""

    name: str
    dataset: Path
    plan: StagePlan
    codes: Path | None = None


class StageRun(NamedTuple):
    """Where a stage of a job left its metrics, and the job's step at which the stage began."""

    stage: str
    directory: Path
    first_step: int


@dataclass(frozen=True)
class TrainingJob:
    """A policy's whole schedule.

    Attributes:
        name: the policy's name (e.g. ``"f1"``).
        initial: directory of the saved untrained policy.
        stages: the stages, in order.
        runs: stage ``X`` writes its metrics and policy to ``runs / f"stage_{X}"``.
        seed: batch order and flow noise of every stage.
        cost: estimated seconds (for scheduling: the costliest jobs start first).
    """

    name: str
    initial: Path
    stages: tuple[StageJob, ...]
    runs: Path
    seed: int = 0
    cost: float = 1.0

    def stage_dir(self, stage: str) -> Path:
        return self.runs / f"stage_{stage}"

    @property
    def steps(self) -> int:
        return sum(stage.plan.steps for stage in self.stages)

    def stage_runs(self) -> list[StageRun]:
        """Every stage's metrics directory and first step, in order (for the training curves)."""
        runs, first = [], 0
        for stage in self.stages:
            runs.append(StageRun(stage.name, self.stage_dir(stage.name), first))
            first += stage.plan.steps
        return runs


@dataclass(frozen=True)
class StepProbe:
    """A timing of one training step: a fresh policy of ``config`` on ``dataset`` under ``plan``."""

    name: str
    config: F1Config
    dataset: Path
    plan: StagePlan
    steps: int = 3


def _measure(probe: StepProbe, threads: int) -> float:
    torch.set_num_threads(threads)
    return measure_step_seconds(probe.config, LeRobotDataset(probe.dataset), probe.plan, steps=probe.steps)


def measure_in_workers(
    probes: Sequence[StepProbe], *, workers: int = 2, threads: int = 1
) -> dict[str, float]:
    """Seconds per step of each probe, measured ``workers`` at a time (so that the timings include what
    the workers cost each other, as during :func:`train_jobs`)."""
    if workers < 1 or threads < 1:
        raise ValueError(f"workers, threads: expected positive ints, received {workers}, {threads}")
    if workers == 1:
        return {probe.name: _measure(probe, threads) for probe in probes}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {probe.name: pool.submit(_measure, probe, threads) for probe in probes}
        return {name: future.result() for name, future in futures.items()}


def plan_workers(costs: Sequence[float], workers: int) -> float:
    """Wall time of running jobs of the given ``costs`` on ``workers`` processes, costliest first, each to
    the worker that frees up first (what :func:`train_jobs` does)."""
    if workers < 1:
        raise ValueError(f"workers: expected a positive int, received {workers}")
    loads = [0.0] * workers
    for cost in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += cost
    return max(loads)


def _run_job(job: TrainingJob, threads: int) -> str:
    """Worker entry point: train ``job`` through its stages (every stage's policy is saved on disk)."""
    torch.set_num_threads(threads)
    policy = F1Policy.load(job.initial)
    for stage in job.stages:
        codes = FrameCodes.load(stage.codes) if stage.codes and policy.config.has_history else None
        policy = run_stage(
            policy,
            LeRobotDataset(stage.dataset),
            stage.plan,
            job.stage_dir(stage.name),
            seed=job.seed,
            codes=codes,
        )
    return job.name


def _logged_steps(job: TrainingJob) -> int:
    """Steps ``job`` has logged so far (its stages' ``metrics.jsonl``; read while the worker writes)."""
    done = 0
    for stage in job.stages:
        records = read_metrics(job.stage_dir(stage.name))
        last = int(records[-1]["step"]) if records else 0
        done += min(last, stage.plan.steps)
        if last < stage.plan.steps:
            break
    return done


def train_jobs(
    jobs: Sequence[TrainingJob],
    *,
    workers: int = 2,
    threads: int = 1,
    progress: bool = False,
    poll_seconds: float = 1.0,
) -> None:
    """Run ``jobs`` on ``workers`` processes (``workers=1``: in this process, one after the other).

    A progress bar counts the optimizer steps of all jobs. The first failing job's exception is raised
    after the other workers are stopped.
    """
    if workers < 1 or threads < 1:
        raise ValueError(f"workers, threads: expected positive ints, received {workers}, {threads}")
    ordered = sorted(jobs, key=lambda job: job.cost, reverse=True)
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(job.steps for job in ordered), desc="training", unit="step", disable=not progress)
    try:
        if workers == 1:
            for job in ordered:
                _run_job(job, threads)
                bar.update(job.steps)
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures: list[Future[str]] = [pool.submit(_run_job, job, threads) for job in ordered]
            try:
                while True:
                    finished, pending = wait(futures, timeout=poll_seconds, return_when=FIRST_EXCEPTION)
                    for future in finished:
                        future.result()  # raises the worker's exception
                    bar.n = sum(_logged_steps(job) for job in ordered)
                    bar.refresh()
                    if not pending:
                        break
            except BaseException:
                for future in futures:
                    future.cancel()
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
                raise
        bar.n = bar.total
        bar.refresh()
    finally:
        bar.close()


def default_workers(jobs: int) -> int:
    """Worker processes for ``jobs`` jobs on this machine: one per core, at most one per job."""
    return max(1, min(jobs, os.cpu_count() or 1))
