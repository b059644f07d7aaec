"""The one trainer of all three stages: a ``StageConfig`` decides what is frozen, which losses count, how."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from f1.checks import config_differences, did_you_mean
from f1.errors import ConfigError

from .batches import SeededBatchStream, as_resumable
from .checkpoint import (
    CheckpointError,
    TrainingCheckpoint,
    check_weights_fit,
    read_checkpoint,
    save_checkpoint,
    save_sharded_checkpoint,
)
from .config import StageConfig
from .distributed import (
    DistributedConfig,
    DistributedContext,
    all_gather_objects,
    any_process,
    barrier,
    current_context,
    is_sharded,
    mean_across_processes,
    wrap_for_data_parallel,
)
from .lora import adapt_for_stage
from .metrics import MetricsLogger
from .optim import apply_freezing, build_optimizer, build_scheduler, validated_parameter_groups
from .protocol import Batch, TrainableModel
from .rng import capture_rng_state, restore_rng_state, seed_everything
from .sharded_checkpoint import load_sharded_state

log = logging.getLogger(__name__)

#: Stage-config keys that may differ between a checkpoint and the run that resumes it (they do not change the
#: trajectory of the parameters).
RESUME_MAY_CHANGE = frozenset({"log_interval", "checkpoint_interval", "keep_checkpoints"})


@dataclass
class TrainResult:
    """What one ``Trainer.fit`` call did."""

    #: Optimizer steps completed in total (including those before a resume).
    step: int
    #: This process's losses, one dict per step of this call: "loss" (the weighted total) and each loss.
    history: list[dict[str, float]] = field(default_factory=list)
    #: The checkpoint written last (None on processes other than the main one).
    last_checkpoint: Path | None = None
    #: Whether this process is the one that logs and writes checkpoints.
    is_main: bool = True
    #: Whether training stopped early because the process received SIGTERM (e.g. a preempted job).
    stopped_by_signal: bool = False
    #: Whether training stopped early because its wall-clock budget (``fit(time_budget_s=...)``) ran out.
    stopped_by_time_budget: bool = False
    #: The policy folder the run wrote when it ended (``run_training`` with an F1 model), else None.
    policy_dir: Path | None = None
    #: The adapter folder a LoRA run wrote when it ended (``run_training``, a stage with ``lora``), else None.
    adapter_dir: Path | None = None


def move_to_device(batch: Batch, device: torch.device) -> dict[str, Any]:
    """``batch`` with every tensor (also inside nested dicts/lists) on ``device``; other values unchanged."""

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, Mapping):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list | tuple) and value and isinstance(value[0], torch.Tensor):
            return type(value)(move(v) for v in value)
        return value

    return move(batch)


def use_bf16_autocast(precision: str, device: torch.device) -> bool:
    """``precision`` "auto" means bf16 autocast on a CUDA device that supports it, fp32 elsewhere."""
    if precision == "bf16":
        return True
    if precision == "fp32":
        return False
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def _weighted_losses(model: Any, weights: Mapping[str, float]) -> dict[str, float]:
    """The stage's loss weights that apply to ``model``: a weight of 0 turns a loss off, and a loss that the
    model's configuration does not compute is not weighted (No-Gen under a recipe that weights the foresight).

    A model tells which losses it returns with ``loss_names`` and which its family may return with
    ``known_loss_names`` (:class:`f1.model.F1Model` does); a weighted name outside the family is a typo and
    refused. A model without them must return every weighted loss.
    """
    active = {name: weight for name, weight in weights.items() if weight != 0}
    returned = getattr(model, "loss_names", None)
    if returned is not None:
        known = tuple(getattr(model, "known_loss_names", returned))
        unknown = sorted(name for name in active if name not in known)
        if unknown:
            raise ConfigError(
                f"loss_weights: {unknown} {'is' if len(unknown) == 1 else 'are'} no loss of this model "
                f"(its losses: {list(known)}{did_you_mean(unknown[0], known)})"
            )
        active = {name: weight for name, weight in active.items() if name in returned}
    if not active:
        raise ConfigError(
            f"loss_weights: nothing to train: the stage weights {dict(weights)} and the model computes "
            f"{list(returned) if returned is not None else 'unknown losses'}"
        )
    return active


class StopRequest:
    """Turns SIGTERM (a scheduler preempting the job) into a request to stop after the current step.

    Installed only in the main thread (Python delivers signals there); elsewhere it never fires.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    @classmethod
    def install(cls) -> StopRequest:
        """A request flag, raised by the next SIGTERM until ``uninstall``."""
        request = cls()
        if threading.current_thread() is threading.main_thread():
            request._previous = signal.signal(signal.SIGTERM, request._handle)
            request._installed = True
        return request

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def uninstall(self) -> None:
        """Give SIGTERM back to the handler that was there before."""
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False


class Trainer:
    """Train a ``TrainableModel`` on batches according to one ``StageConfig``.

    Args:
        model: an ``nn.Module`` implementing ``TrainableModel`` (e.g. :class:`f1.model.F1Model`); moved to
            ``context.device``. Its ``forward`` is the training pass, called through DDP when distributed.
        batches: per-process batches (dicts of tensors). A ``SeededBatchStream`` resumes exactly; any other
            re-iterable is replayed and resumes exactly only if each pass yields the same batches.
        config: the stage: frozen groups, loss weights, optimizer, schedule, steps, intervals, seed.
        output_dir: where ``metrics.jsonl`` and ``checkpoints/`` go; None = neither is written.
        context: the data-parallel context (``init_distributed()``); None = the current process group, on CPU.
        metadata: JSON-serialisable facts stored in every checkpoint (e.g. the model and data configs).
        progress: show a tqdm progress bar (main process only).
        tensorboard: mirror metrics to TensorBoard; None = when it is installed.
        find_unused_parameters: passed to DDP, for models whose trainable parameters skip some steps.
        distributed: the data-parallel strategy (DDP or FSDP2), activation checkpointing and FSDP2's
            options (:class:`~f1.train.distributed.DistributedConfig`; None: DDP, no checkpointing). Under
            ``fsdp`` the checkpoints are sharded (also on one process), and load on any number of processes.

    Every process seeds its RNGs with ``config.seed + rank`` here; a resume restores them from the checkpoint.
    """

    def __init__(
        self,
        model: TrainableModel,
        batches: Iterable[Batch],
        config: StageConfig,
        *,
        output_dir: Path | None = None,
        context: DistributedContext | None = None,
        metadata: Mapping[str, Any] | None = None,
        progress: bool = True,
        tensorboard: bool | None = None,
        find_unused_parameters: bool = False,
        distributed: DistributedConfig | None = None,
    ) -> None:
        if not isinstance(config, StageConfig):
            raise TypeError(f"config must be a StageConfig, received {type(config).__name__}")
        self.context = context or current_context()
        self.config = config
        split = self.context.world_size * config.accumulation_steps
        if config.batch_size % split:
            raise ValueError(
                f"config.batch_size (global) must be divisible by processes x accumulation_steps: "
                f"{config.batch_size} % ({self.context.world_size} x {config.accumulation_steps}) != 0"
            )
        if isinstance(batches, SeededBatchStream) and batches.batch_size != self.micro_batch_size:
            raise ValueError(
                f"batches yield {batches.batch_size} samples per process but the stage asks for "
                f"{self.micro_batch_size} (batch_size {config.batch_size} / "
                f"{self.context.world_size} processes / {config.accumulation_steps} accumulation steps)"
            )
        self.distributed = distributed if distributed is not None else DistributedConfig()
        if not isinstance(self.distributed, DistributedConfig):
            raise TypeError(
                f"distributed must be a DistributedConfig, received {type(self.distributed).__name__}"
            )
        adapt_for_stage(model, config)  # LoRA adapters (peft) when the stage has a lora section
        groups = validated_parameter_groups(model)
        self.loss_weights = _weighted_losses(model, config.loss_weights)
        trainable = apply_freezing(groups, config.frozen)
        self.model: nn.Module = model.to(self.context.device)  # type: ignore[attr-defined]
        if self.distributed.activation_checkpointing:
            checkpointing = getattr(self.model, "set_activation_checkpointing", None)
            if not callable(checkpointing):
                raise ConfigError(
                    f"distributed.activation_checkpointing: {type(self.model).__name__} has no "
                    "set_activation_checkpointing(enabled) (an F1Model has)"
                )
            checkpointing(True)
        self.forward_module = wrap_for_data_parallel(
            self.model,
            self.context,
            find_unused_parameters=find_unused_parameters,
            config=self.distributed,
        )
        self._sharded = is_sharded(self.model)  # FSDP2 sharded it (several processes)
        if self._sharded:  # sharding replaced every parameter: collect the trainable ones again
            trainable = apply_freezing(validated_parameter_groups(self.model), config.frozen)
        self.trainable_parameters = [p for params in trainable.values() for p in params]
        self.optimizer = build_optimizer(trainable, config.optimizer)
        self.scheduler = build_scheduler(self.optimizer, config.schedule, config.steps)
        self.batches = as_resumable(batches)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.metadata = dict(metadata or {})
        self.progress = progress
        self.tensorboard = tensorboard
        self.bf16 = use_bf16_autocast(config.precision, self.context.device)
        self.step = 0
        self._step_lrs: dict[str, float] = {}
        self._resumed_from_step = 0
        self._saved_step: int | None = None  # step of the newest checkpoint this run wrote or resumed from
        self._budget_reached = False  # the step being logged is the last of a time budget
        seed_everything(config.seed + self.context.rank)

    @property
    def micro_batch_size(self) -> int:
        """Samples per batch on each process: the global batch split over processes and accumulation steps."""
        return self.config.batch_size // (self.context.world_size * self.config.accumulation_steps)

    @property
    def checkpoints_dir(self) -> Path | None:
        """``<output_dir>/checkpoints``, or None without an output directory."""
        return self.output_dir / "checkpoints" if self.output_dir is not None else None

    # ----------------------------------------------------------------------------------------------- resume

    def resume(self, path: Path) -> Path:
        """Continue from the checkpoint at (or latest under) ``path``; return the checkpoint used.

        Every file is read and checked against this trainer (stage config, weight names and shapes,
        optimizer groups) before anything changes, so a bad checkpoint leaves the trainer as it was.
        """
        checkpoint = read_checkpoint(Path(path))
        self._check_compatible(checkpoint)
        if checkpoint.sharded:  # every process reads its shards (checked against the metadata first)
            load_sharded_state(checkpoint.sharded_dir, self.model, self.optimizer)
        else:
            assert checkpoint.weights is not None
            assert checkpoint.optimizer is not None
            self.model.load_state_dict(checkpoint.weights, strict=True)
            self.optimizer.load_state_dict(checkpoint.optimizer)
        self.scheduler.load_state_dict(checkpoint.scheduler)
        rank = self.context.rank
        exact = checkpoint.world_size == self.context.world_size
        if not exact:
            log.warning(
                "resuming a %d-process checkpoint on %d processes: data order is kept, random streams "
                "are not, so the run is not bitwise identical to an uninterrupted one",
                checkpoint.world_size,
                self.context.world_size,
            )
        self.batches.load_state_dict(checkpoint.batch_states[min(rank, len(checkpoint.batch_states) - 1)])
        if exact:
            restore_rng_state(checkpoint.rng_states[rank])
        else:
            seed_everything(self.config.seed + rank + checkpoint.step * 1_000)
        self.step = checkpoint.step
        self._resumed_from_step = checkpoint.step
        self._saved_step = checkpoint.step
        return checkpoint.path

    def _check_compatible(self, checkpoint: TrainingCheckpoint) -> None:
        differences = config_differences(
            checkpoint.stage_config,
            self.config.to_dict(),
            ignore=RESUME_MAY_CHANGE,
            compared_whole=frozenset({"loss_weights", "group_lr"}),
        )
        if differences:
            raise CheckpointError(
                f"{checkpoint.path} was written by a different stage config; resuming would not continue "
                f"the same run. Differences: {'; '.join(differences)}"
            )
        if not checkpoint.sharded:
            if self._sharded:
                raise CheckpointError(
                    f"{checkpoint.path} is a checkpoint of an unsharded (DDP or one-process) run; an FSDP "
                    "run resumes only sharded checkpoints: start it from these weights with init_from"
                )
            assert checkpoint.weights is not None
            check_weights_fit(self.model, checkpoint.weights, checkpoint.path)
        names = [g.get("name") for g in self.optimizer.param_groups]
        if checkpoint.param_group_names != names:
            raise CheckpointError(
                f"{checkpoint.path}: optimizer groups differ: "
                f"checkpoint {checkpoint.param_group_names}, now {names}"
            )
        if checkpoint.optimizer is not None:  # a sharded checkpoint's groups are checked as it loads
            saved_sizes = [len(g["params"]) for g in checkpoint.optimizer.get("param_groups", [])]
            sizes = [len(g["params"]) for g in self.optimizer.param_groups]
            if saved_sizes != sizes:
                raise CheckpointError(
                    f"{checkpoint.path}: optimizer group sizes differ: checkpoint {saved_sizes}, now {sizes}"
                )
        if checkpoint.step > self.config.steps:
            raise CheckpointError(
                f"{checkpoint.path} is at step {checkpoint.step}, beyond steps={self.config.steps}"
            )

    # ----------------------------------------------------------------------------------------------- training

    def check_first_batch(self) -> None:
        """Run the model's forward on the first batch, without gradients, and check what it returns: a
        batch that does not fit the model (dimensions, image size, keys) or a stage that weights a loss
        the model does not compute fails here, before a run writes anything. The batch stream and every
        random generator are left as they were, so training is unchanged (bitwise)."""
        state, rng, training = self.batches.state_dict(), capture_rng_state(), self.model.training
        self.model.eval()  # no running statistics move
        try:
            batch = move_to_device(next(iter(self.batches)), self.context.device)
            autocast = torch.autocast(self.context.device.type, dtype=torch.bfloat16, enabled=self.bf16)
            with torch.no_grad(), autocast:
                losses = self.model(batch, generation_scales=self.config.generation_scales)
            self._weighted_total(losses)
        except StopIteration:
            raise ValueError("batches: the stream yields no batch (an empty dataset?)") from None
        finally:
            self.model.train(training)
            self.batches.load_state_dict(state)
            restore_rng_state(rng)

    def train_step(self, batches: Batch | Sequence[Batch]) -> dict[str, torch.Tensor]:
        """One optimizer step on one batch, or on ``config.accumulation_steps`` micro-batches (a sequence).

        Returns detached losses averaged over the micro-batches ("loss": the weighted sum) and "grad_norm"
        (before clipping).
        """
        micro_batches = [batches] if isinstance(batches, Mapping) else list(batches)
        if len(micro_batches) != self.config.accumulation_steps:
            raise ValueError(
                f"train_step needs accumulation_steps={self.config.accumulation_steps} micro-batches, "
                f"received {len(micro_batches)}"
            )
        summed: dict[str, torch.Tensor] = {}
        for index, batch in enumerate(micro_batches):
            last = index == len(micro_batches) - 1
            # Under DDP, gradients are all-reduced once, on the last micro-batch.
            with self._gradient_sync(last):
                batch = move_to_device(batch, self.context.device)
                with torch.autocast(self.context.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    # through the DDP wrapper: its gradient hooks are armed
                    losses = self.forward_module(batch, generation_scales=self.config.generation_scales)
                total = self._weighted_total(losses)
                (total / len(micro_batches)).backward()
            for name, value in {**losses, "loss": total}.items():
                summed[name] = summed.get(name, 0) + value.detach().float()
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable_parameters, max_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: the norm over every shard, a replicated DTensor
            grad_norm = grad_norm.full_tensor()
        self.optimizer.step()
        self._step_lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}  # the rates this step used
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        result = {name: value / len(micro_batches) for name, value in summed.items()}
        result["grad_norm"] = grad_norm.detach().float()
        return result

    def _gradient_sync(self, enabled: bool) -> contextlib.AbstractContextManager[Any]:
        if self._sharded:  # FSDP2: reduce-scatter only on the last micro-batch
            self.forward_module.set_requires_gradient_sync(enabled)  # type: ignore[operator]
            return contextlib.nullcontext()
        if enabled or not isinstance(self.forward_module, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.forward_module.no_sync()

    def _weighted_total(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(losses, Mapping):
            raise TypeError(
                f"the model's forward must return a dict of scalar tensors, received {type(losses).__name__}"
            )
        missing = [n for n in self.loss_weights if n not in losses]
        if missing:
            raise KeyError(
                f"the stage weights losses {missing} that the model's forward did not return "
                f"(returned: {sorted(losses)})"
            )
        for name, value in losses.items():
            if not isinstance(value, torch.Tensor) or value.ndim != 0:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"loss {name!r} must be a 0-dim tensor, received {shape}")
        # Fixed (sorted) order: float addition is not associative and resume must be bitwise.
        return sum(
            (self.loss_weights[n] * losses[n].float() for n in sorted(self.loss_weights)),
            torch.zeros((), device=self.context.device),
        )

    def fit(self, stop_at_step: int | None = None, *, time_budget_s: float | None = None) -> TrainResult:
        """Train until ``config.steps`` (or ``stop_at_step``), then checkpoint.

        Metrics are logged every ``log_interval`` steps and checkpoints written every ``checkpoint_interval``
        steps and when it stops (main process; when ``output_dir`` is set). A SIGTERM to any process (a
        preempted job) makes every process stop after the current step, log and checkpoint it.

        ``time_budget_s``: seconds of training (from the first step of this call); the step that passes
        it is the last: it is logged with ``time_budget_reached: 1.0`` and checkpointed, and every process
        stops there together. ``--resume`` continues the run afterwards.
        """
        if stop_at_step is not None and (isinstance(stop_at_step, bool) or stop_at_step < 0):
            raise ValueError(f"stop_at_step must be >= 0 or None, received {stop_at_step}")
        if time_budget_s is not None and (
            isinstance(time_budget_s, bool)
            or not isinstance(time_budget_s, int | float)
            or not 0 < time_budget_s < math.inf
        ):
            raise ValueError(
                f"time_budget_s must be a finite number of seconds > 0, received {time_budget_s!r}"
            )
        target = self.config.steps if stop_at_step is None else min(stop_at_step, self.config.steps)
        logger = None
        if self.context.is_main and self.output_dir is not None:
            logger = MetricsLogger(
                self.output_dir, resume_from_step=self._resumed_from_step, tensorboard=self.tensorboard
            )
        bar = tqdm(
            total=self.config.steps,
            initial=self.step,
            disable=not (self.progress and self.context.is_main),
            desc=self.config.name,
            dynamic_ncols=True,
        )
        result = TrainResult(step=self.step, is_main=self.context.is_main)
        pending: list[dict[str, torch.Tensor]] = []
        stream = iter(self.batches)
        self.forward_module.train()
        started, started_step = time.perf_counter(), self.step
        deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
        self._budget_reached = False
        stop_request = StopRequest.install()
        try:
            while self.step < target:
                micro_batches = [next(stream) for _ in range(self.config.accumulation_steps)]
                pending.append(self.train_step(micro_batches))
                bar.update(1)
                if any_process(stop_request.requested, self.context):  # SIGTERM: stop together, checkpoint
                    result.stopped_by_signal = True
                    log.warning("SIGTERM received: stopping after step %d with a checkpoint", self.step)
                    target = self.step
                if (
                    deadline is not None
                    and self.step < target
                    and any_process(time.monotonic() >= deadline, self.context)
                ):
                    result.stopped_by_time_budget = self._budget_reached = True
                    log.warning(
                        "the time budget of %.0f s is spent: stopping after step %d with a checkpoint",
                        time_budget_s,
                        self.step,
                    )
                    target = self.step
                if self.step % self.config.log_interval == 0 or self.step == target:
                    records = self._flush(pending, result)
                    elapsed = time.perf_counter() - started
                    speed = (self.step - started_step) / elapsed if elapsed > 0 else 0.0
                    self._log(records, logger, bar, speed)
                    started, started_step = time.perf_counter(), self.step
                if self.checkpoints_dir is not None and self.step % self.config.checkpoint_interval == 0:
                    self._flush(pending, result)
                    result.last_checkpoint = self.save()
            if self.checkpoints_dir is not None and self._saved_step != self.step:
                self._flush(pending, result)
                result.last_checkpoint = self.save()
        finally:
            stop_request.uninstall()
            bar.close()
            if logger is not None:
                logger.close()
        result.step = self.step
        return result

    def _flush(self, pending: list[dict[str, torch.Tensor]], result: TrainResult) -> list[dict[str, float]]:
        """The steps' losses as floats (one device sync per log interval), checked to be finite."""
        records = [{k: float(v) for k, v in step.items()} for step in pending]
        first_step = self.step - len(pending) + 1
        pending.clear()
        for offset, record in enumerate(records):
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(
                    f"non-finite loss at step {first_step + offset}: {record}; "
                    "the last checkpoint is unaffected"
                )
        result.history.extend({k: v for k, v in r.items() if k != "grad_norm"} for r in records)
        return records

    def _log(
        self, records: list[dict[str, float]], logger: MetricsLogger | None, bar: Any, speed: float
    ) -> None:
        if not records:
            return
        means = {k: sum(r[k] for r in records) / len(records) for k in records[0]}
        means = mean_across_processes(means, self.context)  # every process joins the all-reduce
        plain = {"loss", "grad_norm", *getattr(self.model, "metric_names", ())}
        values = {(k if k in plain else f"loss/{k}"): v for k, v in means.items()}
        for name, lr in self._step_lrs.items():
            if not name.endswith("/no_decay"):
                values[f"lr/{name}"] = lr
        values["steps_per_s"] = speed
        values["samples_per_s"] = speed * self.config.batch_size
        if self._budget_reached:
            values["time_budget_reached"] = 1.0
        if logger is not None:
            logger.log(self.step, values)
        bar.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)

    def save(self) -> Path | None:
        """Checkpoint the current step (every process must call this); the path on the main process."""
        if self.checkpoints_dir is None:
            raise ValueError("this trainer has no output_dir, so it cannot write checkpoints")
        rng_states = all_gather_objects(capture_rng_state(), self.context)
        batch_states = all_gather_objects(self.batches.state_dict(), self.context)
        path = None
        contents = {
            "step": self.step,
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "stage_config": self.config.to_dict(),
            "rng_states": rng_states,
            "batch_states": batch_states,
            "metadata": self.metadata,
            "keep": self.config.keep_checkpoints,
        }
        if self.distributed.sharded:  # every process writes its shards
            path = save_sharded_checkpoint(self.checkpoints_dir, **contents)
        elif self.context.is_main:
            path = save_checkpoint(self.checkpoints_dir, **contents)
        barrier(self.context)
        self._saved_step = self.step
        return path
