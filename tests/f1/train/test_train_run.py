"""Run files: validated like stage configs, with factories named as 'module:function'."""

from __future__ import annotations

from pathlib import Path

import pytest

from f1.train import ConfigError, RunConfig
from f1.train.run import DEFAULT_DATASET_FACTORY, DEFAULT_POLICY_FACTORY, resolve_factory


def test_run_file_round_trips_and_defaults_the_factories(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("output_dir: out\nmodel: {preset: tiny}\n")
    run = RunConfig.from_yaml(path)
    assert run.policy_factory == DEFAULT_POLICY_FACTORY
    assert run.dataset_factory == DEFAULT_DATASET_FACTORY
    assert RunConfig.from_dict(run.to_dict()) == run


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"output_dir": "o", "modle": {}}, "did you mean 'model'"),
        ({"model": {}}, "output_dir is required"),
        ({"output_dir": "o", "model": {"factory": "no_colon"}}, "model.factory must be 'package.module:func"),
        ({"output_dir": "o", "device": "gpu"}, "device must be one of auto, cpu, cuda, received 'gpu'"),
        ({"output_dir": "o", "num_workers": -1}, "num_workers must be an integer >= 0"),
        ({"output_dir": "o", "train": [1]}, "train must be a mapping"),
        ({"output_dir": "o", "threads": 0}, "threads must be an integer >= 1 or null, received 0"),
    ],
)
def test_bad_run_files_are_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(data)


def test_factories_resolve_by_import_path() -> None:
    factory = resolve_factory("tiny_training_policy:build_tiny_policy", "model.factory")
    assert factory.__name__ == "build_tiny_policy"
