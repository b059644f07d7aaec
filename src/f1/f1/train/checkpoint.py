"""Training checkpoints: written atomically, loaded as tensors only, validated before anything changes.

Layout of one checkpoint, ``<run>/checkpoints/step_00001000/``:

- ``model.safetensors``: the policy's ``state_dict`` (tied tensors stored once, aliases in the metadata);
- ``optimizer.pt``, ``scheduler.pt``, ``rng.pt``: ``torch.save`` of tensors, numbers and strings only, loaded
  with ``torch.load(weights_only=True)``;
- ``trainer_state.json``: format tag, step, world size, the stage config, the batch-stream position of every
  process, the optimizer's param-group names, caller metadata (e.g. the run config), the size of every file.

A *sharded* checkpoint (FSDP2 runs, :func:`save_sharded_checkpoint`) holds ``sharded/`` instead of
``model.safetensors`` and ``optimizer.pt``: the model's and the optimizer's tensors written by every process
through ``torch.distributed.checkpoint`` (:mod:`f1.train.sharded_checkpoint`), loadable by any number of
processes; ``trainer_state.json`` says ``"sharded": true``.

A checkpoint is written into a hidden ``.tmp-*`` directory in the same folder, each file fsynced, then renamed
to ``step_*`` in one ``os.replace``. A run killed mid-save leaves only a ``.tmp-*`` directory, which is never
read and is removed by the next save; the previous checkpoint stays complete and loadable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
import torch.distributed as dist
from torch import nn

from f1.errors import CheckpointError
from f1.model.checkpoint import check_state_dict, drop_unbuilt_tensors

from .sharded_checkpoint import SHARDED_DIR, load_sharded_weights, read_sharded_metadata, save_sharded_state

CHECKPOINT_FORMAT = "f1.train.checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng.pt"
STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class TrainingCheckpoint:
    """Everything one checkpoint holds, read into memory and validated as files (not yet against a model)."""

    path: Path
    step: int
    world_size: int
    stage_config: dict[str, Any]
    #: the model's tensors (None in a sharded checkpoint: they are read into a model by DCP)
    weights: dict[str, torch.Tensor] | None
    #: the optimizer's ``state_dict()`` (None in a sharded checkpoint)
    optimizer: dict[str, Any] | None
    scheduler: dict[str, Any]
    rng_states: list[dict[str, Any]]
    batch_states: list[dict[str, int]]
    param_group_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    #: whether the tensors are in ``sharded/`` (an FSDP2 run's checkpoint)
    sharded: bool = False

    @property
    def sharded_dir(self) -> Path:
        """The folder of the DCP files of a sharded checkpoint."""
        return self.path / SHARDED_DIR


def step_directory_name(step: int) -> str:
    """``step_00001000`` for step 1000: names sort in step order."""
    return f"step_{step:08d}"


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoints in ``checkpoints_dir``, oldest first (``.tmp-*`` partial saves are ignored)."""
    if not checkpoints_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in checkpoints_dir.iterdir()
        if (m := _STEP_DIR.match(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step in ``checkpoints_dir``, or None."""
    found = list_checkpoints(checkpoints_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: Path) -> Path:
    """``path`` if it is a checkpoint; the latest checkpoint if it is a run directory or its ``checkpoints/``.

    Raises ``CheckpointError`` naming ``path`` when neither holds a checkpoint.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    for folder in (path, path / "checkpoints"):
        latest = latest_checkpoint(folder)
        if latest is not None:
            return latest
    if not path.exists():
        raise CheckpointError(f"checkpoint path does not exist: {path}")
    raise CheckpointError(
        f"{path} is not a checkpoint (no {STATE_FILE}) and holds no step_* checkpoints, "
        f"nor does {path / 'checkpoints'}"
    )


# --------------------------------------------------------------------------------------------------- writing


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries (a rename), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_weights(path: Path, state_dict: Mapping[str, torch.Tensor]) -> None:
    """safetensors refuses tensors that share memory: store each storage view once, record the aliases."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...], torch.dtype], str] = {}
    storages: set[int] = set()
    for name, tensor in state_dict.items():
        tensor = tensor.detach()
        view = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.stride(),
            tensor.dtype,
        )
        if tensor.numel() and view in seen:
            aliases[name] = seen[view]
            continue
        storage = tensor.untyped_storage().data_ptr()
        shares_memory = tensor.numel() > 0 and storage in storages
        seen[view] = name
        storages.add(storage)
        tensors[name] = (
            tensor.to("cpu").clone() if shares_memory or not tensor.is_contiguous() else tensor.to("cpu")
        )
    metadata = {"format": CHECKPOINT_FORMAT, "aliases": json.dumps(aliases)}
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    _fsync(path)


def _write_torch(path: Path, obj: Any) -> None:
    with open(path, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())


def _save_paths(checkpoints_dir: Path, step: int, tag: str) -> tuple[Path, Path]:
    """The folder of step ``step``'s checkpoint and the hidden one it is written into first."""
    final = checkpoints_dir / step_directory_name(step)
    return final, checkpoints_dir / f".tmp-{final.name}-{tag}"


def _begin(checkpoints_dir: Path, step: int, tag: str) -> tuple[Path, Path]:
    """Create the hidden folder a checkpoint is written into (stale ones of killed runs removed)."""
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    for stale in checkpoints_dir.glob(".tmp-*"):  # left by a run killed mid-save
        shutil.rmtree(stale, ignore_errors=True)
    final, temporary = _save_paths(checkpoints_dir, step, tag)
    temporary.mkdir()
    return final, temporary


def _finish(
    temporary: Path,
    final: Path,
    *,
    step: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    stage_config: Mapping[str, Any],
    rng_states: list[dict[str, Any]],
    batch_states: list[dict[str, int]],
    param_group_names: list[str],
    metadata: Mapping[str, Any] | None,
    written: list[str],
    sharded: bool,
) -> None:
    """Write the scheduler, RNG and state files, then rename ``temporary`` to ``final`` in one step."""
    _write_torch(temporary / SCHEDULER_FILE, scheduler.state_dict())
    _write_torch(temporary / RNG_FILE, {"ranks": rng_states})
    written = [*written, SCHEDULER_FILE, RNG_FILE]
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "step": step,
        "world_size": len(rng_states),
        "stage_config": dict(stage_config),
        "batch_states": batch_states,
        "param_group_names": param_group_names,
        "metadata": dict(metadata or {}),
        "file_sizes": {name: (temporary / name).stat().st_size for name in written},
        "sharded": sharded,
    }
    _write_json(temporary / STATE_FILE, state)  # last: a directory with this file is complete
    if sharded:
        _fsync(temporary / SHARDED_DIR)
    _fsync(temporary)
    if final.exists():  # re-saving a step after resuming from an older checkpoint
        shutil.rmtree(final)
    os.replace(temporary, final)
    _fsync(final.parent)


def _failed(
    error: BaseException, temporary: Path, checkpoints_dir: Path, step: int, *, remove: bool = True
) -> CheckpointError:
    """The error of a failed save, naming the reason and the checkpoint kept; ``remove``: delete the
    partial folder (only the process that made it does)."""
    if remove:
        shutil.rmtree(temporary, ignore_errors=True)
    previous = latest_checkpoint(checkpoints_dir)
    kept = f"the previous checkpoint {previous.name} is intact" if previous else "none was written before"
    return CheckpointError(
        f"could not write the checkpoint of step {step} under {checkpoints_dir}: "
        f"{_write_failure(error)}; {kept}"
    )


def _prune(checkpoints_dir: Path, keep: int | None) -> None:
    if keep is not None:
        for old in list_checkpoints(checkpoints_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def _group_names(optimizer: torch.optim.Optimizer) -> list[str]:
    return [g.get("name", str(i)) for i, g in enumerate(optimizer.param_groups)]


def save_checkpoint(
    checkpoints_dir: Path,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    stage_config: Mapping[str, Any],
    rng_states: list[dict[str, Any]],
    batch_states: list[dict[str, int]],
    metadata: Mapping[str, Any] | None = None,
    keep: int | None = None,
) -> Path:
    """Write one checkpoint atomically into ``checkpoints_dir/step_<step>`` and return its path.

    ``rng_states`` and ``batch_states`` hold one entry per data-parallel process (rank order). ``keep``: after
    a successful save, delete all but the newest ``keep`` checkpoints. Any exception (or interrupt) during the
    write removes the partial ``.tmp-*`` directory and leaves earlier checkpoints untouched.
    """
    checkpoints_dir = Path(checkpoints_dir)
    final, temporary = _begin(checkpoints_dir, step, str(os.getpid()))
    try:
        _write_weights(temporary / WEIGHTS_FILE, model.state_dict())
        _write_torch(temporary / OPTIMIZER_FILE, optimizer.state_dict())
        _finish(
            temporary,
            final,
            step=step,
            scheduler=scheduler,
            stage_config=stage_config,
            rng_states=rng_states,
            batch_states=batch_states,
            param_group_names=_group_names(optimizer),
            metadata=metadata,
            written=[WEIGHTS_FILE, OPTIMIZER_FILE],
            sharded=False,
        )
    except (OSError, RuntimeError) as error:  # disk full, quota, permissions (torch: a RuntimeError)
        raise _failed(error, temporary, checkpoints_dir, step) from error
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    _prune(checkpoints_dir, keep)
    return final


def save_sharded_checkpoint(
    checkpoints_dir: Path,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    stage_config: Mapping[str, Any],
    rng_states: list[dict[str, Any]],
    batch_states: list[dict[str, int]],
    metadata: Mapping[str, Any] | None = None,
    keep: int | None = None,
) -> Path | None:
    """Write one sharded checkpoint atomically (every process calls this together; see the module
    docstring); returns its path on rank 0, None elsewhere.

    Every process writes its shards of the model and the optimizer into one hidden folder; rank 0 then adds
    the other files and renames the folder to ``step_<step>`` in one ``os.replace``. A process killed
    mid-save leaves only the hidden folder: the previous checkpoint stays complete and loadable. A failure
    on any process fails the save on every process (the collective write raises everywhere).
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    checkpoints_dir = Path(checkpoints_dir)
    final, temporary = _save_paths(checkpoints_dir, step, "sharded")
    # Every process takes the same branches: each failure is made known to all before the next step.
    failure: BaseException | None = None
    if rank == 0:
        try:
            _begin(checkpoints_dir, step, "sharded")
        except OSError as error:
            failure = error
    failure = _first_failure(failure, distributed)
    if failure is None:
        try:
            save_sharded_state(temporary / SHARDED_DIR, model, optimizer)
        except (OSError, RuntimeError) as error:
            failure = error
        except BaseException:
            if rank == 0:
                shutil.rmtree(temporary, ignore_errors=True)
            raise
        failure = _first_failure(failure, distributed)
    if failure is None and rank == 0:
        try:
            shards = sorted(p.relative_to(temporary).as_posix() for p in (temporary / SHARDED_DIR).iterdir())
            _finish(
                temporary,
                final,
                step=step,
                scheduler=scheduler,
                stage_config=stage_config,
                rng_states=rng_states,
                batch_states=batch_states,
                param_group_names=_group_names(optimizer),
                metadata=metadata,
                written=shards,
                sharded=True,
            )
        except (OSError, RuntimeError) as error:
            failure = error
    failure = _first_failure(failure, distributed)
    if failure is not None:
        raise _failed(failure, temporary, checkpoints_dir, step, remove=rank == 0) from None
    if rank == 0:
        _prune(checkpoints_dir, keep)
        return final
    return None


def _first_failure(failure: BaseException | None, distributed: bool) -> BaseException | None:
    """The failure of any process, known on every process (a small all-gather of messages)."""
    if not distributed:
        return failure
    messages: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(messages, None if failure is None else _write_failure(failure))
    if failure is not None:
        return failure
    found = next((m for m in messages if m is not None), None)
    return OSError(found) if found is not None else None


def _write_failure(error: BaseException) -> str:
    """The operating system's reason behind a failed write (torch buries it in a RuntimeError chain)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return f"{seen.strerror} ({type(seen).__name__})"
        if "No space left on device" in str(seen):
            return "No space left on device"
        seen = seen.__cause__ or seen.__context__
    return str(error)


# --------------------------------------------------------------------------------------------------- reading


def _read_state_file(path: Path) -> dict[str, Any]:
    state_path = path / STATE_FILE
    if not state_path.is_file():
        raise CheckpointError(f"{path} is not a training checkpoint: {STATE_FILE} is missing")
    try:
        state = json.loads(state_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{state_path} is corrupt (not JSON): {error}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        received = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{state_path}: expected format {CHECKPOINT_FORMAT!r}, received {received!r}")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{state_path}: expected checkpoint version {CHECKPOINT_VERSION}, "
            f"received {state.get('version')!r}"
        )
    for name, size in state.get("file_sizes", {}).items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint file missing: {file}")
        if file.stat().st_size != size:
            raise CheckpointError(f"{file} is corrupt: expected {size} bytes, found {file.stat().st_size}")
    return state


def read_checkpoint_metadata(path: Path) -> dict[str, Any]:
    """The caller metadata stored with the checkpoint at (or latest under) ``path`` (e.g. the run config),
    read from its state file alone (the checkpoint's files are checked for presence and size)."""
    metadata = _read_state_file(resolve_checkpoint(Path(path))).get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: the checkpoint's metadata is not a mapping")
    return metadata


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``model.safetensors`` written by ``save_checkpoint`` (aliases restored), on CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = safetensors.torch.load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error types for truncated or garbled files
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: expected safetensors metadata format {CHECKPOINT_FORMAT!r}, "
            f"received {metadata.get('format')!r} "
            "(a foreign weights file; importers for published checkpoints live in f1.model)"
        )
    for alias, name in json.loads(metadata.get("aliases", "{}")).items():
        tensors[alias] = tensors[name]
    return tensors


def _read_torch(path: Path) -> Any:
    try:
        # mmap: every process of a resumed multi-process run reads the file without its own full copy
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # unpickling errors of every kind: truncated, garbled, or holding code
        raise CheckpointError(f"{path} is corrupt or holds more than tensors and numbers: {error}") from None


def read_checkpoint(path: Path) -> TrainingCheckpoint:
    """Read and validate every file of the checkpoint at (or latest under) ``path``; nothing is applied."""
    path = resolve_checkpoint(Path(path))
    state = _read_state_file(path)
    rng = _read_torch(path / RNG_FILE)
    if not isinstance(rng, dict) or not isinstance(rng.get("ranks"), list):
        raise CheckpointError(
            f"{path / RNG_FILE}: expected a dict with a list 'ranks', received {type(rng).__name__}"
        )
    sharded = state.get("sharded", False) is True
    if sharded:  # the tensors are read into a model by DCP; the metadata is checked here
        read_sharded_metadata(path / SHARDED_DIR)
    return TrainingCheckpoint(
        path=path,
        step=int(state["step"]),
        world_size=int(state["world_size"]),
        stage_config=state["stage_config"],
        weights=None if sharded else read_weights(path / WEIGHTS_FILE),
        optimizer=None if sharded else _read_torch(path / OPTIMIZER_FILE),
        scheduler=_read_torch(path / SCHEDULER_FILE),
        rng_states=rng["ranks"],
        batch_states=state["batch_states"],
        param_group_names=state["param_group_names"],
        metadata=state.get("metadata", {}),
        sharded=sharded,
    )


def is_sharded_checkpoint(path: Path) -> bool:
    """Whether the checkpoint at (or latest under) ``path`` is sharded (written by an FSDP2 run)."""
    return _read_state_file(resolve_checkpoint(Path(path))).get("sharded", False) is True


def check_weights_fit(model: nn.Module, weights: Mapping[str, torch.Tensor], source: Path) -> None:
    """Raise ``CheckpointError`` listing every missing, unexpected and mis-shaped tensor; changes nothing
    (:func:`f1.model.checkpoint.check_state_dict`, the library's one fit check)."""
    check_state_dict(model, weights, str(source))


def load_policy_weights(model: nn.Module, path: Path) -> Path:
    """Load only the weights of a checkpoint (e.g. stage I's result to start stage II); return the file read.

    ``path`` may be a checkpoint, a run directory (its latest checkpoint) or a ``model.safetensors`` file; a
    sharded checkpoint (an FSDP2 run's) is read whole into ``model`` (a plain, unsharded one) by DCP.
    """
    path = Path(path)
    if path.suffix != ".safetensors" and is_sharded_checkpoint(path):
        folder = resolve_checkpoint(path) / SHARDED_DIR
        load_sharded_weights(folder, model)
        return folder
    weights_path = path if path.suffix == ".safetensors" else resolve_checkpoint(path) / WEIGHTS_FILE
    weights = drop_unbuilt_tensors(model, read_weights(weights_path), str(weights_path))  # older runs' files
    check_weights_fit(model, weights, weights_path)
    model.load_state_dict(weights, strict=True)
    return weights_path
