"""Parameter groups -> frozen/trainable split; AdamW with per-group learning rates; warmup + cosine."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ConfigError, OptimizerConfig, ScheduleConfig
from .protocol import PARAMETER_GROUP_NAMES, TrainableModel


def validated_parameter_groups(policy: TrainableModel) -> dict[str, list[nn.Parameter]]:
    """``policy.parameter_groups()`` after checking that it partitions ``policy.parameters()``.

    Raises ``ValueError`` for an unknown group name, a parameter reported twice, or a parameter of the policy
    that no group reports (it would silently never train, or never freeze).
    """
    if not isinstance(policy, nn.Module):
        raise TypeError(f"policy must be a torch.nn.Module, received {type(policy).__name__}")
    groups = policy.parameter_groups()
    if not isinstance(groups, dict):
        raise TypeError(f"policy.parameter_groups() must return a dict, received {type(groups).__name__}")
    names = {id(p): n for n, p in policy.named_parameters()}
    seen: dict[int, str] = {}
    for group, params in groups.items():
        if group not in PARAMETER_GROUP_NAMES:
            raise ValueError(
                f"policy.parameter_groups(): unknown group {group!r}; "
                f"expected among {', '.join(PARAMETER_GROUP_NAMES)}"
            )
        for param in params:
            if id(param) not in names:
                raise ValueError(
                    f"policy.parameter_groups()[{group!r}] holds a parameter that the policy does not own"
                )
            if id(param) in seen:
                raise ValueError(
                    f"parameter {names[id(param)]!r} is in groups {seen[id(param)]!r} and {group!r}; "
                    "each parameter must belong to exactly one group"
                )
            seen[id(param)] = group
    ungrouped = [n for i, n in names.items() if i not in seen]
    if ungrouped:
        shown = ", ".join(ungrouped[:5]) + (" ..." if len(ungrouped) > 5 else "")
        raise ValueError(f"{len(ungrouped)} parameters of the policy are in no parameter group: {shown}")
    return {group: list(params) for group, params in groups.items() if params}


def apply_freezing(
    groups: dict[str, list[nn.Parameter]], frozen: tuple[str, ...]
) -> dict[str, list[nn.Parameter]]:
    """Set ``requires_grad`` False on the ``frozen`` groups; return the parameters left to train, by group.

    The trainer only ever freezes: a parameter the policy froze itself (e.g. the generation expert under the
    Frozen-Gen ablation) stays frozen in every stage. Groups named in ``frozen`` that the policy lacks are
    ignored (e.g. ``generation`` for a policy without a generation expert).
    """
    for group in frozen:
        for param in groups.get(group, []):
            param.requires_grad_(False)
    trainable: dict[str, list[nn.Parameter]] = {}
    for group, params in groups.items():
        left = [p for p in params if p.requires_grad] if group not in frozen else []
        if left:
            trainable[group] = left
    if not trainable:
        raise ConfigError(
            f"nothing would train: the stage freezes {list(frozen)} and the policy's other groups "
            f"({[g for g in groups if g not in frozen]}) have no parameter with requires_grad=True"
        )
    return trainable


def build_optimizer(trainable: dict[str, list[nn.Parameter]], config: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW with one torch param group per (parameter group, decayed or not), each with a ``name``.

    Matrices and embeddings (``ndim >= 2``) get ``config.weight_decay``; vectors (norms, biases) get none.
    The fused implementation runs when every parameter is a float tensor on one CPU or CUDA device: on a
    CPU, torch's default per-tensor loop otherwise spends about as long in the optimizer as in the backward
    pass of a small model (measured on the demo policy: docs/results/demo/NOTES.md).
    """
    param_groups = []
    for group in PARAMETER_GROUP_NAMES:  # fixed order: the optimizer state must line up across runs
        params = trainable.get(group, [])
        decayed = [p for p in params if p.ndim >= 2]
        undecayed = [p for p in params if p.ndim < 2]
        lr = config.lr_for(group)
        if decayed:
            param_groups.append(
                {"params": decayed, "lr": lr, "weight_decay": config.weight_decay, "name": group}
            )
        if undecayed:
            param_groups.append(
                {"params": undecayed, "lr": lr, "weight_decay": 0.0, "name": f"{group}/no_decay"}
            )
    every = [p for group in param_groups for p in group["params"]]
    return torch.optim.AdamW(
        param_groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=_fused_supported(every) or None
    )


def _fused_supported(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused AdamW kernel takes ``params``: floating point, all on one CPU or CUDA device."""
    devices = {p.device for p in params}
    return (
        len(devices) == 1
        and next(iter(devices)).type in ("cpu", "cuda")
        and all(p.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) for p in params)
    )


class WarmupCosine:
    """Learning-rate factor after ``step`` optimizer steps: linear warmup to 1, then cosine to ``min_ratio``.

    A plain object with float/int attributes, so ``LambdaLR.state_dict()`` stays tensor-and-number only.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float) -> None:
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: ScheduleConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup + cosine over ``total_steps``, applied to every param group's own peak rate."""
    schedule = WarmupCosine(config.warmup_steps, total_steps, config.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
