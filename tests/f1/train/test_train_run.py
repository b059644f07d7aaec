"""Run files: validated like stage configs, naming registered factories, never code to import."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from f1.train import ConfigError, RunConfig
from f1.train.factories import build_f1_model, build_training_data
from f1.train.registry import available_factories, resolve_factory
from f1.train.run import DEFAULT_DATASET_FACTORY, DEFAULT_POLICY_FACTORY


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
        ({"output_dir": "o", "model": {"factory": "no_colon"}}, r"model.factory: unknown factory 'no_colon'"),
        ({"output_dir": "o", "model": {"factory": "subprocess:run"}}, r"'subprocess:run' is an import path"),
        ({"output_dir": "o", "data": {"factory": "lerobbot"}}, r"did you mean 'lerobot'"),
        ({"output_dir": "o", "data": {"factory": 3}}, r"data.factory: expected the name of a registered"),
        ({"output_dir": "o", "device": "gpu"}, "device must be one of auto, cpu, cuda, received 'gpu'"),
        ({"output_dir": "o", "num_workers": -1}, "num_workers must be an integer >= 0"),
        ({"output_dir": "o", "train": [1]}, "train must be a mapping"),
        ({"output_dir": "o", "threads": 0}, "threads must be an integer >= 1 or null, received 0"),
    ],
)
def test_bad_run_files_are_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(data)


def test_factories_resolve_by_registered_name_built_in_or_declared_by_an_installed_package() -> None:
    # the test suite registers "tiny" the way a package does: an entry point of a distribution on sys.path
    assert resolve_factory("f1", "model") is build_f1_model
    assert resolve_factory("lerobot", "data") is build_training_data
    assert resolve_factory("tiny", "model").__name__ == "build_tiny_policy"
    assert resolve_factory("tiny", "data").__name__ == "build_tiny_dataset"
    assert available_factories("model")[:1] == ["f1"]
    assert "tiny" in available_factories("model")


def test_an_import_path_in_a_run_file_is_never_imported(tmp_path: Path, monkeypatch) -> None:
    import sys

    (tmp_path / "planted.py").write_text("import pathlib\npathlib.Path(__file__).with_name('ran').touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="is an import path"):
        RunConfig.from_dict({"output_dir": "o", "model": {"factory": "planted:build"}})
    assert "planted" not in sys.modules
    assert not (tmp_path / "ran").exists()


def test_ddp_runs_without_the_unused_parameter_search_by_default() -> None:
    # every parameter an F1 policy builds gets a gradient (tests/f1/model: test_compute_losses_...)
    assert RunConfig(output_dir="o").find_unused_parameters is False
    assert RunConfig.from_dict({"output_dir": "o", "find_unused_parameters": True}).find_unused_parameters
    with pytest.raises(ConfigError, match="find_unused_parameters must be true or false, received 'yes'"):
        RunConfig.from_dict({"output_dir": "o", "find_unused_parameters": "yes"})


def test_a_multi_embodiment_policy_under_ddp_without_the_search_is_warned_about(caplog) -> None:
    from f1.model import Embodiment, F1Model, preset
    from f1.train import load_stage_config
    from f1.train.distributed import DistributedContext
    from f1.train.run import _warn_if_adapters_may_lack_gradients

    with torch.device("meta"):
        policy = F1Model(preset("tiny", mode="no_gen"))
    two = DistributedContext(rank=0, world_size=2)
    stage3, stage1 = load_stage_config(3), load_stage_config(1)
    assert not _warn_if_adapters_may_lack_gradients(policy, stage3, two, False)  # one embodiment
    policy.add_embodiment(Embodiment(name="gripper", state_dim=2, action_dim=1))
    with caplog.at_level(logging.WARNING, logger="f1.train.run"):
        assert _warn_if_adapters_may_lack_gradients(policy, stage3, two, False)
    assert "2 embodiments (sim_arm, gripper)" in caplog.text
    assert "find_unused_parameters: true" in caplog.text
    assert not _warn_if_adapters_may_lack_gradients(policy, stage3, two, True)
    assert not _warn_if_adapters_may_lack_gradients(policy, stage1, two, False)  # adapters frozen
    assert not _warn_if_adapters_may_lack_gradients(policy, stage3, DistributedContext(), False)
