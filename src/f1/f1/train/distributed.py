"""Data parallelism through ``torchrun``: process-group setup, and the model wrapped for DDP or sharded with
FSDP2.

Two strategies (``distributed.strategy`` of a run file, :class:`DistributedConfig`):

- ``ddp``: every process holds the whole model and optimizer; gradients are all-reduced
  (``DistributedDataParallel``).
- ``fsdp``: PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``) shards parameters, gradients and the
  optimizer state over the processes. The units it all-gathers together come from the model
  (``shard_units()``; for :class:`~f1.model.F1Model`: one per trunk layer, holding every expert's layer
  of that depth, since they meet in one joint attention, and one per vision-tower block); the rest is the
  root unit. On CUDA the parameters are all-gathered in bf16 for compute while gradients are reduced and
  master weights kept in fp32 (``mixed_precision: auto``).

The published F1 trainer called the policy's loss method directly, bypassing its DDP wrapper, so gradient
synchronisation was never armed. Here the model's ``forward`` is the training pass, and the training step
calls it through the wrapper (DDP) or through the sharded module itself (FSDP2 hooks its forward).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from f1.checks import did_you_mean, reject_unknown_keys
from f1.errors import ConfigError

Strategy = Literal["ddp", "fsdp"]
#: The data-parallel strategies a run file may name.
STRATEGIES: tuple[str, ...] = ("ddp", "fsdp")
#: ``distributed.mixed_precision``: ``auto`` (bf16 compute, fp32 reduce and master weights on CUDA; fp32 on
#: a CPU), ``bf16`` (that policy on any device) or ``fp32`` (no cast).
MIXED_PRECISION: tuple[str, ...] = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class DistributedConfig:
    """How several processes train one model (the run file's ``distributed`` section).

    Attributes:
        strategy: ``ddp`` (replicate, all-reduce gradients) or ``fsdp`` (FSDP2: shard parameters, gradients
            and optimizer state; checkpoints are sharded, see :mod:`f1.train.checkpoint`).
        activation_checkpointing: recompute each trunk layer in backward instead of keeping its
            intermediates (any strategy, also one process).
        reshard_after_forward: FSDP2 frees each unit's all-gathered parameters after its forward and
            gathers them again for backward (less memory, one more all-gather per unit); False keeps them.
        mixed_precision: FSDP2's parameter and reduction dtypes (see :data:`MIXED_PRECISION`).
    """

    strategy: Strategy = "ddp"
    activation_checkpointing: bool = False
    reshard_after_forward: bool = True
    mixed_precision: str = "auto"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"distributed.strategy: expected one of {', '.join(STRATEGIES)}, received {self.strategy!r}"
                f"{did_you_mean(str(self.strategy), STRATEGIES)}"
            )
        for name in ("activation_checkpointing", "reshard_after_forward"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"distributed.{name}: expected true or false, received {getattr(self, name)!r}"
                )
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                f"distributed.mixed_precision: expected one of {', '.join(MIXED_PRECISION)}, received "
                f"{self.mixed_precision!r}{did_you_mean(str(self.mixed_precision), MIXED_PRECISION)}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DistributedConfig:
        """Build from a run file's mapping (None: the defaults); unknown keys raise ``ConfigError``."""
        if data is None:
            return cls()
        if isinstance(data, DistributedConfig):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"distributed: expected a mapping, received {type(data).__name__}: {data!r}")
        reject_unknown_keys("distributed", data, cls)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping, YAML/JSON-serialisable (``from_dict(c.to_dict()) == c``)."""
        return dataclasses.asdict(self)

    @property
    def sharded(self) -> bool:
        """True for FSDP2: parameters, gradients, optimizer state and checkpoints are sharded."""
        return self.strategy == "fsdp"


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
    module: nn.Module,
    context: DistributedContext,
    *,
    find_unused_parameters: bool = False,
    config: DistributedConfig | None = None,
) -> nn.Module:
    """``module`` ready for data-parallel training: wrapped in ``DistributedDataParallel``, or sharded in
    place with FSDP2 (``config.strategy == "fsdp"``; see :func:`shard_with_fsdp`) when several processes
    train; itself on one process.

    DDP broadcasts rank 0's parameters and buffers at construction, so every process starts equal; FSDP2
    shards the parameters each process holds, which the trainer seeds alike on every process.
    Call it after freezing (``requires_grad``) and before building the optimizer: sharding replaces every
    parameter by a sharded one.
    """
    if not context.is_distributed:
        return module
    if config is not None and config.sharded:
        return shard_with_fsdp(module, context, config)
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def fsdp_mixed_precision(config: DistributedConfig, device: torch.device) -> Any:
    """FSDP2's ``MixedPrecisionPolicy`` for ``config.mixed_precision`` on ``device``: bf16 parameters for
    compute with fp32 gradient reduction (``auto`` on CUDA, or ``bf16``), else no cast."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if config.mixed_precision == "bf16" or (config.mixed_precision == "auto" and device.type == "cuda"):
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard_with_fsdp(module: nn.Module, context: DistributedContext, config: DistributedConfig) -> nn.Module:
    """Shard ``module`` in place with FSDP2 over every process of the group; returns it (now an
    ``FSDPModule``, called like before).

    Units: each entry of ``module.shard_units()`` when the model has it (lists of modules all-gathered
    together: for F1, one trunk layer of every expert, or one vision block), then ``module`` itself for
    the parameters no unit holds. Frozen parameters (``requires_grad`` False) are sharded too and get no
    gradient. The parameters of ``module.unsharded_modules()`` (F1's frozen tokenizer) are left out:
    whole on every process, in their own dtype.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # A trunk layer's first half returns its queries, keys and values as views (of the projections), which
    # FSDP2 warns about in case the caller writes into them in place; the trunk never does.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDPExpertLayer", category=UserWarning)
    mesh = init_device_mesh(context.device.type, (context.world_size,))
    whole = getattr(module, "unsharded_modules", None)
    ignored = {p for part in (whole() if callable(whole) else []) for p in part.parameters()}
    options = {
        "mesh": mesh,
        "mp_policy": fsdp_mixed_precision(config, context.device),
        "reshard_after_forward": config.reshard_after_forward,
        "ignored_params": ignored or None,
    }
    units = getattr(module, "shard_units", None)
    for unit in units() if callable(units) else []:
        fully_shard(unit if len(unit) > 1 else unit[0], **options)
    # the root's parameters are all-gathered at the start of forward and kept until backward is done
    fully_shard(module, **{**options, "reshard_after_forward": False})
    return module


def is_sharded(module: nn.Module) -> bool:
    """True when FSDP2 sharded ``module`` (its parameters are ``DTensor`` shards)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


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
