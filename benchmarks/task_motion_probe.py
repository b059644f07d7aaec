"""Does the table task need motion information? State clones with and without the belt velocity, per setting.

For each candidate task setting (the :class:`f1.envs.TableTaskConfig` fields it sets on top of the demo's
task) and each embodiment it measures, on ``--episodes`` validation-split episodes (``seed_range("val")``,
never ``"test"``), the success of
  * the scripted expert on the static and the dynamic cell, and the lead-unaware expert on the dynamic one;
  * two behaviour clones on the privileged true state (:func:`f1.eval.train_state_clone`), one without the
    conveyor velocity (single-frame information) and one with it, on the dynamic cell;
with Wilson 95% intervals. Issue 14's point 1 asks: without velocity at most 45%, with it at least 95%, the
expert 100%, on both dynamic cells. It prints a table and writes JSON.

Usage:
    python benchmarks/task_motion_probe.py --candidates demo --out runs/task_motion.json
    python benchmarks/task_motion_probe.py --candidates missed_wide_r05\
        --clone-episodes 400 --clone-steps 6000
    python benchmarks/task_motion_probe.py --list
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from f1.envs import EMBODIMENTS, TableTaskConfig, TableTaskEnv, seed_range
from f1.eval import ExpertAgent, StateCloneAgent, evaluate, train_state_clone

DEMO_TASK: dict[str, Any] = {
    "resolution": 64,
    "num_objects": 1,
    "num_bins": 1,
    "grasp_radius": 0.075,
    "object_size": 0.15,
    "conveyor_speed_range": (0.06, 0.10),
}
"""A copy of ``f1.demo.DEMO_TASK`` as of this probe (the probe must not change when the demo's task does)."""

CANDIDATES: dict[str, dict[str, Any]] = {
    "demo": {},
    # Without wrap-around the object passes once; the end effector (0.04 per step) must be able to get
    # ahead of it in either direction from one start, so the belt must be slower than the end effector.
    "no_wrap_slow": {"conveyor_wraps": False, "conveyor_speed_range": (0.02, 0.035), "max_steps": 60},
    "no_wrap_slow_r02": {
        "conveyor_wraps": False,
        "conveyor_speed_range": (0.025, 0.035),
        "grasp_radius": 0.02,
        "missed_grasp_ends_episode": True,
    },
    "missed_wide_r04": {
        "conveyor_speed_range": (0.05, 0.12),
        "grasp_radius": 0.04,
        "missed_grasp_ends_episode": True,
        "max_steps": 45,
    },
    "missed_wide_r05": {
        "conveyor_speed_range": (0.05, 0.12),
        "grasp_radius": 0.05,
        "missed_grasp_ends_episode": True,
        "max_steps": 45,
    },
    "missed_wide_r06": {
        "conveyor_speed_range": (0.05, 0.12),
        "grasp_radius": 0.06,
        "missed_grasp_ends_episode": True,
        "max_steps": 45,
    },
    "missed_fast_r06": {
        "conveyor_speed_range": (0.07, 0.12),
        "grasp_radius": 0.06,
        "missed_grasp_ends_episode": True,
        "max_steps": 45,
    },
}
"""Named settings: the TableTaskConfig fields each sets on top of :data:`DEMO_TASK`."""


def measure(
    name: str,
    overrides: dict[str, Any],
    episodes: int,
    clone_episodes: int,
    clone_steps: int,
    seed: int,
    perturb_grip: bool = True,
    embodiments: tuple[str, ...] = EMBODIMENTS,
    hidden: int = 256,
) -> list[dict[str, Any]]:
    """One row per embodiment: the success rates (with Wilson intervals) of the setting ``overrides``."""
    seeds = list(seed_range("val")[:episodes])
    rows = []
    for embodiment in embodiments:
        fields = {**DEMO_TASK, **overrides, "embodiment": embodiment}
        dynamic = TableTaskConfig(**fields, variant="dynamic")
        static_fields = {k: v for k, v in fields.items() if k != "conveyor_wraps"}
        static = TableTaskConfig(**static_fields, variant="static")
        row: dict[str, Any] = {"candidate": name, "embodiment": embodiment, "task": dynamic.to_dict()}
        started = time.perf_counter()

        def rate(agent: Any, task: TableTaskConfig) -> dict[str, Any]:
            result = evaluate(agent, lambda: TableTaskEnv(task), seeds)
            return {"rate": result.success_rate, "ci95": list(result.ci95), "grasp_rate": result.grasp_rate}

        row["expert_static"] = rate(ExpertAgent(), static)
        row["expert_dynamic"] = rate(ExpertAgent(), dynamic)
        row["lead_unaware_dynamic"] = rate(ExpertAgent("lead_unaware", lead_aware=False), dynamic)
        for with_velocity in (False, True):
            clone = train_state_clone(
                dynamic,
                with_velocity=with_velocity,
                episodes=clone_episodes,
                steps=clone_steps,
                seed=seed,
                perturb_grip=perturb_grip,
                hidden=hidden,
            )
            key = "clone_velocity" if with_velocity else "clone_no_velocity"
            row[key] = rate(StateCloneAgent(clone), dynamic)
            row[key]["final_loss"] = clone.training_record.losses[-1] if clone.training_record else None
        row["seconds"] = time.perf_counter() - started
        row["meets_point_1"] = (
            row["clone_no_velocity"]["rate"] <= 0.45
            and row["clone_velocity"]["rate"] >= 0.95
            and row["expert_dynamic"]["rate"] == 1.0
        )
        print(format_row(row), flush=True)
        rows.append(row)
    return rows


def format_row(row: dict[str, Any]) -> str:
    def cell(key: str) -> str:
        low, high = row[key]["ci95"]
        return f"{100 * row[key]['rate']:5.1f} [{100 * low:4.1f}, {100 * high:5.1f}]"

    return (
        f"| {row['candidate']} | {row['embodiment']} | "
        f"{cell('clone_no_velocity')} | {cell('clone_velocity')} | "
        f"{100 * row['expert_dynamic']['rate']:.1f} | {100 * row['expert_static']['rate']:.1f} | "
        f"{cell('lead_unaware_dynamic')} | {'yes' if row['meets_point_1'] else 'no'} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default="demo", help="comma-separated names of CANDIDATES")
    parser.add_argument("--episodes", type=int, default=200, help="validation episodes per measurement")
    parser.add_argument("--clone-episodes", type=int, default=150)
    parser.add_argument("--clone-steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=256, help="width of the clones' hidden layers")
    parser.add_argument("--embodiments", default=",".join(EMBODIMENTS), help="comma-separated")
    parser.add_argument(
        "--keep-grip", action="store_true", help="DART perturbs only the motion (perturb_grip=False)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--list", action="store_true", help="print the candidates and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, overrides in CANDIDATES.items():
            print(f"{name}: {overrides}")
        return 0
    names = [n for n in args.candidates.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown or not names:
        print(
            f"--candidates: expected names among {list(CANDIDATES)}, received {unknown or names}",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.episodes <= 100_000:
        print(f"--episodes: expected an integer in [1, 100000], received {args.episodes}", file=sys.stderr)
        return 2
    embodiments = tuple(e for e in args.embodiments.split(",") if e)
    if not embodiments or any(e not in EMBODIMENTS for e in embodiments):
        print(
            f"--embodiments: expected names among {list(EMBODIMENTS)}, received {args.embodiments!r}",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(1)
    print(
        "| candidate | embodiment | clone without velocity | clone with velocity | expert dynamic | "
        "expert static | lead-unaware expert | meets point 1 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    rows = [
        row
        for name in names
        for row in measure(
            name,
            CANDIDATES[name],
            args.episodes,
            args.clone_episodes,
            args.clone_steps,
            args.seed,
            not args.keep_grip,
            embodiments,
            args.hidden,
        )
    ]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "episodes": args.episodes,
            "seeds": "seed_range('val')[:episodes]",
            "clone_episodes": args.clone_episodes,
            "clone_steps": args.clone_steps,
            "seed": args.seed,
            "perturb_grip": not args.keep_grip,
            "hidden": args.hidden,
            "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "rows": rows,
        }
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
