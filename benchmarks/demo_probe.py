"""One demo policy trained and evaluated alone: the probe behind the notes in ``docs/results/demo/NOTES.md``.

It records the scripted expert's gripper demonstrations (``"train"`` seeds, DART perturbation) of the
chosen variants on the demo's task with the given field overrides, trains one policy of the demo's
configuration (:func:`f1.demo.policy.demo_policy_config`, gripper only) through the demo's stage-II
recipe (the library's trainer; batch, lr, warm-up 10%, cosine to 0.1; the controls train the flow loss
only), and runs it closed loop on ``--eval-episodes`` validation-split episodes (``seed_range("val")``,
never ``"test"``) of each variant. It prints a table with Wilson 95% intervals and writes JSON with every
setting, so a probe in the notes is one command.

Usage:
    python benchmarks/demo_probe.py --out runs/probe.json                       # No-Gen, both variants
    python benchmarks/demo_probe.py --train-variants static --out runs/static.json
    python benchmarks/demo_probe.py --task '{"belt_sensor": true}' --steps 6000 --out runs/belt.json
    python benchmarks/demo_probe.py --mode history_no_foresight --out runs/hnf.json
    python benchmarks/demo_probe.py --approach-margin 0.08 --out runs/approach.json

Modes that read frames (``f1``, ``history_no_foresight``) first train the demo's VQ-VAE on the recorded
frames (``--tokenizer-steps``, on every core). One torch thread for the policy; run at most two probes at
a time on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from f1.data import LeRobotDataset
from f1.demo import CAMERA, DEMO_TASK, record_demonstrations, table_task
from f1.demo.policy import demo_policy_config, embodiment_from_stats
from f1.demo.training import StagePlan, dataset_codes, frame_tokenizer, run_stage, train_tokenizer
from f1.envs import VARIANTS, TableTaskEnv, make_expert, seed_range
from f1.eval import PolicyAgent, evaluate
from f1.keys import camera_key
from f1.model import F1Policy
from f1.model.config import MODES

EMBODIMENT = "gripper"


def _task(text: str) -> dict[str, Any]:
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"--task: expected a JSON object of TableTaskConfig fields, received {text!r}: {error}"
        ) from None
    if not isinstance(overrides, dict):
        raise ValueError(f"--task: expected a JSON object, received {text!r}")
    task = {**DEMO_TASK, **overrides}
    for variant in VARIANTS:
        try:
            table_task(task, EMBODIMENT, variant)
        except ValueError as error:
            raise ValueError(f"--task: {error}") from None
    return task


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def run_probe(args: argparse.Namespace, task: dict[str, Any], work: Path) -> dict[str, Any]:
    """Record, train and evaluate as the module docstring says (``task``: the demo's task with ``--task``
    on it, from :func:`_task`); returns the JSON record."""
    commit = _commit()  # at the start: the checkout may move while a long probe runs
    started = time.perf_counter()
    recorded = record_demonstrations(
        work / "data",
        task,
        EMBODIMENT,
        args.train_variants,
        args.episodes,
        perturbation=args.perturbation,
        approach_margin=args.approach_margin,
        progress=args.progress,
    )
    dataset = LeRobotDataset(recorded.root)
    embodiment = embodiment_from_stats(
        EMBODIMENT, dataset.stats or dataset.compute_stats(), float(dataset.fps)
    )
    config = demo_policy_config(args.mode, task["resolution"], (embodiment,))
    torch.manual_seed(args.seed)
    policy = F1Policy(config)
    codes = None
    tokenizer_s = 0.0
    if config.has_history:
        tokenizer_started = time.perf_counter()
        threads = torch.get_num_threads()
        torch.set_num_threads(os.cpu_count() or 1)
        try:
            train_tokenizer(
                frame_tokenizer(policy),
                dataset,
                camera_key(CAMERA),
                steps=args.tokenizer_steps,
                batch_size=32,
                seed=args.seed,
                progress=args.progress,
            )
        finally:
            torch.set_num_threads(threads)
        codes = dataset_codes(policy, dataset)
        tokenizer_s = time.perf_counter() - tokenizer_started
    weights = None if args.mode == "f1" else {"flow": 1.0}
    plan = StagePlan(2, args.steps, args.batch_size, args.lr, weights)
    train_started = time.perf_counter()
    policy = run_stage(
        policy, dataset, plan, work / "run", seed=args.seed, progress=args.progress, codes=codes
    )
    train_s = time.perf_counter() - train_started
    cells = {}
    for variant in VARIANTS:
        env_task = table_task(task, EMBODIMENT, variant)
        result = evaluate(
            PolicyAgent(policy, args.mode, CAMERA, EMBODIMENT),
            lambda env_task=env_task: TableTaskEnv(env_task),
            list(seed_range("val")[: args.eval_episodes]),
            batch_size=args.eval_episodes,
            progress=args.progress,
            description=f"eval {variant}",
        )
        cells[variant] = {
            "successes": result.successes,
            "episodes": result.episodes,
            "wilson95": list(result.ci95),
            "grasped": sum(result.grasped),
        }
    return {
        "mode": args.mode,
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "train_variants": list(args.train_variants),
        "episodes_per_variant": args.episodes,
        "perturbation": args.perturbation,
        "approach_margin": args.approach_margin,
        "tokenizer_steps": args.tokenizer_steps if config.has_history else None,
        "task": {k: list(v) if isinstance(v, tuple) else v for k, v in task.items()},
        "eval_split": "val",
        "cells": cells,
        "seconds": {
            "total": time.perf_counter() - started,
            "tokenizer": tokenizer_s,
            "train": train_s,
        },
        "commit": commit,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=MODES, default="no_gen")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--episodes", type=int, default=150, help="demonstrations per training variant")
    parser.add_argument("--perturbation", type=float, default=0.1)
    parser.add_argument(
        "--approach-margin",
        type=float,
        default=None,
        help="the expert approaches the object's current position until this close to its height "
        "(f1.envs.ScriptedExpert's approach_margin; default: intercept from the first step)",
    )
    parser.add_argument("--tokenizer-steps", type=int, default=1500)
    parser.add_argument("--eval-episodes", type=int, default=50, help="validation episodes per variant")
    parser.add_argument("--task", default="{}", help="JSON object of TableTaskConfig fields over DEMO_TASK")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "episodes", "tokenizer_steps", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(
                f"--{name.replace('_', '-')}: expected a positive integer, received {getattr(args, name)}"
            )
    try:
        task = _task(args.task)
    except ValueError as error:
        parser.error(str(error))
    try:  # the expert's own check of the margin, before anything is recorded
        make_expert(
            TableTaskEnv(table_task(task, EMBODIMENT, "dynamic")), approach_margin=args.approach_margin
        )
    except ValueError as error:
        parser.error(f"--approach-margin: {error}")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="demo_probe_") as work:
        record = run_probe(args, task, Path(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{'variant':<10}{'success':>10}{'95% interval':>18}")
    for variant, cell in record["cells"].items():
        low, high = cell["wilson95"]
        rate = cell["successes"] / cell["episodes"]
        print(f"{variant:<10}{rate:>9.0%}{f'[{low:.0%}, {high:.0%}]':>18}")
    print(f"train {record['seconds']['train']:.0f} s, total {record['seconds']['total']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
