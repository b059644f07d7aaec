"""Counterfactual foresight: planned actions under a given foresight, and closed-loop success per source."""

from __future__ import annotations

import json

import pytest
import torch

from f1.demo import CAMERA, table_task
from f1.demo.policy import demo_policy_config
from f1.envs import TableTaskEnv, seed_range
from f1.eval.counterfactual import (
    ForesightBank,
    compare_foresights,
    copy_current_frame,
    counterfactual_success,
    foresight_action_change,
)
from f1.eval.foresight import frame_indices, policy_anchors
from f1.model import Embodiment, F1Policy

SEEDS = list(seed_range("val")[:3])
TASK = table_task({"resolution": 32, "num_objects": 1, "num_bins": 1}, "gripper", "dynamic")
SHORT = table_task({"resolution": 32, "num_objects": 1, "num_bins": 1, "max_steps": 10}, "gripper", "dynamic")


@pytest.fixture(scope="module")
def policy() -> F1Policy:
    torch.manual_seed(0)
    embodiment = Embodiment(name="gripper", state_dim=3, action_dim=3)
    config = demo_policy_config("f1", 32, (embodiment,))
    return F1Policy(config.with_overrides({"generation": {"complete_foresight": True}}))


@pytest.fixture(scope="module")
def anchors(policy):
    return policy_anchors(policy, TASK, SEEDS)


def test_the_same_foresight_changes_no_action(policy, anchors):
    real = frame_indices(policy, anchors.future, policy.config.generation.inference_scales)
    summary = compare_foresights(
        policy,
        anchors.observation(CAMERA, "gripper"),
        {"real": real, "again": [scale.clone() for scale in real]},
        reference="real",
        seed=5,
    )
    assert summary.changes["again"].mean_abs == 0.0
    assert summary.changes["again"].mean_l2 == 0.0
    assert summary.changes["again"].relative_abs == 0.0
    assert summary.spread_abs > 0


def test_action_change_measures_every_condition_from_the_same_noise(policy):
    summary = foresight_action_change(policy, TASK, CAMERA, SEEDS, seed=1)
    assert summary.reference == "real"
    assert set(summary.changes) == {"other_episode", "copy", "sampled"}
    n = policy.config.action.n_action_steps
    assert summary.executed_steps == n
    for actions in summary.actions.values():
        assert actions.shape == (summary.anchors, n, 3)
    for change in summary.changes.values():
        assert change.mean_abs >= 0
        assert change.mean_l2 >= change.mean_abs  # the L2 norm over 3 dims is at least their mean |.|
    json.dumps(summary.to_dict(), allow_nan=False)
    again = foresight_action_change(policy, TASK, CAMERA, SEEDS, seed=1)
    assert again.to_dict() == summary.to_dict()


def test_action_change_rejects_bad_inputs_naming_the_argument(policy, anchors):
    observation = anchors.observation(CAMERA, "gripper")
    real = frame_indices(policy, anchors.future, policy.config.generation.inference_scales)
    with pytest.raises(ValueError, match="seeds: expected at least 2"):
        foresight_action_change(policy, TASK, CAMERA, SEEDS[:1])
    with pytest.raises(ValueError, match="seeds: expected a non-empty"):
        foresight_action_change(policy, TASK, CAMERA, [])
    with pytest.raises(ValueError, match="reference: expected one of"):
        compare_foresights(policy, observation, {"a": real, "b": None}, reference="c")
    with pytest.raises(ValueError, match="foresights: expected at least two"):
        compare_foresights(policy, observation, {"a": real}, reference="a")
    with pytest.raises(ValueError, match=r"foresights\['b'\]: foresight_indices\[1\]"):
        compare_foresights(
            policy, observation, {"a": real, "b": [real[0], real[1][:1], *real[2:]]}, reference="a"
        )
    embodiment = Embodiment(name="gripper", state_dim=3, action_dim=3)
    no_gen = F1Policy(demo_policy_config("no_gen", 32, (embodiment,)))
    with pytest.raises(ValueError, match="policy: mode 'no_gen'"):
        foresight_action_change(no_gen, TASK, CAMERA, SEEDS)


def test_bank_serves_real_frames_reproducibly(policy):
    bank = ForesightBank(policy, SHORT, SEEDS[:1], seed=3)
    current = [torch.zeros(4, size, dtype=torch.long) for size in (1, 4, 16)]
    drawn = bank(current)
    assert [tuple(s.shape) for s in drawn] == [(4, 1), (4, 4), (4, 16)]
    rows = torch.cat(drawn, dim=1)
    assert all((bank.indices[:, :21] == row).all(dim=1).any() for row in rows)
    bank.reset()
    assert all(torch.equal(a, b) for a, b in zip(bank(current), drawn))
    assert copy_current_frame(current) is current


def _short_env() -> TableTaskEnv:
    return TableTaskEnv(SHORT)


def test_closed_loop_runs_each_condition_and_restores_the_source(policy):
    test_seeds = list(seed_range("test")[:2])
    result = counterfactual_success(
        policy, _short_env, test_seeds, bank_seeds=SEEDS[:1], task=SHORT, camera=CAMERA, embodiment="gripper"
    )
    assert set(result.results) == {"own", "copy", "other_episode"}
    assert all(r.episodes == len(test_seeds) for r in result.results.values())
    summary = result.to_dict()
    json.dumps(summary, allow_nan=False)
    assert summary["drop_copy"]["difference"] == result.drop("copy")[0]
    assert policy.foresight_source is None


def test_closed_loop_restores_the_source_on_error_and_checks_its_seeds(policy):
    calls = []

    def broken_env() -> TableTaskEnv:
        calls.append(policy.foresight_source)
        if len(calls) > 1:  # the second condition (copy) fails
            raise RuntimeError("no environment")
        return _short_env()

    test_seeds = list(seed_range("test")[:1])
    arguments = {"bank_seeds": SEEDS[:1], "task": SHORT, "camera": CAMERA, "embodiment": "gripper"}
    with pytest.raises(RuntimeError, match="no environment"):
        counterfactual_success(policy, broken_env, test_seeds, **arguments)
    assert calls == [None, copy_current_frame]
    assert policy.foresight_source is None
    with pytest.raises(ValueError, match="bank_seeds: expected seeds apart"):
        counterfactual_success(policy, _short_env, SEEDS, **arguments)
