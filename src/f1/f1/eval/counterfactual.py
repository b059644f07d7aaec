"""Counterfactual checks: does F1's action depend on its foresight?

Two measurements, on the same expert-episode anchors as :mod:`f1.eval.foresight`:

- open loop (:func:`foresight_action_change`): the action chunk planned with the real future frame's
  tokens as the foresight, against the chunk planned with another anchor's real future, with the current
  frame's tokens (copy: "nothing moves") and with the model's own sampled foresight, all from the same
  flow noise, so that only the foresight differs;
- closed loop (:func:`counterfactual_success`): the success of the policy with its own foresight, with
  the current frame copied as the foresight, and with a real frame of another episode
  (:class:`ForesightBank`) through :attr:`f1.model.F1Policy.foresight_source`.

A policy whose actions read its foresight changes them under a wrong foresight, and succeeds less.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from f1.envs import TABLE_IMAGE_KEY, TableTaskConfig, TableTaskEnv, make_expert, rollout
from f1.eval.agents import PolicyAgent
from f1.eval.foresight import _check_policy, _check_seeds, frame_indices, policy_anchors
from f1.eval.intervals import difference_interval
from f1.eval.rollouts import EvaluationResult, evaluate
from f1.model import F1Policy
from f1.model.policy import ForesightSource

__all__ = [
    "ActionChange",
    "ActionChangeSummary",
    "CounterfactualSuccess",
    "ForesightBank",
    "compare_foresights",
    "copy_current_frame",
    "counterfactual_success",
    "foresight_action_change",
]

OWN, COPY, OTHER, REAL, SAMPLED = "own", "copy", "other_episode", "real", "sampled"


# --- open loop ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActionChange:
    """How far one condition's executed actions lie from the reference's (raw action units).

    Attributes:
        mean_abs: mean over anchors, executed steps and action dimensions of ``|a - a_ref|``.
        mean_l2: mean over anchors and executed steps of ``||a - a_ref||_2`` (over action dimensions).
        relative_abs: ``mean_abs`` / the reference's mean absolute deviation from its mean action (None when
            the reference actions do not vary).
        relative_l2: ``mean_l2`` / the reference's mean L2 distance from its mean action (None likewise).
    """

    mean_abs: float
    mean_l2: float
    relative_abs: float | None
    relative_l2: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_abs": self.mean_abs,
            "mean_l2": self.mean_l2,
            "relative_abs": self.relative_abs,
            "relative_l2": self.relative_l2,
        }


@dataclass(frozen=True)
class ActionChangeSummary:
    """The executed actions of each condition against the reference condition's.

    Attributes:
        anchors: anchors (B).
        executed_steps: actions compared per anchor (the first ``action.n_action_steps`` of each chunk).
        reference: the condition the others are compared with.
        spread_abs: the reference's mean absolute deviation from its mean action (raw units).
        spread_l2: the reference's mean L2 distance from its mean action (raw units).
        changes: per other condition, :class:`ActionChange`.
        actions: per condition (the reference included), executed actions ``(B, n, A)`` raw.
    """

    anchors: int
    executed_steps: int
    reference: str
    spread_abs: float
    spread_l2: float
    changes: dict[str, ActionChange]
    actions: dict[str, torch.Tensor]

    def to_dict(self) -> dict[str, Any]:
        return {
            "anchors": self.anchors,
            "executed_steps": self.executed_steps,
            "reference": self.reference,
            "spread_abs": self.spread_abs,
            "spread_l2": self.spread_l2,
            "changes": {name: change.to_dict() for name, change in self.changes.items()},
        }


@torch.no_grad()
def compare_foresights(
    policy: F1Policy,
    observation: Mapping[str, Any],
    foresights: Mapping[str, list[torch.Tensor] | None],
    *,
    reference: str,
    seed: int = 0,
) -> ActionChangeSummary:
    """Plan once per foresight from the same flow noise and compare the executed actions.

    Args:
        policy: a policy that foresees (mode ``f1``, best with ``generation.complete_foresight``).
        observation: one batch of B observations with their ``history`` (see :meth:`F1Policy.plan`).
        foresights: condition name -> token indices of the first scales ``[(B, h_k * w_k)]`` int64, or None
            for the model's own sampled foresight (its tokens drawn from a generator seeded with ``seed``).
        reference: the condition the others are compared with (a key of ``foresights``).
        seed: seeds the flow noise (shared by every condition) and the sampled foresight.

    Raises:
        ValueError: a bad policy, reference or foresight.
    """
    policy = _check_policy(policy)
    if not isinstance(foresights, Mapping) or len(foresights) < 2:
        raise ValueError(f"foresights: expected at least two conditions, received {foresights!r}")
    if reference not in foresights:
        raise ValueError(f"reference: expected one of {list(foresights)}, received {reference!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an int, received {seed!r}")
    model = policy.model
    policy.eval()
    inputs = model.parse(observation)
    if len(inputs.groups) != 1:
        raise ValueError(f"observation: expected one embodiment, received {[g.name for g in inputs.groups]}")
    action_dim = inputs.groups[0].embodiment.action_dim
    noise_generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(
        (inputs.batch_size, policy.config.action.chunk_size, action_dim), generator=noise_generator
    ).to(policy.device)
    executed = policy.config.action.n_action_steps
    actions = {}
    for name, indices in foresights.items():
        try:
            plan = model.sample(
                inputs,
                generator=torch.Generator().manual_seed(seed),
                noise=noise,
                foresight_indices=None if indices is None else list(indices),
            )
        except ValueError as error:  # the model's InputError names foresight_indices
            raise ValueError(f"foresights[{name!r}]: {error}") from error
        actions[name] = plan.actions[:, :executed].float().cpu()
    ref = actions[reference]
    deviation = ref - ref.flatten(0, 1).mean(0)
    spread_abs = float(deviation.abs().mean())
    spread_l2 = float(deviation.norm(dim=-1).mean())
    changes = {}
    for name, other in actions.items():
        if name == reference:
            continue
        mean_abs = float((other - ref).abs().mean())
        mean_l2 = float((other - ref).norm(dim=-1).mean())
        changes[name] = ActionChange(
            mean_abs=mean_abs,
            mean_l2=mean_l2,
            relative_abs=mean_abs / spread_abs if spread_abs > 0 else None,
            relative_l2=mean_l2 / spread_l2 if spread_l2 > 0 else None,
        )
    return ActionChangeSummary(
        anchors=inputs.batch_size,
        executed_steps=int(ref.shape[1]),
        reference=reference,
        spread_abs=spread_abs,
        spread_l2=spread_l2,
        changes=changes,
        actions=actions,
    )


def foresight_action_change(
    policy: F1Policy, task: TableTaskConfig, camera: str, seeds: list[int], *, seed: int = 0
) -> ActionChangeSummary:
    """Open-loop counterfactual on one anchor per seed (:func:`f1.eval.foresight.collect_anchors`).

    Conditions (reference ``"real"``): ``"real"``, the real future frame's tokens; ``"other_episode"``,
    the real future of the next anchor (anchor i gets anchor (i + 1) mod B's: a fixed derangement);
    ``"copy"``, the current frame's tokens; ``"sampled"``, the model's own foresight. All from the same
    flow noise (see :func:`compare_foresights`).

    Args:
        policy: a policy that foresees (mode ``f1``).
        task: the table task whose expert episodes give the anchors.
        camera: the camera name under which ``policy`` reads the table view.
        seeds: at least two episode seeds (held-out ones), one anchor each.
        seed: seeds the flow noise and the sampled foresight.
    """
    policy = _check_policy(policy)
    seeds = _check_seeds(seeds)
    anchors = policy_anchors(policy, task, seeds)
    if len(anchors) < 2:
        raise ValueError(
            f"seeds: expected at least 2 usable episodes for another episode's, got {len(anchors)}"
        )
    scales = policy.config.generation.inference_scales
    real = frame_indices(policy, anchors.future, scales)
    foresights = {
        REAL: real,
        OTHER: [scale.roll(-1, dims=0) for scale in real],
        COPY: frame_indices(policy, anchors.current, scales),
        SAMPLED: None,
    }
    return compare_foresights(
        policy, anchors.observation(camera, task.embodiment), foresights, reference=REAL, seed=seed
    )


# --- closed loop ----------------------------------------------------------------------------------------
def copy_current_frame(current: list[torch.Tensor]) -> list[torch.Tensor]:
    """A :data:`f1.model.policy.ForesightSource` imagining that nothing moves: the current frame's indices."""
    return current


class ForesightBank:
    """A :data:`f1.model.policy.ForesightSource` that answers with real frames of other episodes.

    Holds the token indices of every frame of the scripted expert's episodes on ``seeds``; each call draws
    one frame per environment of the batch, uniformly, from its own generator (reseed with :meth:`reset`).

    Args:
        policy: the policy whose tokenizer encodes the frames (mode ``f1``).
        task: the table task whose expert episodes give the frames.
        seeds: the bank's episode seeds (keep them apart from the evaluation's).
        seed: seeds the draws.
    """

    def __init__(self, policy: F1Policy, task: TableTaskConfig, seeds: list[int], *, seed: int = 0) -> None:
        policy = _check_policy(policy)
        self.seeds = tuple(_check_seeds(seeds))
        env = TableTaskEnv(task)
        expert = make_expert(env)
        frames = np.concatenate([rollout(env, expert.act, seed=s)[TABLE_IMAGE_KEY] for s in self.seeds])
        scales = policy.config.generation.vqvae_scales
        self.indices = torch.cat(frame_indices(policy, frames, scales), dim=1).cpu()
        """``(N, L)`` int64: every scale's token indices of the bank's N frames."""
        self._seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.indices.shape[0]

    def reset(self, seed: int | None = None) -> None:
        """Restart the draws (from ``seed``, default the construction's)."""
        self._generator = torch.Generator().manual_seed(self._seed if seed is None else seed)

    def __call__(self, current: list[torch.Tensor]) -> list[torch.Tensor]:
        """``current`` ``[(B, h_k * w_k)]`` -> the same scales of B frames drawn from the bank."""
        batch = current[0].shape[0]
        rows = torch.randint(len(self), (batch,), generator=self._generator)
        sizes = [scale.shape[1] for scale in current]
        drawn = self.indices[rows, : sum(sizes)].to(current[0].device)
        return list(drawn.split(sizes, dim=1))


@dataclass(frozen=True)
class CounterfactualSuccess:
    """Closed-loop success per foresight condition on the same seeds.

    Attributes:
        results: ``"own"`` (the policy's sampled foresight), ``"copy"`` (:func:`copy_current_frame`),
            ``"other_episode"`` (:class:`ForesightBank`) -> :class:`f1.eval.EvaluationResult`.
    """

    results: dict[str, EvaluationResult]

    def drop(self, condition: str) -> tuple[float, tuple[float, float]]:
        """Own success rate minus ``condition``'s, with Newcombe's 95% interval (positive: success drops)."""
        own, other = self.results[OWN], self.results[condition]
        interval = difference_interval(own.successes, own.episodes, other.successes, other.episodes)
        return own.success_rate - other.success_rate, interval

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: result.to_dict() for name, result in self.results.items()}
        for name in self.results:
            if name != OWN:
                difference, interval = self.drop(name)
                out[f"drop_{name}"] = {"difference": difference, "ci95": list(interval)}
        return out


def counterfactual_success(
    policy: F1Policy,
    env_factory: Callable[[], TableTaskEnv],
    seeds: Sequence[int],
    *,
    bank_seeds: list[int],
    task: TableTaskConfig,
    camera: str,
    embodiment: str,
    batch_size: int = 100,
    progress: bool = False,
    seed: int = 0,
) -> CounterfactualSuccess:
    """Evaluate ``policy`` closed loop with its own, a copied and another episode's foresight.

    Each condition runs :func:`f1.eval.evaluate` on ``seeds`` through a :class:`f1.eval.PolicyAgent`;
    ``policy.foresight_source`` is set per condition and restored afterwards, also on error.

    Args:
        policy: a policy that foresees (mode ``f1``).
        env_factory: builds one evaluation environment.
        seeds: the evaluation's episode seeds.
        bank_seeds: the expert episodes whose frames :class:`ForesightBank` serves; disjoint from ``seeds``.
        task: the table task of those bank episodes (the evaluation's, normally).
        camera, embodiment: as in :class:`f1.eval.PolicyAgent`.
        batch_size, progress: as in :func:`f1.eval.evaluate`.
        seed: seeds the bank's draws.
    """
    policy = _check_policy(policy)
    bank_seeds = _check_seeds(bank_seeds)
    shared = sorted(set(bank_seeds) & set(seeds))
    if shared:
        raise ValueError(
            f"bank_seeds: expected seeds apart from the evaluation's, received shared {shared[:5]}"
        )
    bank = ForesightBank(policy, task, bank_seeds, seed=seed)
    sources: dict[str, ForesightSource | None] = {
        OWN: None,
        COPY: copy_current_frame,
        OTHER: bank,
    }
    labels = {OWN: "f1", COPY: "f1 (copied current frame)", OTHER: "f1 (another episode's foresight)"}
    previous = policy.foresight_source
    results = {}
    try:
        for name, source in sources.items():
            policy.foresight_source = source
            agent = PolicyAgent(policy, labels[name], camera=camera, embodiment=embodiment)
            results[name] = evaluate(agent, env_factory, seeds, batch_size=batch_size, progress=progress)
    finally:
        policy.foresight_source = previous
    return CounterfactualSuccess(results)
