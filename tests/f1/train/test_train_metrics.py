"""Metrics: JSONL records, resumed runs drop the steps they repeat, TensorBoard only when installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from f1.train.metrics import MetricsLogger, read_metrics

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def test_records_are_appended_one_json_object_per_line(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.log(1, {"loss": 2.0})
    logger.log(2, {"loss": 1.5, "lr/action": 1e-4})
    logger.close()
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "lr/action": 1e-4}]


def test_a_resumed_run_drops_records_after_its_checkpoint_a_fresh_run_starts_empty(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 6):
        logger.log(step, {"loss": float(step)})
    logger.close()
    resumed = MetricsLogger(tmp_path, resume_from_step=3, tensorboard=False)
    resumed.log(4, {"loss": 40.0})
    resumed.close()
    kept = [(r["step"], r["loss"]) for r in read_metrics(tmp_path)]
    assert kept == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
    MetricsLogger(tmp_path, tensorboard=False).close()
    assert read_metrics(tmp_path) == []


@pytest.mark.skipif(HAS_TENSORBOARD, reason="checks the behaviour without tensorboard installed")
def test_asking_for_tensorboard_without_it_installed_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImportError, match="pip install tensorboard"):
        MetricsLogger(tmp_path, tensorboard=True)
    MetricsLogger(tmp_path / "auto").close()  # default: silently JSONL only


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed")
def test_metrics_are_mirrored_to_tensorboard_when_installed(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path)
    logger.log(1, {"loss": 1.0})
    logger.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_read_metrics_leaves_out_a_record_still_being_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
