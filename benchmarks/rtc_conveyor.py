"""Real-time chunking on the conveyor: success and the action jump at chunk boundaries under inference delay.

The embedded table task's dynamic variant (objects ride a conveyor; the demo's task, ``f1.demo.DEMO_TASK``)
with a simulated inference delay of ``d`` control steps: one inference takes ``d`` steps, during which
the world goes on. Three ways to execute a chunking policy, every one on the same held-out seeds:

- ``sync`` (naive chunk switching): the policy plans when the ``s`` actions it executes from a chunk are
  used up; while it plans, the robot holds for ``d`` steps and the conveyor keeps moving. *Hold* means zero
  velocity in the motion dimensions and the last grip command repeated in the grip dimension (both
  embodiments' actions are velocities ``(dx, dy, grip)`` / ``(dq1, dq2, grip)``; ``grip > 0`` closes), so a
  held gripper neither moves nor drops or grasps anything. The robot loop does not run during a
  synchronous inference, so the policy sees no frame of those ``d`` steps.
- ``async`` (naive asynchronous): ``F1Policy.set_execution("async", inference_delay=d)``: the next chunk's
  inference starts from the observation at which ``d`` actions are left; they execute, then the new
  chunk takes over from its step ``d``.
- ``rtc``: the same schedule, the new chunk inpainted toward the old one's remaining actions (real-time
  chunking, ``action.rtc`` settings of the policy).

Each chunk executes ``s = max(action.n_action_steps, d)`` actions (one inference at a time needs
``s >= d``; the chunk must hold steps ``[d, d + s)``). The episode's first chunk is computed before the
episode's first step, for every method (no hold). Per method and delay it reports the success rate with a
Wilson 95% interval and the mean L2 norm, in raw action units, between the last action executed from the
old chunk and the first from the new one (over every chunk boundary of every episode before it ended; for
``sync`` the hold steps lie between them), for the whole action and for the motion dimensions alone (the
grip command spans [-1, 1], the motions a few hundredths), beside the mean change between consecutive
actions inside a chunk for scale.

Episodes run ``--batch`` at a time in lockstep (``f1.eval.evaluate``); rounds of one batch per cell run
until ``--episodes`` or the time budget is reached, so every cell always has the same seeds.

Usage:
    python benchmarks/rtc_conveyor.py --policy work/runs/f1/stage_III/policy --out rtc_conveyor.json
    python benchmarks/rtc_conveyor.py --policy DIR --episodes 200 --batch 100 --budget-minutes 25
    python benchmarks/rtc_conveyor.py --policy DIR --delays 0 --methods sync   # no delay: the reference
    python benchmarks/rtc_conveyor.py --policy DIR --delays 1 --methods rtc --rtc-max-guidance 0
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from f1.demo import CAMERA, DEMO_TASK, table_task
from f1.envs import TableTaskEnv, seed_range
from f1.eval import wilson_interval
from f1.eval.agents import observations_to_batch
from f1.eval.rollouts import evaluate
from f1.model import F1Policy

METHODS = ("sync", "async", "rtc")
DEFAULT_POLICY = "work/runs/f1/stage_III/policy"


@dataclass
class _BatchLog:
    """What one batch of episodes executed: per step the actions ``(B, A)`` and whether they were a hold
    or the first action of a new chunk (the episode's first chunk excluded)."""

    seeds: list[int]
    actions: list[np.ndarray] = field(default_factory=list)
    hold: list[bool] = field(default_factory=list)
    boundary: list[bool] = field(default_factory=list)


class ExecutionAgent:
    """An :class:`f1.eval.agents.Agent` that executes an :class:`F1Policy` with a simulated inference delay.

    Args:
        policy: the policy (its execution mode is set here).
        method: ``"sync"``, ``"async"`` or ``"rtc"`` (see the module docstring).
        delay: ``d``, control steps one inference takes.
        horizon: ``s``, actions executed from each chunk.
        embodiment: the task's embodiment name.
    """

    def __init__(self, policy: F1Policy, method: str, delay: int, horizon: int, embodiment: str) -> None:
        self.policy, self.method, self.delay, self.horizon = policy, method, delay, horizon
        self.embodiment = embodiment
        self.name = f"{method}-d{delay}"
        self.logs: list[_BatchLog] = []

    def reset(self, envs: Sequence[TableTaskEnv], seeds: Sequence[int]) -> None:
        # the policy is shared by the cells: this cell's execution mode, then the batch's seed
        asynchronous = self.method != "sync"
        self.policy.set_execution(
            "sync" if not asynchronous else self.method,  # type: ignore[arg-type]
            inference_delay=self.delay if asynchronous else 0,
            execution_horizon=self.horizon,
        )
        self.policy.reset(seed=int(seeds[0]))
        self.logs.append(_BatchLog(list(seeds)))
        self._pending: np.ndarray | None = None  # sync: the new chunk's first action, after the hold
        self._hold_left = 0
        self._last: np.ndarray | None = None

    def _hold(self) -> np.ndarray:
        """Zero velocity, the last grip command kept."""
        assert self._last is not None
        hold = np.zeros_like(self._last)
        hold[:, -1] = self._last[:, -1]
        return hold

    @torch.no_grad()
    def act(self, observations: Sequence[Any]) -> np.ndarray:
        log = self.logs[-1]
        hold = boundary = False
        if self._hold_left:
            self._hold_left -= 1
            action, hold = self._hold(), True
        elif self._pending is not None:
            action, self._pending, boundary = self._pending, None, True
        else:
            before = self.policy.last_plan
            batch = observations_to_batch(observations, CAMERA, self.embodiment)
            action = self.policy.select_action(batch).float().cpu().numpy().reshape(len(observations), -1)
            # a new chunk took over (the episode's first call plans its first chunk: not a boundary)
            boundary = bool(log.actions) and self.policy.last_plan is not before
            if boundary and self.method == "sync" and self.delay:
                # the loop was blocked while the chunk was computed: the robot held still for d steps
                self._pending, self._hold_left = action, self.delay - 1
                action, hold, boundary = self._hold(), True, False
        if not hold:
            self._last = action
        log.actions.append(action)
        log.hold.append(hold)
        log.boundary.append(boundary)
        return action


def _jumps(logs: list[_BatchLog], steps_of: dict[int, int]) -> dict[str, list[float]]:
    """Boundary jumps (whole action and motion dimensions) and the within-chunk changes, per occurrence,
    over the steps each episode actually ran."""
    out: dict[str, list[float]] = {"jump": [], "jump_motion": [], "within": [], "within_motion": []}
    for log in logs:
        actions = np.stack(log.actions)  # (T, B, A)
        for b, seed in enumerate(log.seeds):
            last = None
            for t in range(min(steps_of[seed], len(actions))):
                if log.hold[t]:
                    continue
                if last is not None:
                    change = actions[t, b] - actions[last, b]
                    kind = "jump" if log.boundary[t] else "within"
                    if kind == "within" and last != t - 1:
                        last = t
                        continue
                    out[kind].append(float(np.linalg.norm(change)))
                    out[f"{kind}_motion"].append(float(np.linalg.norm(change[:-1])))
                last = t
    return out


def _mean_and_error(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    array = np.asarray(values)
    error = float(array.std(ddof=1) / np.sqrt(len(array))) if len(array) > 1 else None
    return float(array.mean()), error


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--policy", default=DEFAULT_POLICY, help="an F1Policy.save folder (default: %(default)s)"
    )
    parser.add_argument("--embodiment", default="gripper", choices=("gripper", "arm"))
    parser.add_argument("--delays", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--episodes", type=int, default=300, help="at most this many per cell")
    parser.add_argument("--batch", type=int, default=100, help="episodes run together in lockstep")
    parser.add_argument("--budget-minutes", type=float, default=25.0, help="no new round after this")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--rtc-max-guidance", type=float, help="override the policy's action.rtc.max_guidance"
    )
    parser.add_argument("--rtc-schedule", help="override the policy's action.rtc.schedule")
    parser.add_argument("--out", help="write the JSON report here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    policy = F1Policy.load(args.policy).eval()
    overrides = {
        f"action.rtc.{key}": value
        for key, value in (("max_guidance", args.rtc_max_guidance), ("schedule", args.rtc_schedule))
        if value is not None
    }
    if overrides:  # the settings are read at every plan: a new config on the same weights
        policy.model.config = policy.config.with_overrides(overrides)
    chunk, n_steps = policy.config.action.chunk_size, policy.config.action.n_action_steps
    task = table_task(DEMO_TASK, args.embodiment, "dynamic")
    seeds = list(seed_range("test")[: args.episodes])
    cells = [(method, delay) for delay in args.delays for method in args.methods]
    horizons = {delay: max(n_steps, delay) for delay in args.delays}
    agents = {
        (method, delay): ExecutionAgent(policy, method, delay, horizons[delay], args.embodiment)
        for method, delay in cells
    }
    results: dict[tuple[str, int], list[Any]] = {cell: [] for cell in cells}
    started = time.perf_counter()
    round_seconds = 0.0
    done = 0
    while done < len(seeds):
        elapsed = time.perf_counter() - started
        if done and elapsed + round_seconds > args.budget_minutes * 60:
            break
        round_start = time.perf_counter()
        batch_seeds = seeds[done : done + args.batch]
        for cell in cells:
            agent = agents[cell]
            result = evaluate(agent, lambda: TableTaskEnv(task), batch_seeds, batch_size=args.batch)
            results[cell].append(result)
            print(
                f"  {agent.name}: {result.successes}/{result.episodes} ({result.wall_time_s:.0f} s)",
                flush=True,
            )
        done += len(batch_seeds)
        round_seconds = time.perf_counter() - round_start
        print(f"round: {done} episodes per cell, {time.perf_counter() - started:.0f} s", flush=True)

    rows = []
    for method, delay in cells:
        parts = results[(method, delay)]
        successes = sum(r.successes for r in parts)
        episodes = sum(r.episodes for r in parts)
        steps_of = {seed: steps for r in parts for seed, steps in zip(r.seeds, r.steps)}
        jumps = _jumps(agents[(method, delay)].logs, steps_of)
        row: dict[str, Any] = {
            "method": method,
            "delay": delay,
            "execution_horizon": horizons[delay],
            "episodes": episodes,
            "successes": successes,
            "success_rate": successes / episodes,
            "ci95": list(wilson_interval(successes, episodes)),
            "boundaries": len(jumps["jump"]),
            "wall_time_s": sum(r.wall_time_s for r in parts),
        }
        for key in ("jump", "jump_motion", "within", "within_motion"):
            row[f"mean_{key}"], row[f"mean_{key}_stderr"] = _mean_and_error(jumps[key])
        rows.append(row)

    print(
        f"\n{args.policy}: {args.embodiment} dynamic, chunk {chunk}, "
        f"{rows[0]['episodes']} held-out episodes per cell"
    )
    columns = [
        "d",
        "s",
        "method",
        "success % [95% CI]",
        "boundary jump",
        "motion jump",
        "within-chunk change",
    ]
    print("| " + " | ".join([*columns, "boundaries"]) + " |")
    print("|" + "---|" * 8)
    for row in rows:
        low, high = row["ci95"]
        print(
            f"| {row['delay']} | {row['execution_horizon']} | {row['method']} | "
            f"{100 * row['success_rate']:.1f} [{100 * low:.1f}, {100 * high:.1f}] | "
            f"{_number(row['mean_jump'])} | {_number(row['mean_jump_motion'])} | "
            f"{_number(row['mean_within'])} | {row['boundaries']} |"
        )
    report = {
        "benchmark": "rtc_conveyor",
        "policy": str(args.policy),
        "mode": policy.config.mode,
        "task": task.to_dict(),
        "chunk_size": chunk,
        "n_action_steps": n_steps,
        "rtc": {
            "execution_horizon": policy.config.action.rtc.execution_horizon,
            "max_guidance": policy.config.action.rtc.max_guidance,
            "schedule": policy.config.action.rtc.schedule,
        },
        "hold": "zero velocity in the motion dimensions, the last grip command repeated",
        "seeds": [seeds[0], seeds[0] + rows[0]["episodes"] - 1],
        "batch": args.batch,
        "threads": args.threads,
        "budget_minutes": args.budget_minutes,
        "wall_time_s": time.perf_counter() - started,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "commit": _commit(),
        "rows": rows,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    main()
