"""Benchmark of the embedded table tasks: simulation speed and scripted-expert success.

For every embodiment x variant it measures
  * steps per second of one process stepping random actions, rendering included, at each requested
    resolution: per CPU-second of the process (the speed of one core, robust to a shared machine) and
    per wall-clock second (median and best of a few repeats);
  * the scripted expert's success over N held-out episodes (seeds from ``seed_range("test")``) and
    its mean episode length; on the conveyor also the lead-unaware expert's success, which shows how
    much success depends on predicting the object's motion.

Usage:
    python benchmarks/envs_bench.py                      # 200 episodes, throughput at 32/64/128 px
    python benchmarks/envs_bench.py --episodes 40 --out runs/envs_bench.json
    python benchmarks/envs_bench.py --task demo          # the task `f1 demo` uses (f1.demo.DEMO_TASK)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from f1.envs import EMBODIMENTS, VARIANTS, TableTaskEnv, make_env, make_expert, rollout, seed_range


def task_overrides(task: str) -> dict[str, object]:
    """``make_env`` keyword arguments of a named task: the family's defaults, or the demo's task."""
    if task == "default":
        return {}
    from f1.demo import DEMO_TASK

    return {k: v for k, v in DEMO_TASK.items() if k != "resolution"}


def build_env(embodiment: str, variant: str, resolution: int, task: str) -> TableTaskEnv:
    return make_env(embodiment, variant, resolution, **task_overrides(task))


def steps_per_second(
    embodiment: str, variant: str, resolution: int, steps: int, repeats: int, task: str = "default"
) -> dict[str, list[float]]:
    """Steps per second of random-action stepping (reset on episode end included), one per repeat.

    ``"cpu"`` divides by this process's CPU time (steps per second of one core, robust to other load
    on a shared machine); ``"wall"`` divides by elapsed time.
    """
    env = build_env(embodiment, variant, resolution, task)
    rng = np.random.default_rng(0)
    actions = [env.action_space.sample(rng) for _ in range(steps)]
    rates: dict[str, list[float]] = {"cpu": [], "wall": []}
    for repeat in range(repeats):
        env.reset(seed=repeat)
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        rates["cpu"].append(steps / (time.process_time() - cpu_start))
        rates["wall"].append(steps / (time.perf_counter() - wall_start))
    return rates


def expert_success(
    embodiment: str, variant: str, episodes: int, lead_aware: bool, task: str = "default"
) -> dict[str, float]:
    """Success rate and mean episode length of the scripted expert over held-out seeds."""
    env = build_env(embodiment, variant, 64, task)
    expert = make_expert(env, lead_aware=lead_aware)
    seeds = seed_range("test")[:episodes]
    records = [rollout(env, expert.act, seed=seed) for seed in seeds]
    return {
        "episodes": episodes,
        "success_rate": float(np.mean([r["success"] for r in records])),
        "mean_length": float(np.mean([len(r["action"]) for r in records])),
    }


def _rate_cell(rates: dict[str, dict[str, float]]) -> str:
    return f"{rates['cpu']['median']:.0f} | {rates['wall']['median']:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=200, help="expert episodes per embodiment x variant")
    parser.add_argument("--steps", type=int, default=5000, help="random steps per throughput repeat")
    parser.add_argument("--repeats", type=int, default=3, help="throughput repeats")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument(
        "--task",
        choices=("default", "demo"),
        default="default",
        help="the task family's defaults, or the task `f1 demo` uses",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    rows = []
    for embodiment in EMBODIMENTS:
        for variant in VARIANTS:
            row: dict[str, object] = {"embodiment": embodiment, "variant": variant, "steps_per_second": {}}
            for resolution in args.resolutions:
                rates = steps_per_second(embodiment, variant, resolution, args.steps, args.repeats, args.task)
                row["steps_per_second"][str(resolution)] = {  # type: ignore[index]
                    clock: {"median": statistics.median(values), "best": max(values)}
                    for clock, values in rates.items()
                }
            row["expert"] = expert_success(embodiment, variant, args.episodes, True, args.task)
            if variant == "dynamic":
                row["lead_unaware_expert"] = expert_success(
                    embodiment, variant, args.episodes, False, args.task
                )
            rows.append(row)

    header = ["embodiment", "variant"] + [f"steps/s@{r}px cpu|wall" for r in args.resolutions]
    header += ["expert success", "mean length", "lead-unaware success"]
    lines = [header]
    for row in rows:
        expert = row["expert"]
        unaware = row.get("lead_unaware_expert")
        lines.append(
            [row["embodiment"], row["variant"]]
            + [_rate_cell(row["steps_per_second"][str(r)]) for r in args.resolutions]  # type: ignore[index]
            + [
                f"{expert['success_rate']:.3f} ({args.episodes} ep)",  # type: ignore[index]
                f"{expert['mean_length']:.1f}",  # type: ignore[index]
                f"{unaware['success_rate']:.3f}" if unaware else "-",  # type: ignore[index]
            ]
        )
    print(f"task: {args.task} {task_overrides(args.task)}")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()} on {os.cpu_count()} CPUs")
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)))

    if args.out is not None:
        machine = {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            # Other processes' load: wall-clock rates fall with it, CPU-second rates much less.
            "load_average_1_5_15min_at_end": list(os.getloadavg()),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"machine": machine, "settings": vars(args) | {"out": str(args.out)}, "results": rows}
        args.out.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
