"""Sharded model and optimizer state through ``torch.distributed.checkpoint`` (DCP), for FSDP2 runs.

A sharded checkpoint keeps the layout of :mod:`f1.train.checkpoint` (scheduler, RNG and trainer state beside
the tensors, written into a hidden folder and renamed in one step), with the model's and the optimizer's
tensors in ``sharded/`` instead of ``model.safetensors`` and ``optimizer.pt``: every process writes its own
shards in parallel (``__<rank>_0.distcp``) and rank 0 writes DCP's ``.metadata``. Tensors are stored by their
fully qualified names with their global shapes, so a checkpoint saved by N processes loads into M processes
(DCP reshards on load), into one process without a process group, or into a plain, unsharded model
(:func:`load_sharded_weights`: ``f1 export`` and ``init_from`` read it that way).

What is read stays tensors and numbers only: DCP pickles its ``.metadata`` and would unpickle anything, so it
is read here by an unpickler that admits DCP's own metadata classes and nothing else; only tensors go into
the DCP files (which DCP loads with ``torch.load(weights_only=True)``); the optimizer's hyper-parameters go
into a JSON file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from f1.errors import CheckpointError
from f1.model.checkpoint import check_shapes

__all__ = [
    "OPTIMIZER_GROUPS_FILE",
    "SHARDED_DIR",
    "load_sharded_state",
    "load_sharded_weights",
    "read_sharded_metadata",
    "save_sharded_state",
    "sharded_tensor_shapes",
]

#: The folder of a checkpoint that holds DCP's files.
SHARDED_DIR = "sharded"
#: The optimizer's param groups without their parameters (learning rates, betas, names), as JSON.
OPTIMIZER_GROUPS_FILE = "optimizer_groups.json"
_MODEL, _OPTIMIZER = "model", "optimizer"


def _state_dicts(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model's and the optimizer's state dicts as DCP sees them: tensors by fully qualified name
    (sharded ``DTensor`` under FSDP2); the optimizer's flattened ("state.<fqn>.exp_avg", so it maps onto
    any number of processes and any parameter order), its param groups included."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(flatten_optimizer_state_dict=True))


def _tensors_of(optimizer_state: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer's state tensors only: its param groups travel as JSON."""
    return {key: value for key, value in optimizer_state.items() if key.startswith("state.")}


def _no_dist() -> bool:
    return not (dist.is_available() and dist.is_initialized())


@contextlib.contextmanager
def _single_process_quietly() -> Iterator[None]:
    """DCP warns that it assumes one process whenever no process group exists: that is the intent here."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="torch.distributed is disabled, unavailable or uninitialized"
        )
        yield


def save_sharded_state(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Write the model's and the optimizer's tensors into ``folder`` (created by the caller; every process
    calls this together, each writing its shards; files are fsynced) and, on rank 0, the optimizer's param
    groups into ``folder/optimizer_groups.json``."""
    import torch.distributed.checkpoint as dcp

    model_state, optimizer_state = _state_dicts(model, optimizer)
    state = {_MODEL: model_state, _OPTIMIZER: _tensors_of(optimizer_state)}
    with _single_process_quietly():
        dcp.save(state, storage_writer=dcp.FileSystemWriter(str(folder), sync_files=True), no_dist=_no_dist())
    if _no_dist() or dist.get_rank() == 0:
        groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        with open(folder / OPTIMIZER_GROUPS_FILE, "w") as handle:
            json.dump(groups, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())


# ------------------------------------------------------------------------------------------------ reading


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP's ``.metadata`` and refuses every class that is not part of it."""

    _ALLOWED = {
        ("torch.distributed.checkpoint.metadata", name)
        for name in (
            "Metadata",
            "MetadataIndex",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "TensorProperties",
            "StorageMeta",
            "_MEM_FORMAT_ENCODING",
        )
    } | {
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        ("torch.distributed.checkpoint.filesystem", "SerializationFormat"),
        ("torch", "Size"),
        ("pathlib", "PosixPath"),  # where the checkpoint was written (DCP records it)
        ("torch.serialization", "_get_layout"),
        ("torch", "device"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("builtins", "getattr"),
        ("torch._utils", "_rebuild_tensor_v2"),
    }

    def find_class(self, module: str, name: str) -> Any:
        kinds = torch.dtype | torch.layout | torch.memory_format
        if (module, name) in self._ALLOWED or (
            module == "torch" and isinstance(getattr(torch, name, None), kinds)
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")


def read_sharded_metadata(folder: Path) -> Any:
    """DCP's ``Metadata`` of ``folder`` (read without executing anything it might name).

    Raises ``CheckpointError`` naming the file when it is missing, truncated or names other classes.
    """
    path = Path(folder) / ".metadata"
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a sharded checkpoint: {path.name} is missing")
    try:
        metadata = _MetadataUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as error:  # truncated, garbled, or naming code
        raise CheckpointError(f"{path} is corrupt or holds more than checkpoint metadata: {error}") from None
    from torch.distributed.checkpoint.metadata import Metadata

    if not isinstance(metadata, Metadata):
        raise CheckpointError(f"{path}: expected DCP metadata, received {type(metadata).__name__}")
    return metadata


def sharded_tensor_shapes(metadata: Any, section: str = _MODEL) -> dict[str, tuple[int, ...]]:
    """``{name: global shape}`` of the tensors stored under ``section`` (``"model"`` or ``"optimizer"``)."""
    prefix = f"{section}."
    shapes = {}
    for key, entry in metadata.state_dict_metadata.items():
        if key.startswith(prefix) and hasattr(entry, "size"):
            shapes[key[len(prefix) :]] = tuple(entry.size)
    return shapes


def _shapes(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in tensors.items()}  # a DTensor's global shape


def _reader(folder: Path) -> Any:
    import torch.distributed.checkpoint as dcp

    class SafeReader(dcp.FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            from torch.distributed.checkpoint.metadata import StorageMeta

            metadata = read_sharded_metadata(Path(self.path))
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader(str(folder))


def _read_optimizer_groups(folder: Path) -> list[dict[str, Any]]:
    path = folder / OPTIMIZER_GROUPS_FILE
    try:
        groups = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file missing: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt (not JSON): {error}") from None
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise CheckpointError(f"{path}: expected a list of param groups, received {type(groups).__name__}")
    return groups


def load_sharded_state(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load ``folder``'s tensors into ``model`` and ``optimizer`` (sharded or not, on any number of
    processes: every process calls this together). Names and global shapes are checked against DCP's
    metadata, and the optimizer's groups against the JSON file, before any tensor is read."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    folder = Path(folder)
    metadata = read_sharded_metadata(folder)
    groups = _read_optimizer_groups(folder)
    if len(groups) != len(optimizer.param_groups):
        raise CheckpointError(
            f"{folder}: the optimizer has {len(optimizer.param_groups)} param groups, the checkpoint "
            f"{len(groups)}"
        )
    model_state, optimizer_state = _state_dicts(model, optimizer)
    check_shapes(_shapes(model_state), sharded_tensor_shapes(metadata, _MODEL), str(folder))
    # A parameter that had no gradient yet when the checkpoint was saved had no optimizer state either
    # (AdamW creates it at the first step the parameter takes): such entries are absent, not missing.
    stored = sharded_tensor_shapes(metadata, _OPTIMIZER)
    saved_state = {key: value for key, value in _tensors_of(optimizer_state).items() if key in stored}
    check_shapes(_shapes(saved_state), stored, str(folder), against="the optimizer")
    with _single_process_quietly():
        dcp.load(
            {_MODEL: model_state, _OPTIMIZER: saved_state}, storage_reader=_reader(folder), no_dist=_no_dist()
        )
    optimizer_state.update(saved_state)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=model_state,
        optim_state_dict=optimizer_state,
        options=StateDictOptions(flatten_optimizer_state_dict=True),
    )
    with_state = {key[len("state.") :].rsplit(".", 1)[0] for key in stored}
    for name, parameter in model.named_parameters():
        if name not in with_state:
            optimizer.state.pop(parameter, None)  # as when it was saved: AdamW starts it at its first step
    for group, saved in zip(optimizer.param_groups, groups):
        for key, value in saved.items():
            group[key] = tuple(value) if isinstance(group.get(key), tuple) else value


def load_sharded_weights(folder: Path, model: nn.Module) -> None:
    """Load the model tensors of ``folder`` into a plain (unsharded) ``model`` in one process, without a
    process group; names and shapes are checked first. A model on the meta device gets CPU tensors."""
    import torch.distributed.checkpoint as dcp

    folder = Path(folder)
    metadata = read_sharded_metadata(folder)
    template = model.state_dict()
    check_shapes(_shapes(template), sharded_tensor_shapes(metadata, _MODEL), str(folder))
    tensors = {
        name: torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu") for name, tensor in template.items()
    }
    with _single_process_quietly():
        dcp.load({_MODEL: tensors}, storage_reader=_reader(folder), no_dist=True)
    model.load_state_dict(tensors, strict=True, assign=any(t.is_meta for t in template.values()))
