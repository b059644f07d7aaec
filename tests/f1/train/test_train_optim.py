"""Parameter groups, per-group learning rates and the warmup + cosine schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from tiny_training_policy import TinyPolicy

from f1.train.config import OptimizerConfig, ScheduleConfig
from f1.train.optim import (
    WarmupCosine,
    apply_freezing,
    build_optimizer,
    build_scheduler,
    validated_parameter_groups,
)


def test_warmup_rises_linearly_then_cosine_falls_to_the_floor() -> None:
    schedule = WarmupCosine(warmup_steps=4, total_steps=14, min_ratio=0.1)
    assert [schedule(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule(4) == pytest.approx(1.0)
    assert schedule(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert schedule(14) == pytest.approx(0.1)
    assert schedule(100) == pytest.approx(0.1)  # past the end: stays at the floor
    values = [schedule(s) for s in range(3, 15)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_every_group_follows_the_schedule_from_its_own_peak() -> None:
    policy = TinyPolicy()
    groups = validated_parameter_groups(policy)
    optimizer = build_optimizer(groups, OptimizerConfig(lr=1e-3, group_lr={"vision": 5e-4}))
    scheduler = build_scheduler(optimizer, ScheduleConfig(warmup_steps=2), total_steps=10)
    optimizer.step()
    scheduler.step()  # second step: warmup of 2 reaches the peak
    rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert rates["vision"] == pytest.approx(5e-4)
    assert rates["action"] == pytest.approx(1e-3)
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    assert optimizer.defaults["eps"] == 1e-8


def test_scheduler_state_is_numbers_only_so_it_loads_with_weights_only(tmp_path) -> None:
    policy = TinyPolicy()
    optimizer = build_optimizer(validated_parameter_groups(policy), OptimizerConfig())
    scheduler = build_scheduler(optimizer, ScheduleConfig(warmup_steps=3), total_steps=10)
    torch.save(scheduler.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["lr_lambdas"][0] == {"warmup_steps": 3, "total_steps": 10, "min_ratio": 0.0}


def test_parameter_groups_must_partition_the_policy() -> None:
    policy = TinyPolicy()
    original = policy.parameter_groups

    twice = [*original()["vision"], policy.codebook.weight]
    policy.parameter_groups = lambda: {**original(), "vision": twice}
    with pytest.raises(ValueError, match=r"'codebook\.weight' is in groups 'vision' and 'tokenizer'"):
        validated_parameter_groups(policy)

    policy.parameter_groups = lambda: {**original(), "visual": []}
    with pytest.raises(ValueError, match="unknown group 'visual'"):
        validated_parameter_groups(policy)

    policy.parameter_groups = lambda: {**original(), "vision": [torch.nn.Parameter(torch.zeros(1))]}
    with pytest.raises(ValueError, match="holds a parameter that the policy does not own"):
        validated_parameter_groups(policy)


def test_freezing_turns_gradients_off_and_keeps_frozen_groups_out() -> None:
    policy = TinyPolicy()
    trainable = apply_freezing(validated_parameter_groups(policy), ("vision", "tokenizer"))
    assert set(trainable) == {"understanding", "generation", "action", "embodiment"}
    assert not policy.vision.weight.requires_grad
    assert policy.action_in.weight.requires_grad


def test_a_non_module_policy_is_refused() -> None:
    with pytest.raises(TypeError, match=r"policy must be a torch\.nn\.Module, received object"):
        validated_parameter_groups(object())
