"""``f1 demo-pretrain``: stages I-II of the demo's three policies, trained once for the shipped checkpoints.

:func:`pretrain_demo` records the point gripper's demonstrations (static and conveyor, ``"train"`` seeds:
the pretraining set, apart from the evaluation's ``"test"`` seeds and the probes' ``"val"`` seeds), trains
the VQ-VAE tokenizer on them, trains F1 through stages I and II and the controls No-Gen and
History-No-Foresight through the same stage-II steps (``DemoBudget.pretrain_steps``, with the stage-II
recipe a run from scratch uses), side by side in worker processes, and writes the stage-II policies with
their training curves as a pretrained directory (:mod:`f1.demo.pretrained`). ``f1 demo`` starts stage III
on the arm from them.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from f1.demo.budget import DemoBudget, demo_budget, pretrain_schedule
from f1.demo.pretrained import PretrainedDemo, export_pretrained
from f1.demo.run import fresh_run, policy_configs, record_phase, tokenizer_phase, train_schedules
from f1.eval.report import machine_description

__all__ = ["pretrain_demo"]


def pretrain_demo(
    out_dir: str | Path = "pretrained/demo",
    budget: DemoBudget | str = "full",
    *,
    work_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
    workers: int | None = None,
) -> PretrainedDemo:
    """Train the demo's stages I-II once and write them to ``out_dir`` (see the module docstring).

    Args:
        out_dir: the pretrained directory to write (replaced in one rename when training is done).
        budget: a :class:`DemoBudget` or the name of one in :data:`f1.demo.DEMO_BUDGETS`; its task, expert,
            gripper demonstrations, tokenizer steps, batch, learning rate and ``pretrain_steps`` are used
            (a run from the directory checks that its own budget has the same).
        work_dir: demonstrations, tokenizer and training runs (replaced; default ``runs/demo-pretrain``).
        seed: seeds the initialisation, the batch order and the flow noise.
        progress: progress bars.
        threads: torch intra-op threads per process.
        workers: training processes (default: one per core, at most 3).
    """
    budget = demo_budget(budget)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir: {out} exists and is not a directory")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, received {seed!r}")
    work = Path(work_dir) if work_dir is not None else Path("runs") / "demo-pretrain"
    if work.resolve() == out.resolve():
        raise ValueError(f"work_dir: expected a directory apart from out_dir, received {work}")
    started = time.perf_counter()
    commit = _commit()  # the code that trains, before anything else can change the checkout
    run = fresh_run(work, seed, workers, threads, progress)
    demonstrations = record_phase(budget, run, ("gripper",))
    configs = policy_configs(demonstrations, budget.resolution)
    initial = tokenizer_phase(configs, demonstrations, budget, run)
    gripper_data, codes = demonstrations.roots["gripper"], initial.codes["gripper"]
    schedules = {
        mode: pretrain_schedule(mode, budget.pretrain_steps, budget, gripper_data, codes)
        for mode in initial.policies
    }
    jobs = train_schedules(initial, schedules, {}, run)
    gripper = demonstrations.recorded["gripper"]
    details = {
        "seed": seed,
        "data": {
            "gripper": {
                "episodes": gripper.episodes,
                "frames": gripper.frames,
                "variants": list(gripper.variants),
                "expert_success_rate": gripper.expert_success_rate,
                "seeds": "train",
            }
        },
        "wall_time_s": time.perf_counter() - started,
        "workers": run.workers,
        "commit": commit,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
    }
    return export_pretrained(
        out,
        budget,
        policies={job.name: job.stage_dir("II") / "policy" for job in jobs},
        stage_dirs={job.name: {s.name: job.stage_dir(s.name) for s in job.stages} for job in jobs},
        tokenizer_dir=run.work / "tokenizer",
        details=details,
    )


def _commit() -> str | None:
    """The checkout's commit this code runs from, ``-dirty`` when it has uncommitted changes (None outside
    a git checkout)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "describe", "--always", "--dirty", "--abbrev=7"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
