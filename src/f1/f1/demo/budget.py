"""How big a demo run is, and how its training steps are sized and spread over the stages.

Step counts follow a wall-clock budget: a few steps of each policy, timed in the training workers
(:func:`step_probes`), size the stages so that the training of all three policies fits
``DemoBudget.train_seconds`` (:func:`steps_within`); the other phases have fixed sizes. F1 trains stages I
and II on the gripper and III on the arm; the controls No-Gen and History-No-Foresight get the same number
of action-training steps and samples in stages II and III; F1's stage I, which trains only the generation
expert, comes on top, since the controls have no foresight to pre-train (:func:`stage_schedule`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from f1.demo.data import table_task
from f1.demo.training import StagePlan
from f1.demo.workers import StageJob, StepProbe, plan_workers
from f1.envs import EMBODIMENTS, VARIANTS, TableTaskEnv, make_expert
from f1.model import F1Config
from f1.model.config import MODES

__all__ = [
    "DEMO_BUDGETS",
    "DEMO_TASK",
    "DemoBudget",
    "TrainingSteps",
    "adaptation_probes",
    "adaptation_schedule",
    "adaptation_steps_within",
    "demo_budget",
    "job_seconds",
    "pretrain_schedule",
    "stage_schedule",
    "stage_steps",
    "step_probes",
    "steps_within",
    "training_steps",
]

DEMO_TASK: dict[str, Any] = {
    "resolution": 64,
    "num_objects": 1,
    "num_bins": 1,
    "grasp_radius": 0.075,
    "object_size": 0.15,
    "conveyor_speed_range": (0.06, 0.10),
    "grasp_sensor": True,
}
"""The demo's table task: the :class:`f1.envs.TableTaskConfig` fields it sets (the others keep the family's
defaults). One object and one bin; objects 0.15 table widths wide (10 px at 64 px) that a gripper closing
anywhere over them grasps; a belt running 0.06 to 0.10 table widths per step, faster than the grasp radius,
so that closing where the object is now misses it: the scripted expert that aims at the object's current
position instead of intercepting it fails on the belt far more often than the intercepting expert, which
the report shows beside the policies. The grasp sensor (``holding`` in the state) tells a policy that closed
on nothing that it did, as a real gripper's finger width does. With the environment's defaults (0.1-wide
objects, 0.03 grasp radius, a slower belt), no policy trained from scratch in the demo's budget learned the
task, and the aiming expert often succeeded without any prediction of the motion (the measurements are in
``docs/results/demo/NOTES.md``)."""

# The stage-I timing is its own probe: only the generation loss trains there.
_STAGE1_PROBE = "f1_stage1"
# Stage I from scratch: nothing is pretrained, so the vision and understanding side learn from the
# generation loss too (the shipped stage I, made for pretrained towers, freezes them).
_STAGE1_FROZEN = ("action", "embodiment", "tokenizer")
# The controls have no foresight: they train the flow loss only.
_FLOW_ONLY = {"flow": 1.0}


@dataclass(frozen=True)
class DemoBudget:
    """How big a demo run is.

    Attributes:
        name: ``"full"`` or ``"quick"``.
        task: the table task, as the :class:`f1.envs.TableTaskConfig` fields it sets (validated here).
        gripper_episodes: expert demonstrations of the gripper per variant.
        arm_episodes: expert demonstrations of the arm per variant (at most 25: 50 in all).
        perturbation: share of demonstration steps executed as random actions, labelled with the
            expert's correction (DART; see :mod:`f1.demo.data`).
        approach_margin: the scripted expert's (:class:`f1.envs.ScriptedExpert`): on the conveyor it
            first heads for the object's current position, as on the static variant, and intercepts only
            once within this distance of the object's height (None: it intercepts from the first step).
            With 0.08 a single frame no longer teaches opposite reaches on the two variants (round 7 of
            ``docs/results/demo/NOTES.md``).
        tokenizer_steps, tokenizer_batch: VQ-VAE training (it uses every core of the machine).
        train_seconds: wall-clock budget for the policies' training from scratch (all three, all
            stages); the other phases have fixed sizes (episodes, tokenizer steps, evaluation episodes).
        adaptation_seconds: the same for a run from the shipped stage-II checkpoints, which trains
            stage III only (it has no gripper demonstrations or tokenizer to make, so more of the 25
            minutes is left for training).
        min_steps, max_steps: bounds of the steps per policy that the budget may choose.
        stage_fractions: share of the steps in stages I, II and III (a run from scratch).
        pretrain_steps: steps of stages I and II when they are trained once for the shipped checkpoints
            (:func:`f1.demo.pretrain_demo`); a run from them trains stage III only, sized to
            ``adaptation_seconds``.
        batch_size, lr: optimizer batch and peak learning rate of the stages.
        eval_episodes: held-out episodes per (policy, cell).
        eval_batch: episodes run in lockstep.
        foresight_samples: anchors for the foresight numbers (the picture shows 3).
        clone_episodes, clone_steps: demonstration episodes (``"train"`` seeds) and optimizer steps of
            each behaviour clone on the privileged true state (:mod:`f1.eval.state_clone`; eight clones:
            per embodiment and variant, without and with the conveyor velocity).
        counterfactual_anchors: ``"val"`` anchors of the open-loop counterfactual (F1's actions under
            another foresight, :func:`f1.eval.foresight_action_change`).
        counterfactual_bank: ``"val"`` expert episodes, apart from those anchors, whose frames serve as
            "another episode's foresight" in the closed-loop counterfactual (its episodes are the success
            table's test seeds).
    """

    name: str
    task: Mapping[str, Any] = field(default_factory=lambda: dict(DEMO_TASK))
    gripper_episodes: int = 150
    arm_episodes: int = 25
    perturbation: float = 0.1
    approach_margin: float | None = 0.08
    tokenizer_steps: int = 1500
    tokenizer_batch: int = 32
    train_seconds: float = 540.0
    adaptation_seconds: float = 720.0
    min_steps: int = 60
    max_steps: int = 20_000
    stage_fractions: tuple[float, float, float] = (0.15, 0.55, 0.30)
    pretrain_steps: tuple[int, int] = (1500, 12000)
    batch_size: int = 16
    lr: float = 2e-3
    eval_episodes: int = 100
    eval_batch: int = 100
    foresight_samples: int = 32
    clone_episodes: int = 150
    clone_steps: int = 1500
    counterfactual_anchors: int = 32
    counterfactual_bank: int = 20

    def __post_init__(self) -> None:
        for embodiment in EMBODIMENTS:
            for variant in VARIANTS:
                table_task(self.task, embodiment, variant)  # raises naming a bad task field
        if not 1 <= self.arm_episodes <= 25:
            raise ValueError(
                f"arm_episodes: expected 1 to 25 per variant (50 in all), received {self.arm_episodes}"
            )
        if abs(sum(self.stage_fractions) - 1) > 1e-6 or min(self.stage_fractions) <= 0:
            raise ValueError(
                "stage_fractions: expected three positive shares summing to 1, "
                f"received {self.stage_fractions}"
            )
        if self.approach_margin is not None:  # the expert's own check, on one of the demo's tasks
            make_expert(
                TableTaskEnv(table_task(self.task, EMBODIMENTS[0], VARIANTS[1])),
                approach_margin=self.approach_margin,
            )
        steps = self.pretrain_steps
        if not (
            isinstance(steps, tuple)
            and len(steps) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps)
        ):
            raise ValueError(
                f"pretrain_steps: expected two positive ints (stages I and II), received {steps!r}"
            )
        for name in (
            "gripper_episodes",
            "tokenizer_steps",
            "tokenizer_batch",
            "min_steps",
            "batch_size",
            "eval_episodes",
            "eval_batch",
            "foresight_samples",
            "clone_episodes",
            "clone_steps",
            "counterfactual_anchors",
            "counterfactual_bank",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, received {value!r}")
        if self.counterfactual_anchors < 2:  # each anchor gets another anchor's future
            raise ValueError(
                f"counterfactual_anchors: expected at least 2, received {self.counterfactual_anchors}"
            )
        for name in ("train_seconds", "adaptation_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ValueError(f"{name}: expected a finite number of seconds > 0, received {value!r}")
        if self.max_steps < self.min_steps:
            raise ValueError(f"max_steps: expected >= min_steps={self.min_steps}, received {self.max_steps}")

    @property
    def resolution(self) -> int:
        """Side of the table images in pixels."""
        return table_task(self.task, EMBODIMENTS[0], VARIANTS[0]).resolution

    @property
    def sizes_steps(self) -> bool:
        """Whether the steps per policy are measured against ``train_seconds`` (else ``max_steps``)."""
        return self.min_steps < self.max_steps


DEMO_BUDGETS: dict[str, DemoBudget] = {
    "full": DemoBudget(name="full"),
    "quick": DemoBudget(
        name="quick",
        task={**DEMO_TASK, "resolution": 32},
        gripper_episodes=6,
        arm_episodes=3,
        tokenizer_steps=10,
        tokenizer_batch=8,
        train_seconds=15.0,
        adaptation_seconds=15.0,
        min_steps=12,
        max_steps=12,
        pretrain_steps=(2, 7),
        batch_size=4,
        eval_episodes=4,
        eval_batch=4,
        foresight_samples=2,
        clone_episodes=2,
        clone_steps=5,
        counterfactual_anchors=2,
        counterfactual_bank=1,
    ),
}


def demo_budget(budget: DemoBudget | str) -> DemoBudget:
    """``budget`` itself, or the :data:`DEMO_BUDGETS` entry it names."""
    if isinstance(budget, DemoBudget):
        return budget
    if budget not in DEMO_BUDGETS:
        raise ValueError(f"budget: expected one of {list(DEMO_BUDGETS)}, received {budget!r}")
    return DEMO_BUDGETS[budget]


@dataclass(frozen=True)
class TrainingSteps:
    """Optimizer steps of each policy.

    Attributes:
        per_policy: F1's steps, all stages together.
        stages: F1's steps in stages I, II and III (the controls: the same II and III, no stage I).
        seconds_per_step: the measured timings they were sized from (empty when the budget fixed them).
    """

    per_policy: int
    stages: tuple[int, int, int]
    seconds_per_step: dict[str, float]


def stage_steps(total: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """``total`` steps split into stages I, II and III by ``fractions`` (each at least 1)."""
    first = max(1, round(total * fractions[0]))
    third = max(1, round(total * fractions[2]))
    return first, max(1, total - first - third), third


def steps_within(budget: DemoBudget, seconds: Mapping[str, float], workers: int) -> int:
    """Steps per policy so that F1 (stages I-III) and both controls, spread over ``workers`` processes,
    train within ``budget.train_seconds``; ``seconds``: seconds per step of each :func:`step_probes`."""
    first, second, third = budget.stage_fractions
    per_step = [
        first * seconds[_STAGE1_PROBE] + (second + third) * seconds["f1"],
        (second + third) * seconds["no_gen"],
        (second + third) * seconds["history_no_foresight"],
    ]
    wall_per_step = plan_workers(per_step, workers)
    return int(min(budget.max_steps, max(budget.min_steps, budget.train_seconds / wall_per_step)))


def training_steps(budget: DemoBudget, seconds: Mapping[str, float], workers: int) -> TrainingSteps:
    """The steps of every policy and stage: sized to the budget from ``seconds`` when it leaves a choice
    (:attr:`DemoBudget.sizes_steps`), else ``budget.max_steps``."""
    total = steps_within(budget, seconds, workers) if budget.sizes_steps else budget.max_steps
    return TrainingSteps(total, stage_steps(total, budget.stage_fractions), dict(seconds))


def stage_schedule(
    mode: str,
    steps: tuple[int, int, int],
    budget: DemoBudget,
    roots: Mapping[str, Path],
    codes: Mapping[str, Path] | None = None,
) -> tuple[StageJob, ...]:
    """F1: stages I, II on the gripper and III on the arm. The controls: the same steps in II and III,
    flow loss only; they have no foresight to pre-train, so F1's stage I (which trains no action) is not
    matched. Every policy gets the same action-training steps. ``roots``: dataset directory per
    embodiment; ``codes``: its frame-codes file under the shared tokenizer (modes that encode frames)."""
    codes = codes or {}
    return pretrain_schedule(
        mode, (steps[0], steps[1]), budget, roots["gripper"], codes.get("gripper")
    ) + adaptation_schedule(mode, steps[2], budget, roots["arm"], codes.get("arm"))


def pretrain_schedule(
    mode: str, steps: tuple[int, int], budget: DemoBudget, gripper: Path, codes: Path | None = None
) -> tuple[StageJob, ...]:
    """The gripper's stages: F1 through stage I (generation only) and stage II, the controls through the
    same stage-II steps with the flow loss only. ``gripper``: its dataset directory; ``codes``: its
    frame-codes file (modes that encode frames)."""
    batch, lr = budget.batch_size, budget.lr
    if mode == "f1":
        return (
            StageJob("I", gripper, StagePlan(1, steps[0], batch, lr, frozen=_STAGE1_FROZEN), codes),
            StageJob("II", gripper, StagePlan(2, steps[1], batch, lr), codes),
        )
    return (StageJob("II", gripper, StagePlan(2, steps[1], batch, lr, _FLOW_ONLY), codes),)


def adaptation_schedule(
    mode: str, steps: int, budget: DemoBudget, arm: Path, codes: Path | None = None
) -> tuple[StageJob, ...]:
    """Stage III on the arm (the target embodiment): F1 with its stage's losses, the controls with the
    flow loss only. ``arm``: its dataset directory; ``codes``: its frame-codes file."""
    plan = StagePlan(3, steps, budget.batch_size, budget.lr, None if mode == "f1" else _FLOW_ONLY)
    return (StageJob("III", arm, plan, codes),)


def adaptation_steps_within(budget: DemoBudget, seconds: Mapping[str, float], workers: int) -> int:
    """Stage-III steps of every policy so that the three, spread over ``workers`` processes, train within
    ``budget.adaptation_seconds`` (a run from the shipped stage-II checkpoints); ``seconds``: seconds per
    step of each :func:`adaptation_probes`, by mode."""
    missing = sorted(set(MODES) - set(seconds))
    if missing:
        raise ValueError(f"seconds: expected a timing of every mode {list(MODES)}, missing {missing}")
    wall_per_step = plan_workers([seconds[mode] for mode in MODES], workers)
    return int(min(budget.max_steps, max(budget.min_steps, budget.adaptation_seconds / wall_per_step)))


def adaptation_probes(configs: Mapping[str, F1Config], arm: Path, budget: DemoBudget) -> list[StepProbe]:
    """Timings of every policy's stage-III step on the arm's dataset ``arm``, costliest first."""
    probe = max(2, min(9, budget.batch_size)) - 1
    return [
        StepProbe(mode, configs[mode], arm, adaptation_schedule(mode, 10, budget, arm)[0].plan, probe)
        for mode in ("f1", "history_no_foresight", "no_gen")
    ]


def job_seconds(mode: str, schedule: tuple[StageJob, ...], seconds: Mapping[str, float]) -> float:
    """Estimated training seconds of a schedule (1 per step when nothing was measured)."""
    total = 0.0
    for stage in schedule:
        key = _STAGE1_PROBE if stage.plan.stage == 1 else mode
        total += stage.plan.steps * seconds.get(key, 1.0)
    return total


def step_probes(configs: Mapping[str, F1Config], gripper: Path, budget: DemoBudget) -> list[StepProbe]:
    """Timings of F1 (stages I and II) and of the two controls, costliest first; ``gripper``: the
    gripper's dataset directory."""
    probe = max(2, min(9, budget.batch_size)) - 1  # 8 timed steps at the full batch: a steadier median
    batch, lr = budget.batch_size, budget.lr
    flow = {"flow": 1.0}
    return [
        StepProbe("f1", configs["f1"], gripper, StagePlan(2, 10, batch, lr), probe),
        StepProbe(
            _STAGE1_PROBE, configs["f1"], gripper, StagePlan(1, 10, batch, lr, frozen=_STAGE1_FROZEN), probe
        ),
        StepProbe(
            "history_no_foresight",
            configs["history_no_foresight"],
            gripper,
            StagePlan(2, 10, batch, lr, flow),
            probe,
        ),
        StepProbe("no_gen", configs["no_gen"], gripper, StagePlan(2, 10, batch, lr, flow), probe),
    ]
