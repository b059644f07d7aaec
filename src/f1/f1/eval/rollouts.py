"""Closed-loop evaluation: run an agent on held-out seeds, batched, and measure its success rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from f1.envs import TableTaskEnv
from f1.eval.agents import Agent
from f1.eval.intervals import wilson_interval

__all__ = ["EvaluationResult", "evaluate"]


@dataclass(frozen=True)
class EvaluationResult:
    """Success of one agent on one task over ``episodes`` seeds.

    Attributes:
        policy: the agent's name.
        episodes: number of episodes.
        successes: number of successful episodes.
        success_rate: ``successes / episodes``.
        ci95: Wilson 95% interval of the success probability.
        seeds: the episode seeds, in order.
        success: per-episode success, aligned with ``seeds``.
        steps: per-episode steps taken.
        grasped: per-episode whether the named object was grasped at some step (partial progress).
        wall_time_s: time the evaluation took.
    """

    policy: str
    episodes: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    seeds: tuple[int, ...] = field(repr=False)
    success: tuple[bool, ...] = field(repr=False)
    steps: tuple[int, ...] = field(repr=False)
    grasped: tuple[bool, ...] = field(default=(), repr=False)
    wall_time_s: float = 0.0

    @property
    def grasp_rate(self) -> float:
        """Share of episodes in which the named object was grasped (success needs more: the right bin)."""
        return sum(self.grasped) / max(1, len(self.grasped))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (without the per-episode lists)."""
        return {
            "policy": self.policy,
            "episodes": self.episodes,
            "successes": self.successes,
            "success_rate": self.success_rate,
            "ci95": list(self.ci95),
            "mean_steps": sum(self.steps) / max(1, len(self.steps)),
            "grasp_rate": self.grasp_rate,
            "wall_time_s": self.wall_time_s,
        }


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds: expected at least one episode seed")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"seeds: expected non-negative integers, received {bad[:5]}")
    if len(set(seeds)) != len(seeds):
        raise ValueError("seeds: expected distinct seeds (each episode once)")
    return seeds


def evaluate(
    agent: Agent,
    env_factory: Callable[[], TableTaskEnv],
    seeds: Sequence[int],
    *,
    batch_size: int = 100,
    progress: bool = False,
    description: str | None = None,
) -> EvaluationResult:
    """Run ``agent`` for one episode per seed in environments from ``env_factory``.

    Episodes run ``batch_size`` at a time in lockstep: the agent acts for the whole batch each step (one
    batched forward pass for a learned policy); an environment whose episode has ended keeps its last
    observation and its further actions are ignored. An episode succeeds when the environment reports
    ``info["success"]``; it ends on termination or at the environment's ``max_steps``.

    Args:
        agent: see :class:`f1.eval.agents.Agent`.
        env_factory: builds one environment (called ``min(batch_size, len(seeds))`` times).
        seeds: distinct ``reset`` seeds, e.g. ``seed_range("test")[:100]``.
        batch_size: episodes run together.
        progress: show a progress bar over episodes.
        description: progress bar label (default: the agent's name).

    Returns:
        :class:`EvaluationResult` with the Wilson 95% interval.
    """
    seeds = _check_seeds(seeds)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, received {batch_size!r}")
    started = time.perf_counter()
    envs = [env_factory() for _ in range(min(batch_size, len(seeds)))]
    success: list[bool] = []
    steps: list[int] = []
    grasped: list[bool] = []
    bar = tqdm(total=len(seeds), desc=description or agent.name, disable=not progress, leave=False)
    try:
        for first in range(0, len(seeds), batch_size):
            chunk = seeds[first : first + batch_size]
            chunk_success, chunk_steps, chunk_grasped = _run_batch(agent, envs[: len(chunk)], chunk)
            success += chunk_success
            steps += chunk_steps
            grasped += chunk_grasped
            bar.update(len(chunk))
    finally:
        bar.close()
    successes = sum(success)
    return EvaluationResult(
        policy=agent.name,
        episodes=len(seeds),
        successes=successes,
        success_rate=successes / len(seeds),
        ci95=wilson_interval(successes, len(seeds)),
        seeds=tuple(seeds),
        success=tuple(success),
        steps=tuple(steps),
        grasped=tuple(grasped),
        wall_time_s=time.perf_counter() - started,
    )


def _run_batch(
    agent: Agent, envs: list[TableTaskEnv], seeds: list[int]
) -> tuple[list[bool], list[int], list[bool]]:
    observations = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]
    agent.reset(envs, seeds)
    done = [False] * len(envs)
    success = [False] * len(envs)
    steps = [0] * len(envs)
    grasped = [False] * len(envs)
    while not all(done):
        actions = agent.act(observations)
        if len(actions) != len(envs):
            raise ValueError(
                f"agent {agent.name!r}: act returned {len(actions)} actions for {len(envs)} environments"
            )
        for i, env in enumerate(envs):
            if done[i]:
                continue
            observations[i], _, terminated, truncated, info = env.step(actions[i])
            steps[i] += 1
            grasped[i] = grasped[i] or bool(info.get("target_grasped", False))
            if terminated or truncated:
                done[i] = True
                success[i] = bool(info["success"])
    return success, steps, grasped
