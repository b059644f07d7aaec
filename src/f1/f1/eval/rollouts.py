"""Closed-loop evaluation: run an agent (or a policy) on held-out seeds, batched, and measure its success
rate, in the embedded table tasks or, through a :class:`f1.eval.gym_adapter.GymAdapter`, in any gymnasium
environment."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from f1.envs import seed_range
from f1.eval.agents import Agent, LeRobotStylePolicy, PolicyAgent
from f1.eval.gym_adapter import GymAdapter, GymTask, SuccessPredicate, check_policy_fits
from f1.eval.intervals import wilson_interval
from f1.model import F1Policy

__all__ = ["EvaluationResult", "evaluate", "held_out_seeds"]

HELD_OUT_SPLIT = "test"
"""Where :func:`held_out_seeds` draws from: ``seed_range("test")`` starts at 2,000,000, disjoint from the
training seeds (0..999,999) by which the library records demonstrations."""


def held_out_seeds(episodes: int) -> list[int]:
    """The first ``episodes`` seeds of the held-out ``"test"`` split (2,000,000, 2,000,001, ...)."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes: expected a positive integer, received {episodes!r}")
    available = seed_range(HELD_OUT_SPLIT)
    if episodes > len(available):
        raise ValueError(f"episodes: expected at most {len(available)}, received {episodes}")
    return list(available[:episodes])


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
    agent: Agent | LeRobotStylePolicy,
    env_factory: Callable[[], Any],
    seeds: Sequence[int] | int,
    *,
    adapter: GymAdapter | None = None,
    success: SuccessPredicate | None = None,
    name: str | None = None,
    batch_size: int = 100,
    progress: bool = False,
    description: str | None = None,
) -> EvaluationResult:
    """Run ``agent`` for one episode per seed in environments from ``env_factory``.

    Episodes run ``batch_size`` at a time in lockstep: the agent acts for the whole batch each step (one
    batched forward pass for a learned policy); an environment whose episode has ended keeps its last
    observation and its further actions are ignored. An episode succeeds when the environment reports
    ``info["success"]``; it ends on termination or at the environment's ``max_steps``.

    With ``adapter``, ``env_factory`` builds gymnasium environments, each wrapped in a
    :class:`~f1.eval.gym_adapter.GymTask`; the first is reset and stepped once before the evaluation so
    that a missing observation key, a shape the policy does not take or a missing success signal raises
    before any episode runs.

    Args:
        agent: see :class:`f1.eval.agents.Agent`; or a policy (``reset`` + batched ``select_action``, e.g.
            :class:`f1.model.F1Policy`), which reads its first camera and, with an adapter, the adapter's
            embodiment (a table task: the task's embodiment).
        env_factory: builds one environment (called ``min(batch_size, len(seeds))`` times).
        seeds: distinct ``reset`` seeds, e.g. ``seed_range("test")[:100]``; or a count ``N``: the first
            ``N`` held-out seeds (:func:`held_out_seeds`, never training seeds).
        adapter: how a gymnasium environment's observations, actions and success map onto the policy.
        success: with ``adapter``, a predicate ``(observation, reward, info) -> bool`` replacing its
            success key.
        name: the label of a policy in reports (default: its mode, e.g. ``"f1"``).
        batch_size: episodes run together.
        progress: show a progress bar over episodes.
        description: progress bar label (default: the agent's name).

    Returns:
        :class:`EvaluationResult` with the Wilson 95% interval.
    """
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = held_out_seeds(seeds)
    seeds = _check_seeds(seeds)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, received {batch_size!r}")
    if adapter is not None and not isinstance(adapter, GymAdapter):
        raise ValueError(f"adapter: expected a GymAdapter, received {type(adapter).__name__}")
    if success is not None and adapter is None:
        raise ValueError("success: a success predicate needs adapter= (gymnasium environments)")
    started = time.perf_counter()
    count = min(batch_size, len(seeds))
    if adapter is None:
        envs = [env_factory() for _ in range(count)]
        agent = _as_agent(agent, name, envs[0], None)
    else:
        envs = [GymTask(env_factory(), adapter, success)]
        try:
            observation = envs[0].probe(seeds[0])
            agent = _as_agent(agent, name, envs[0], observation)
            envs += [GymTask(env_factory(), adapter, success) for _ in range(count - 1)]
        except BaseException:
            _close(envs)
            raise
    try:
        return _evaluate(agent, envs, seeds, batch_size, progress, description, started)
    finally:
        _close(envs)


def _close(envs: Sequence[Any]) -> None:
    for env in envs:
        if isinstance(env, GymTask):  # table tasks hold no resources
            env.close()


def _as_agent(
    agent: Agent | LeRobotStylePolicy, name: str | None, env: Any, observation: dict[str, Any] | None
) -> Agent:
    """An agent as is; a policy wrapped in a :class:`PolicyAgent` (checked against the environment)."""
    if isinstance(agent, Agent):
        return agent
    if not (callable(getattr(agent, "select_action", None)) and callable(getattr(agent, "reset", None))):
        raise ValueError(
            f"agent: expected an Agent (reset, act) or a policy (reset, select_action), received "
            f"{type(agent).__name__}"
        )
    if not isinstance(agent, F1Policy):
        raise ValueError(
            f"agent: wrap a {type(agent).__name__} in PolicyAgent(policy, name, camera, embodiment); only an "
            "F1Policy says which cameras and embodiments it reads"
        )
    label = name or agent.config.mode
    if isinstance(env, GymTask):
        assert observation is not None
        embodiment = check_policy_fits(agent, env.adapter, observation, env.action_space.shape)
        return PolicyAgent(agent, label, agent.config.cameras[0], embodiment)
    embodiment = env.embodiment.name
    if embodiment not in agent.model.embodiments:
        raise ValueError(
            f"embodiment: the policy knows {list(agent.model.embodiments.names)}, the task's robot is "
            f"{embodiment!r}"
        )
    return PolicyAgent(agent, label, agent.config.cameras[0], embodiment)


def _evaluate(
    agent: Agent,
    envs: list[Any],
    seeds: list[int],
    batch_size: int,
    progress: bool,
    description: str | None,
    started: float,
) -> EvaluationResult:
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


def _run_batch(agent: Agent, envs: list[Any], seeds: list[int]) -> tuple[list[bool], list[int], list[bool]]:
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
