"""Data parallelism through ``torchrun``: process-group setup and the DDP wrapper of the model.

The published F1 trainer called the policy's loss method directly, bypassing its DDP wrapper, so gradient
synchronisation was never armed. Here the model's ``forward`` is the training pass, and the training step
calls it through the wrapper.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def init_distributed(device: str | None = None, timeout_s: float = 1800.0) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``, ...).

    Without those variables this is one process and nothing is initialised. The backend is NCCL when the
    device is CUDA and gloo otherwise. ``device``: ``"cpu"``, ``"cuda"`` (each process takes
    ``cuda:LOCAL_RANK``) or None (CUDA when available).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or None, received {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    torch_device = torch.device(f"cuda:{local_rank}") if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def current_context(device: torch.device | None = None) -> DistributedContext:
    """The context of an already initialised process group (or a single process), on ``device``."""
    device = device or torch.device("cpu")
    if dist.is_available() and dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, device)
    return DistributedContext(device=device)


def wrap_for_data_parallel(
    module: nn.Module, context: DistributedContext, *, find_unused_parameters: bool = False
) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` when several processes train, else itself.

    DDP broadcasts rank 0's parameters and buffers at construction, so every process starts equal.
    """
    if not context.is_distributed:
        return module
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def all_gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """``value`` of every process, in rank order (a one-element list without a process group)."""
    if not context.is_distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def mean_across_processes(values: dict[str, float], context: DistributedContext) -> dict[str, float]:
    """Average each number over the processes (for logging); identity on one process."""
    if not context.is_distributed or not values:
        return values
    names = sorted(values)
    tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return {n: float(v) / context.world_size for n, v in zip(names, tensor.tolist())}


def any_process(flag: bool, context: DistributedContext) -> bool:
    """True on every process if ``flag`` is True on any (one tiny all-reduce); ``flag`` on one process."""
    if not context.is_distributed:
        return flag
    tensor = torch.tensor([int(flag)], device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def barrier(context: DistributedContext) -> None:
    """Wait for every process (no-op on one process)."""
    if context.is_distributed:
        dist.barrier()
