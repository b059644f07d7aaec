"""The demo's budget: validation, sizing the stages to the wall clock; the foresight numbers of its policy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from f1.demo import CAMERA, DEMO_BUDGETS, DemoBudget, table_task
from f1.demo.budget import (
    adaptation_schedule,
    adaptation_steps_within,
    pretrain_schedule,
    stage_schedule,
    stage_steps,
    steps_within,
    training_steps,
)
from f1.demo.policy import demo_policy_config
from f1.envs import TableTaskConfig, seed_range
from f1.eval.foresight import collect_foresight
from f1.model import Embodiment, F1Policy

SECONDS = {"f1_stage1": 0.2, "f1": 0.3, "no_gen": 0.1, "history_no_foresight": 0.2}


def test_stage_steps_add_up_and_follow_the_fractions():
    assert stage_steps(1000, (0.15, 0.55, 0.30)) == (150, 550, 300)
    assert sum(stage_steps(13, (0.15, 0.55, 0.30))) == 13
    assert min(stage_steps(3, (0.15, 0.55, 0.30))) >= 1


def test_steps_fit_the_training_budget_within_its_bounds():
    budget = DemoBudget(name="t", train_seconds=600.0, min_steps=10, max_steps=100_000)
    f1_per_step = 0.15 * 0.2 + 0.85 * 0.3
    controls = 0.85 * (0.1 + 0.2)  # no stage I: the same action-training steps as F1's II + III
    steps = steps_within(budget, SECONDS, workers=1)
    assert abs(steps - 600 / (f1_per_step + controls)) <= 1
    # two workers: F1 on one, the controls one after the other on the other
    assert abs(steps_within(budget, SECONDS, workers=2) - 600 / max(f1_per_step, controls)) <= 1
    # three workers: the slowest policy sets the pace
    assert abs(steps_within(budget, SECONDS, workers=3) - 600 / f1_per_step) <= 1
    assert steps_within(DemoBudget(name="t", train_seconds=1.0, min_steps=10), SECONDS, 2) == 10
    assert steps_within(DemoBudget(name="t", train_seconds=1e9, min_steps=10, max_steps=50), SECONDS, 2) == 50


def test_a_budget_without_a_choice_trains_its_max_steps_unmeasured():
    quick = DEMO_BUDGETS["quick"]
    assert not quick.sizes_steps
    steps = training_steps(quick, {}, workers=2)
    assert steps.per_policy == quick.max_steps
    assert steps.stages == stage_steps(quick.max_steps, quick.stage_fractions)
    assert steps.seconds_per_step == {}
    sized = training_steps(DemoBudget(name="t", train_seconds=600.0, min_steps=10), SECONDS, workers=1)
    assert sized.per_policy == steps_within(
        DemoBudget(name="t", train_seconds=600.0, min_steps=10), SECONDS, 1
    )


def test_controls_get_the_same_action_training_steps_as_f1():
    budget = DEMO_BUDGETS["full"]
    roots = {"gripper": Path("gripper data"), "arm": Path("arm data")}
    codes = {"gripper": Path("gripper.safetensors"), "arm": Path("arm.safetensors")}
    steps = (30, 110, 60)
    f1 = stage_schedule("f1", steps, budget, roots, codes)
    no_gen = stage_schedule("no_gen", steps, budget, roots, codes)
    assert [s.name for s in f1] == ["I", "II", "III"]
    assert [s.name for s in no_gen] == ["II", "III"]
    # stage I trains no action: the controls match stages II and III step for step
    assert [s.plan.steps for s in f1[1:]] == [s.plan.steps for s in no_gen] == [110, 60]
    assert no_gen[0].plan.loss_weights == {"flow": 1.0}
    assert f1[-1].dataset == no_gen[-1].dataset == Path("arm data")
    assert f1[-1].codes == no_gen[-1].codes == Path("arm.safetensors")
    assert f1[0].codes == Path("gripper.safetensors")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arm_episodes": 26}, "arm_episodes"),
        ({"stage_fractions": (0.5, 0.5, 0.5)}, "stage_fractions"),
        ({"eval_episodes": 0}, "eval_episodes"),
        ({"min_steps": 10, "max_steps": 5}, "max_steps"),
        ({"task": {"num_objects": 9}}, "num_objects"),
        ({"task": {"belt": 0.1}}, "belt"),
        ({"task": {"variant": "static"}}, "variant"),
        ({"clone_steps": 0}, "clone_steps"),
        ({"clone_episodes": 1.5}, "clone_episodes"),
        ({"counterfactual_anchors": 1}, "counterfactual_anchors"),
        ({"counterfactual_bank": 0}, "counterfactual_bank"),
        ({"train_seconds": 0.0}, "train_seconds"),
        ({"adaptation_seconds": float("inf")}, "adaptation_seconds"),
        ({"adaptation_seconds": "60"}, "adaptation_seconds"),
        ({"approach_margin": 0.0}, "approach_margin"),
        ({"approach_margin": 2.0}, "approach_margin"),
        ({"approach_margin": True}, "approach_margin"),
        ({"pretrain_steps": (10,)}, "pretrain_steps"),
        ({"pretrain_steps": (0, 10)}, "pretrain_steps"),
        ({"pretrain_steps": [10, 10]}, "pretrain_steps"),
        ({"pretrain_steps": (10, 2.5)}, "pretrain_steps"),
    ],
)
def test_bad_budgets_raise_naming_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        DemoBudget(name="bad", **change)


def test_full_budget_follows_the_issue():
    full = DEMO_BUDGETS["full"]
    assert full.eval_episodes >= 100
    assert 2 * full.arm_episodes <= 50


def test_foresight_numbers_of_an_untrained_policy_are_finite():
    torch.manual_seed(0)
    embodiment = Embodiment(name="gripper", state_dim=3, action_dim=3)
    policy = F1Policy(demo_policy_config("f1", 32, (embodiment,)))
    task = table_task({"resolution": 32, "num_objects": 1, "num_bins": 1}, "gripper", "dynamic")
    samples = collect_foresight(policy, task, CAMERA, list(seed_range("val")[:3]), examples=2)
    assert samples.samples == 3
    assert len(samples.rows) == 2
    row = samples.rows[0]
    assert row.predicted.shape == row.real.shape == (32, 32, 3)
    assert len(row.history) == policy.config.generation.history_frames
    for value in (samples.psnr_imagined, samples.psnr_tokenizer, samples.psnr_no_motion):
        assert value > 0


def test_foresight_needs_a_policy_that_foresees():
    embodiment = Embodiment(name="gripper", state_dim=3, action_dim=3)
    policy = F1Policy(demo_policy_config("no_gen", 32, (embodiment,)))
    with pytest.raises(ValueError, match="foresight"):
        collect_foresight(policy, TableTaskConfig(variant="dynamic", resolution=32), CAMERA, [1])


def test_a_run_from_scratch_is_the_pretraining_stages_then_the_adaptation():
    budget = DEMO_BUDGETS["full"]
    roots = {"gripper": Path("gripper data"), "arm": Path("arm data")}
    codes = {"gripper": Path("gripper.safetensors"), "arm": Path("arm.safetensors")}
    for mode in ("f1", "no_gen", "history_no_foresight"):
        pretrain = pretrain_schedule(mode, (30, 110), budget, roots["gripper"], codes["gripper"])
        adapt = adaptation_schedule(mode, 60, budget, roots["arm"], codes["arm"])
        assert stage_schedule(mode, (30, 110, 60), budget, roots, codes) == pretrain + adapt
        assert [s.name for s in adapt] == ["III"]
        assert adapt[0].plan.loss_weights == (None if mode == "f1" else {"flow": 1.0})


def test_adaptation_steps_fit_the_training_budget():
    budget = DemoBudget(name="t", adaptation_seconds=600.0, min_steps=10, max_steps=100_000)
    seconds = {"f1": 0.3, "no_gen": 0.1, "history_no_foresight": 0.2}
    assert abs(adaptation_steps_within(budget, seconds, workers=1) - 600 / 0.6) <= 1
    assert abs(adaptation_steps_within(budget, seconds, workers=2) - 600 / 0.3) <= 1
    bounded = DemoBudget(name="t", adaptation_seconds=1e9, min_steps=10, max_steps=50)
    assert adaptation_steps_within(bounded, seconds, workers=2) == 50
    with pytest.raises(ValueError, match="history_no_foresight"):
        adaptation_steps_within(budget, {"f1": 0.3, "no_gen": 0.1}, workers=2)
