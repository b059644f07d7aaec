"""A training run's checkpoint as a policy folder (``F1Policy.save``'s layout), for ``f1 export``.

The checkpoint's weights are read as tensors only; the policy is rebuilt from the ``F1Config`` the run stored
with every checkpoint (``policy_config`` in its metadata), on the meta device, and every key and shape is
checked before the output folder is touched. A sharded checkpoint (an FSDP run's) is consolidated here, in
one process: its shards are read into the whole model. A checkpoint of a LoRA run (its stage config has
``lora``) is rebuilt with the same adapters and exported merged, as a plain policy
(:func:`f1.train.lora.merged_model`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from f1.errors import CheckpointError, ConfigError
from f1.model import F1Config, F1Model
from f1.model.checkpoint import check_state_dict, drop_unbuilt_tensors, save_model

from .checkpoint import (
    WEIGHTS_FILE,
    _read_state_file,
    is_sharded_checkpoint,
    list_checkpoints,
    read_checkpoint_metadata,
    read_weights,
    resolve_checkpoint,
    step_directory_name,
)
from .config import LoraSettings
from .lora import apply_lora, merged_model
from .sharded_checkpoint import SHARDED_DIR, load_sharded_weights

__all__ = ["export_policy", "policy_from_checkpoint"]


def _checkpoint_of(run: Path, step: int | None) -> Path:
    if step is None:
        return resolve_checkpoint(run)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"checkpoint: expected a step number >= 0, received {step!r}")
    if not run.exists():
        raise CheckpointError(f"run: no such run directory {run}")
    folder = run / "checkpoints"
    found = folder / step_directory_name(step)
    if not found.is_dir():
        steps = [int(p.name.split("_")[1]) for p in list_checkpoints(folder)]
        raise CheckpointError(
            f"checkpoint: {run} holds no checkpoint of step {step} (its checkpoints: steps {steps or 'none'})"
        )
    return found


def policy_from_checkpoint(run: str | Path, *, step: int | None = None) -> tuple[F1Model, Path]:
    """The F1 model a checkpoint of ``f1 train`` holds, and the checkpoint read.

    Args:
        run: a run directory (its latest checkpoint, or the one of ``step``) or one checkpoint directory.
        step: the step of the checkpoint under ``run/checkpoints`` (None: the latest).

    Raises:
        CheckpointError: no such run or checkpoint (naming the steps there are), a checkpoint whose files
            are corrupt, or one written without the F1 policy's config (a model of another factory).
        ConfigError: a LoRA checkpoint without peft installed.
    """
    run = Path(run)
    checkpoint = _checkpoint_of(run, step)
    metadata = read_checkpoint_metadata(checkpoint)
    stored = metadata.get("policy_config")
    if not isinstance(stored, dict):
        raise CheckpointError(
            f"{checkpoint}: the checkpoint stores no F1 policy config (metadata 'policy_config'); it was "
            "written by a run whose model is not an F1 model, or by the trainer used directly"
        )
    try:
        config = F1Config.from_dict(stored)
    except (ConfigError, TypeError, ValueError) as error:
        raise CheckpointError(f"{checkpoint}: the stored policy config is not valid: {error}") from None
    stage = _read_state_file(checkpoint).get("stage_config") or {}
    try:
        lora = None if stage.get("lora") is None else LoraSettings.from_dict(stage["lora"])
    except ConfigError as error:
        raise CheckpointError(f"{checkpoint}: the stored lora settings are not valid: {error}") from None
    with torch.device("meta"):
        model = F1Model(config)
        if lora is not None:  # the same adapters as in training, to merge after loading
            apply_lora(model, lora, frozen=tuple(stage.get("frozen", ())))
    if is_sharded_checkpoint(checkpoint):  # an FSDP run's: the shards are read whole, in this process
        load_sharded_weights(checkpoint / SHARDED_DIR, model)
    else:
        weights = drop_unbuilt_tensors(model, read_weights(checkpoint / WEIGHTS_FILE), str(checkpoint))
        check_state_dict(model, weights, str(checkpoint / WEIGHTS_FILE))
        model.load_state_dict(weights, strict=True, assign=True)
    if lora is not None:
        model = merged_model(model)
    return model.eval(), checkpoint


def export_policy(
    run: str | Path, output: str | Path, *, step: int | None = None, overwrite: bool = False
) -> Path:
    """Write the policy of a run's checkpoint into ``output`` (``model.safetensors`` + ``config.json``).

    Args:
        run: a run directory or one checkpoint (see :func:`policy_from_checkpoint`).
        output: the policy folder; a non-empty one is refused unless ``overwrite``.
        step: the checkpoint's step (None: the latest).
        overwrite: replace the policy files in a non-empty ``output``.

    Returns:
        ``output``, which :meth:`f1.model.F1Policy.load` reads.

    Raises:
        ConfigError: ``output`` is a file, or a non-empty folder without ``overwrite``.
        CheckpointError: see :func:`policy_from_checkpoint`. Nothing is written when anything fails.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output: {output} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ConfigError(
            f"output: {output} is not empty; pass --force (overwrite=True) to replace its policy"
        )
    model, _ = policy_from_checkpoint(run, step=step)
    save_model(model, output)
    return output
