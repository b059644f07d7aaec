"""Training metrics: one JSON object per line in ``metrics.jsonl``, mirrored to TensorBoard when installed."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file (or of ``<dir>/metrics.jsonl``), in order.

    The file may be read while a trainer appends to it: a last line without its newline (a record still
    being written) is left out.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        return []
    lines = path.read_text().split("\n")[:-1]  # the part after the last newline is incomplete
    return [json.loads(line) for line in lines if line.strip()]


class MetricsLogger:
    """Append ``{"step": ..., name: value, ...}`` records to ``<log_dir>/metrics.jsonl`` (and TensorBoard).

    ``resume_from_step``: drop records of steps after it first, so a run resumed from an earlier checkpoint
    does not leave the steps it repeats twice in the file. ``tensorboard``: None = when importable.
    """

    def __init__(self, log_dir: Path, *, resume_from_step: int = 0, tensorboard: bool | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.log_dir / METRICS_FILE
        if resume_from_step > 0:
            self._drop_records_after(resume_from_step)
        elif self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a")  # noqa: SIM115 - closed by close()
        self._tensorboard = (
            _tensorboard_writer(self.log_dir / "tensorboard") if tensorboard is not False else None
        )
        if tensorboard and self._tensorboard is None:
            raise ImportError("tensorboard=True but tensorboard is not installed (pip install tensorboard)")

    def _drop_records_after(self, step: int) -> None:
        kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= step]
        temporary = self.path.with_suffix(".jsonl.tmp")
        with open(temporary, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in kept)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """Write one record for ``step``."""
        record = {"step": step, **{k: float(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(name, float(value), step)

    def close(self) -> None:
        """Flush and close the files."""
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _tensorboard_writer(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(log_dir))
