"""A whole training run from one YAML file: build policy and data, pick the stage, train, checkpoint, resume.

The run file names the factories that build the model and the dataset, so the trainer depends on no
particular model or dataset::

    model: {preset: tiny}                # factory(config: dict) -> TrainableModel (an nn.Module)
    data: {root: data/my-robot}          # factory(config: dict[, policy=...]) -> map-style Dataset
    output_dir: runs/stage3
    init_from: runs/stage2          # optional: start from these weights (ignored when resuming)
    train: {steps: 1000, batch_size: 64}   # optional overrides of the stage config
    distributed: {strategy: fsdp, activation_checkpointing: true}   # optional (default: ddp)

``factory`` names a registered factory (:mod:`f1.train.registry`: built-in ``f1`` and ``lerobot``, the
defaults, or one an installed package declares as an entry point); a run file never names code to import.
Everything else in ``model``/``data`` is passed to the factory as a plain dict. A data factory that takes
a ``policy`` keyword gets the built model (to follow its history, chunk and camera settings); a model
factory that takes a ``data`` keyword gets the data section (the built-in one builds the embodiment from
the dataset).

A run whose model is an :class:`~f1.model.F1Model` ends by writing ``<output_dir>/policy``, an
``F1Policy.save`` folder of the last step's weights (``F1Policy.load``, ``f1 eval --policy`` and
``f1 convert --base`` read it); ``f1 export`` makes one of any checkpoint. A LoRA run (``train: {lora:
{...}}``) also writes ``<output_dir>/adapter`` (the adapters alone, :func:`f1.train.lora.save_adapter`),
and its ``policy`` folder holds the merged policy (the same as ``f1 convert --merge-lora`` of the adapters
into the base policy).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import Dataset

from f1.checks import config_differences, merge_overrides, reject_unknown_keys
from f1.keys import IMAGE_KEY_PREFIX
from f1.model import F1Model
from f1.model.checkpoint import save_model

from .batches import SeededBatchStream
from .checkpoint import latest_checkpoint, load_policy_weights, read_checkpoint_metadata
from .config import (
    ConfigError,
    StageConfig,
    load_stage_config,
    read_yaml_mapping,
)
from .distributed import DistributedConfig, DistributedContext, init_distributed, is_sharded
from .lora import ADAPTER_DIR, adapt_for_stage, lora_state, merged_model, save_adapter
from .metrics import METRICS_FILE
from .registry import resolve_factory
from .rng import seed_everything
from .tokenizer import TokenizerObjective, background_median
from .trainer import Trainer, TrainResult

log = logging.getLogger(__name__)

DEFAULT_POLICY_FACTORY = "f1"
DEFAULT_DATASET_FACTORY = "lerobot"
DEVICES = ("auto", "cpu", "cuda")
#: The folder under ``output_dir`` that receives the policy (``F1Policy.save``) when a run ends.
POLICY_DIR = "policy"


@dataclass(frozen=True)
class RunConfig:
    """One training run: which policy and data (through factories), where outputs go, stage overrides."""

    output_dir: str
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 0
    device: str = "auto"
    threads: int | None = None  # torch intra-op threads per process (None: torch's default)
    # data parallelism under torchrun: ddp | fsdp, activation checkpointing, FSDP2's options
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    # Every parameter F1 builds gets a gradient in every mode (the experts whose outputs nothing reads are
    # built keys/values-only in their last layer: mot's last_layer_kv_only), so DDP need not search for
    # unused ones. True for a policy with several embodiments: a batch without one leaves its adapter
    # without a gradient.
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, str | os.PathLike) or not str(self.output_dir):
            raise ConfigError(f"output_dir must be a path, received {self.output_dir!r}")
        object.__setattr__(self, "output_dir", str(self.output_dir))
        for name in ("model", "data", "train"):
            value = getattr(self, name)
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name} must be a mapping, received {type(value).__name__}: {value!r}")
            object.__setattr__(self, name, dict(value))
        for name, default in (("model", DEFAULT_POLICY_FACTORY), ("data", DEFAULT_DATASET_FACTORY)):
            resolve_factory(getattr(self, name).get("factory", default), name)  # a registered name
        if self.init_from is not None and not isinstance(self.init_from, str | os.PathLike):
            raise ConfigError(f"init_from must be a path or null, received {self.init_from!r}")
        if (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 0
        ):
            raise ConfigError(f"num_workers must be an integer >= 0, received {self.num_workers!r}")
        if not isinstance(self.find_unused_parameters, bool):
            raise ConfigError(
                f"find_unused_parameters must be true or false, received {self.find_unused_parameters!r}"
            )
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ConfigError(f"threads must be an integer >= 1 or null, received {self.threads!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, received {self.device!r}")
        object.__setattr__(self, "distributed", DistributedConfig.from_dict(self.distributed))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Build from a mapping; unknown keys raise ``ConfigError`` with a suggestion."""
        reject_unknown_keys("run config", data, cls)
        if "output_dir" not in data:
            raise ConfigError("run config: output_dir is required (where metrics and checkpoints go)")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
        """Read a run file, apply dotted ``overrides`` (e.g. ``{"train.steps": 10}``), validate."""
        data = read_yaml_mapping(Path(path), what="run config")
        defaults = {f.name: None for f in dataclasses.fields(cls)}
        merged = merge_overrides(
            {**defaults, **data},
            overrides or {},
            where="run config",
            # validated by factories / StageConfig / DistributedConfig
            open_sections=frozenset({"model", "data", "train", "distributed"}),
        )
        return cls.from_dict({k: v for k, v in merged.items() if v is not None or k in data})

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping, YAML/JSON-serialisable (``distributed`` too: ``asdict`` recurses)."""
        return dataclasses.asdict(self)

    @property
    def policy_factory(self) -> str:
        """The registered name of the factory that builds the model."""
        return str(self.model.get("factory", DEFAULT_POLICY_FACTORY))

    @property
    def dataset_factory(self) -> str:
        """The registered name of the factory that builds the training dataset."""
        return str(self.data.get("factory", DEFAULT_DATASET_FACTORY))


def _factory_arguments(section: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k != "factory"}


def _call_factory(
    factory: Callable[..., Any], reference: str, section: str, arguments: dict[str, Any], **extra: Any
) -> Any:
    """``factory(arguments, **extra)``; its configuration errors are reported as errors of ``section``."""
    try:
        return factory(arguments, **extra)
    except ConfigError:
        raise
    except ValueError as error:  # the factories' own configuration errors (e.g. f1.model.ConfigError)
        raise ConfigError(f"{section} ({reference}): {error}") from error


def build_stage_config(run: RunConfig, stage: int | str | Path) -> StageConfig:
    """The shipped stage (0-3 or a shipped name) or a stage YAML file, with the run's ``train`` overrides."""
    return load_stage_config(stage, run.train)


def run_training(
    run: RunConfig,
    stage: int | str | Path,
    *,
    resume: bool = False,
    stop_at_step: int | None = None,
    progress: bool = True,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Train ``run`` through ``stage`` (0-3, a shipped name such as ``"tokenizer"`` or
    ``"stage3_scratch"``, or a stage YAML path), on 1 process or under ``torchrun``.

    ``resume``: continue from the latest checkpoint in ``output_dir`` when there is one. Without it, an
    ``output_dir`` that already holds checkpoints is an error (nothing is overwritten).
    ``time_budget_s``: seconds of training, after which the run stops cleanly (see :meth:`Trainer.fit`).
    ``run.threads``, when set, is applied with ``torch.set_num_threads`` for the rest of the process.
    Every check (configs, factories, paths, the dataset against the embodiment, the first batch through
    the model) runs before anything is written. An F1 model's run ends by writing ``output_dir/policy``.
    """
    if time_budget_s is not None and (
        isinstance(time_budget_s, bool)
        or not isinstance(time_budget_s, int | float)
        or not 0 < time_budget_s < float("inf")
    ):
        raise ConfigError(f"time_budget_s must be a finite number of seconds > 0, received {time_budget_s!r}")
    stage_config = build_stage_config(run, stage)
    output_dir = Path(run.output_dir)
    checkpoints_dir = output_dir / "checkpoints"
    previous = latest_checkpoint(checkpoints_dir)
    if previous is not None and not resume:
        raise ConfigError(
            f"output_dir {output_dir} already holds checkpoints (latest: {previous.name}); "
            "pass --resume to continue that run, or choose another output_dir"
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"output_dir {output_dir} exists and is not a directory")
    if previous is not None:
        _check_resumed_run(run, previous)
    metrics = output_dir / METRICS_FILE
    if previous is None and metrics.is_file() and metrics.stat().st_size > 0:
        raise ConfigError(
            f"output_dir {output_dir} holds {METRICS_FILE} of an earlier run but no checkpoint to "
            f"{'resume from' if resume else 'continue'}; starting over would replace those metrics: choose "
            "another output_dir"
        )
    if run.init_from is not None and not Path(run.init_from).exists():
        raise ConfigError(f"init_from: path not found: {run.init_from}")
    build_policy = resolve_factory(run.policy_factory, "model")
    build_dataset = resolve_factory(run.dataset_factory, "data")

    if run.threads is not None:
        torch.set_num_threads(run.threads)
    context = init_distributed(None if run.device == "auto" else run.device)
    try:
        seed_everything(stage_config.seed)  # the same initial weights on every process
        data_arguments = _factory_arguments(run.data)
        model_extra = {}
        if "data" in inspect.signature(build_policy).parameters:
            model_extra["data"] = {**run.data, "factory": run.dataset_factory}
        policy = _call_factory(
            build_policy, run.policy_factory, "model", _factory_arguments(run.model), **model_extra
        )
        if run.init_from is not None and previous is None:
            loaded = load_policy_weights(policy, Path(run.init_from))
            log.info("initialised the policy from %s", loaded)
        if stage_config.objective == "tokenizer" and not isinstance(policy, F1Model):
            raise ConfigError(
                f"stage {stage}: the tokenizer objective trains the VQ-VAE of an F1 model; the model factory "
                f"{run.policy_factory!r} built a {type(policy).__name__}"
            )
        if stage_config.objective == "tokenizer" and run.dataset_factory == DEFAULT_DATASET_FACTORY:
            # single frames: no history window to decode (a value the run file gives still wins)
            data_arguments = {"history_offsets": [], **data_arguments}
        if "policy" in inspect.signature(build_dataset).parameters:
            dataset = _call_factory(build_dataset, run.dataset_factory, "data", data_arguments, policy=policy)
        else:
            dataset = _call_factory(build_dataset, run.dataset_factory, "data", data_arguments)
        if not isinstance(dataset, Dataset):
            raise TypeError(
                f"{run.dataset_factory} must return a torch Dataset, received {type(dataset).__name__}"
            )
        split = context.world_size * stage_config.accumulation_steps
        if stage_config.batch_size % split:
            raise ConfigError(
                f"train.batch_size {stage_config.batch_size} does not split over "
                f"{context.world_size} processes x {stage_config.accumulation_steps} accumulation_steps"
            )
        trained: Any = policy
        if stage_config.objective == "tokenizer":
            try:
                trained = TokenizerObjective(
                    policy,
                    background_median(
                        dataset, camera_key_of(policy), tuple(policy.config.generation.vqvae.image_size)
                    ),
                )
            except ValueError as error:  # InputError: frames of another shape
                raise ConfigError(f"stage {stage}: {error}") from error
        per_process = stage_config.batch_size // split
        batches = SeededBatchStream(
            dataset,
            per_process,
            seed=stage_config.seed,
            rank=context.rank,
            world_size=context.world_size,
            num_workers=run.num_workers,
            pin_memory=context.device.type == "cuda",
        )
        shipped = isinstance(stage, int) or (isinstance(stage, str) and not Path(stage).suffix)
        stage_name = str(stage) if shipped else str(Path(stage).resolve())
        metadata: dict[str, Any] = {"run": run.to_dict(), "stage": stage_name}
        if isinstance(policy, F1Model):  # what f1 export rebuilds the policy from
            metadata["policy_config"] = policy.config.to_dict()
        if not run.distributed.sharded:  # FSDP2 reduces whatever gradients there are
            _warn_if_adapters_may_lack_gradients(policy, stage_config, context, run.find_unused_parameters)
        trainer = Trainer(
            trained,
            batches,
            stage_config,
            output_dir=output_dir,
            context=context,
            metadata=metadata,
            progress=progress,
            find_unused_parameters=run.find_unused_parameters,
            distributed=run.distributed,
        )
        if previous is not None:
            used = trainer.resume(checkpoints_dir)
            log.info("resumed from %s at step %d", used, trainer.step)
        try:  # the first batch through the model, before anything is written
            trainer.check_first_batch()
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError) as error:  # InputError, missing losses, bad batches
            raise ConfigError(f"the first batch does not fit the model: {error}") from error
        if context.is_main:
            _write_text_atomically(output_dir / "run.yaml", yaml.safe_dump(run.to_dict(), sort_keys=False))
            _write_text_atomically(output_dir / "stage.yaml", stage_config.to_yaml())
        result = trainer.fit(stop_at_step=stop_at_step, time_budget_s=time_budget_s)
        if isinstance(policy, F1Model):
            # sharded: every process takes part in gathering the whole weights; rank 0 writes them
            whole = unsharded_copy(policy, stage_config, context) if is_sharded(policy) else policy
            if context.is_main and whole is not None:
                if lora_state(whole) is not None:
                    result.adapter_dir = save_adapter(whole, output_dir / ADAPTER_DIR)
                result.policy_dir = save_policy_folder(whole, output_dir / POLICY_DIR)
        return result
    finally:
        if context.is_distributed and dist.is_initialized():
            dist.destroy_process_group()


#: Run-config keys a resumed run may change: they do not change what is trained (the stage config, compared
#: by the trainer, covers ``train``; ``init_from`` is ignored when resuming).
RUN_RESUME_MAY_CHANGE = frozenset(
    {
        "output_dir",
        "init_from",
        "train",
        "num_workers",
        "device",
        "threads",
        "find_unused_parameters",
        "distributed",  # the strategy and its options change how, not what, is trained
    }
)


def _warn_if_adapters_may_lack_gradients(
    policy: Any, stage_config: StageConfig, context: DistributedContext, find_unused_parameters: bool
) -> bool:
    """Warn (and return True) when DDP runs without ``find_unused_parameters`` while the stage trains the
    adapters of an F1 policy with several embodiments: a batch without one leaves its adapter without a
    gradient, which DDP refuses at the next step."""
    adapters = list(policy.adapters) if isinstance(policy, F1Model) else []
    trained = "embodiment" not in stage_config.frozen
    if not context.is_distributed or find_unused_parameters or not trained or len(adapters) < 2:
        return False
    log.warning(
        "the policy has %d embodiments (%s): a step whose batch lacks one leaves its adapter without a "
        "gradient, which DDP refuses; set find_unused_parameters: true in the run file unless every batch "
        "holds every embodiment",
        len(adapters),
        ", ".join(adapters),
    )
    return True


def _check_resumed_run(run: RunConfig, checkpoint: Path) -> None:
    """Refuse to resume ``checkpoint`` with another model or data configuration, naming every difference."""
    saved = read_checkpoint_metadata(checkpoint).get("run")
    if not isinstance(saved, Mapping):
        return  # written by a trainer used directly, without a run file: nothing to compare
    differences = config_differences(saved, run.to_dict(), ignore=RUN_RESUME_MAY_CHANGE)
    if differences:
        raise ConfigError(
            f"{checkpoint} was written by a run with another configuration; resuming would not continue "
            f"the same run. Differences: {'; '.join(differences)}"
        )


def _write_text_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def camera_key_of(model: F1Model) -> str:
    """``observation.images.<foresight camera>`` of ``model``: the frames the tokenizer stage trains on."""
    return IMAGE_KEY_PREFIX + model.config.foresight_camera


def unsharded_copy(model: F1Model, stage: StageConfig, context: DistributedContext) -> F1Model | None:
    """A plain (unsharded) copy of an FSDP2-sharded ``model`` with its whole weights, on the main process
    (None elsewhere). Every process must call this: the shards are all-gathered. A model trained with LoRA
    gets the same adapters (``stage.lora``) before its weights are loaded."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not context.is_main:
        return None
    with torch.device("meta"):  # the gathered tensors are assigned: no second initialisation of the model
        copy = F1Model(model.config)
        adapt_for_stage(copy, stage)
    copy.load_state_dict(weights, strict=True, assign=True)
    return copy


def save_policy_folder(model: F1Model, directory: Path) -> Path:
    """``F1Policy.save`` of ``model`` into ``directory`` (each file written atomically); returns it. A model
    with LoRA adapters is saved merged (:func:`f1.train.lora.merged_model`): a plain policy folder."""
    if lora_state(model) is not None:
        save_model(merged_model(model), directory)
        return directory
    was_training = model.training
    model.eval()
    try:
        save_model(model, directory)
    finally:
        model.train(was_training)
    return directory


def summarize(result: TrainResult) -> str:
    """One JSON line about a finished ``run_training`` call (for the command line)."""
    last = result.history[-1] if result.history else {}
    return json.dumps(
        {
            "step": result.step,
            "last_loss": last.get("loss"),
            "checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
            "policy": str(result.policy_dir) if result.policy_dir else None,
            "adapter": str(result.adapter_dir) if result.adapter_dir else None,
            "stopped_by_time_budget": result.stopped_by_time_budget,
        }
    )
