"""The default factories: `f1 train` builds the real F1 policy and LeRobot windows that match it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from f1.train import ConfigError, RunConfig, read_checkpoint, read_metrics, run_training
from f1.train.factories import build_f1_model, f1_config_from, window_settings_of


@pytest.fixture(scope="module")
def tiny_f1():
    return build_f1_model({"preset": "tiny"})


def test_windows_follow_the_policy_history_chunk_and_cameras(tiny_f1) -> None:
    model = tiny_f1.config
    settings = window_settings_of(tiny_f1)
    frames, stride = model.generation.history_frames, model.generation.history_stride
    assert settings["history_offsets"] == [-(frames - 1 - i) * stride for i in range(frames)]
    assert settings["history_offsets"][-1] == 0
    assert settings["future_offset"] == stride
    assert settings["action_horizon"] == model.action.chunk_size
    assert settings["cameras"] == [f"observation.images.{c}" for c in model.cameras]


def test_the_policy_satisfies_the_trainer_contract(tiny_f1) -> None:
    groups = tiny_f1.parameter_groups()
    assert {"vision", "understanding", "generation", "action", "tokenizer", "embodiment"} == set(groups)
    grouped = sum(p.numel() for params in groups.values() for p in params)
    assert grouped == sum(p.numel() for p in tiny_f1.parameters())


def test_model_section_overrides_merge_into_the_preset_and_typos_are_caught() -> None:
    config = f1_config_from({"preset": "tiny", "overrides": {"mode": "no_gen", "action": {"chunk_size": 4}}})
    assert config.mode == "no_gen"
    assert config.action.chunk_size == 4
    with pytest.raises(ConfigError, match="did you mean 'preset'"):
        f1_config_from({"presett": "tiny"})
    with pytest.raises(ConfigError, match=r"model.overrides.action.*did you mean 'chunk_size'"):
        f1_config_from({"preset": "tiny", "overrides": {"action": {"chunk_sise": 4}}})
    with pytest.raises(ConfigError, match="either preset or config_file"):
        f1_config_from({"preset": "tiny", "config_file": "x.yaml"})


def _write_tiny_lerobot_dataset(root: Path) -> None:
    from f1.data import LeRobotDatasetWriter, standard_features

    rng = np.random.default_rng(0)
    features = standard_features({"front": (64, 64)}, state_dim=8, action_dim=7, image_storage="image")
    with LeRobotDatasetWriter(root, fps=10, features=features, robot_type="sim_arm") as writer:
        for _ in range(2):
            length = 10
            frames = {
                "observation.images.front": rng.integers(0, 255, (length, 64, 64, 3), dtype=np.uint8),
                "observation.state": rng.standard_normal((length, 8)).astype(np.float32),
                "action": rng.standard_normal((length, 7)).astype(np.float32),
            }
            writer.add_episode(frames, task="put the red block on the blue one")


def test_f1_train_runs_the_tiny_f1_policy_on_a_lerobot_dataset(tmp_path: Path) -> None:
    _write_tiny_lerobot_dataset(tmp_path / "data")
    run = RunConfig.from_dict(
        {
            "output_dir": str(tmp_path / "out"),
            "model": {"preset": "tiny"},
            "data": {"root": str(tmp_path / "data")},
            "train": {"steps": 2, "batch_size": 2, "log_interval": 1, "precision": "fp32"},
            "device": "cpu",
            "threads": 1,  # many times faster than the default on a busy shared CPU
        }
    )
    threads = torch.get_num_threads()
    try:
        result = run_training(run, 3, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert result.step == 2
    records = read_metrics(tmp_path / "out")
    assert [r["step"] for r in records] == [1, 2]
    assert all(np.isfinite(r["loss/flow"]) and np.isfinite(r["loss/generation"]) for r in records)
    assert records[0]["loss"] == pytest.approx(records[0]["loss/flow"] + 0.1 * records[0]["loss/generation"])
    checkpoint = read_checkpoint(tmp_path / "out")
    assert checkpoint.step == 2
    assert checkpoint.metadata["run"]["model"] == {"preset": "tiny"}


@pytest.mark.parametrize(
    ("model", "train", "message"),
    [
        # the dataset's 8-dim state and 7-dim actions against an embodiment of another width
        (
            {
                "preset": "tiny",
                "overrides": {"embodiments": [{"name": "sim_arm", "state_dim": 6, "action_dim": 7}]},
            },
            {},
            r"embodiment 'sim_arm' the run names expects state 6 and action 7, but the dataset .* holds "
            r"state 8 and action 7",
        ),
        # a loss no F1 model computes (a typo)
        (
            {"preset": "tiny"},
            {"loss_weights": {"flow": 1.0, "generatoin": 0.1}},
            r"loss_weights: \['generatoin'\] is no loss of this model .*did you mean 'generation'",
        ),
        ({"config_file": "{bad_yaml}"}, {}, r"bad\.yaml: config: not valid YAML"),
    ],
)
def test_f1_train_refuses_what_does_not_fit_before_writing_anything(
    tmp_path: Path, model: dict, train: dict, message: str
) -> None:
    _write_tiny_lerobot_dataset(tmp_path / "data")
    (tmp_path / "bad.yaml").write_text("trunk: [unclosed\n")
    model = {
        k: (v.replace("{bad_yaml}", str(tmp_path / "bad.yaml")) if isinstance(v, str) else v)
        for k, v in model.items()
    }
    run = RunConfig.from_dict(
        {
            "output_dir": str(tmp_path / "out"),
            "model": model,
            "data": {"root": str(tmp_path / "data")},
            "train": {"steps": 2, "batch_size": 2, "precision": "fp32", **train},
            "device": "cpu",
            "threads": 1,
        }
    )
    threads = torch.get_num_threads()
    try:
        with pytest.raises(ConfigError, match=message):
            run_training(run, 3, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("mode", ["no_gen", "history_no_foresight"])
def test_every_shipped_stage_recipe_trains_every_mode_and_a_zero_weight_is_off(
    tmp_path: Path, mode: str
) -> None:
    # stage III weights the foresight loss, which these modes do not compute: it is not weighted
    _write_tiny_lerobot_dataset(tmp_path / "data")
    threads = torch.get_num_threads()
    try:
        for stage, extra in ((3, {}), (2, {"loss_weights": {"flow": 1.0, "generation": 0.0}})):
            out = tmp_path / f"out{stage}"
            run = RunConfig.from_dict(
                {
                    "output_dir": str(out),
                    "model": {"preset": "tiny", "overrides": {"mode": mode}},
                    "data": {"root": str(tmp_path / "data")},
                    "train": {"steps": 1, "batch_size": 2, "log_interval": 1, "precision": "fp32", **extra},
                    "device": "cpu",
                    "threads": 1,
                }
            )
            assert run_training(run, stage, progress=False).step == 1
            (record,) = read_metrics(out)
            assert record["loss"] == record["loss/flow"]
            assert "loss/generation" not in record
    finally:
        torch.set_num_threads(threads)
