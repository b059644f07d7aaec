"""Bring your own robot: `run_training` builds the embodiment from the dataset, trains the tokenizer stage,
ends with a policy folder that later stages and `export_policy` agree with, and stops at a time budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from robot_dataset import ACTION_DIM, FPS, STATE_DIM, STATE_NAMES, TASK, write_robot_dataset

from f1.data import LeRobotDataset
from f1.errors import InputError
from f1.model import F1Policy
from f1.train import (
    CheckpointError,
    ConfigError,
    RunConfig,
    TokenizerObjective,
    Trainer,
    embodiment_from_dataset,
    export_policy,
    load_policy_weights,
    load_stage_config,
    read_checkpoint,
    read_metrics,
    run_training,
)
from f1.train.factories import build_f1_model, f1_config_for

FAST = {"batch_size": 4, "log_interval": 1, "precision": "fp32", "schedule": {"warmup_steps": 1}}


def _run(tmp: Path, root: Path, name: str, stage, train: dict, **extra) -> tuple[RunConfig, object]:
    run = RunConfig.from_dict(
        {
            "output_dir": str(tmp / name),
            "model": extra.pop("model", {"preset": "tiny"}),
            "data": {"root": str(root)},
            "train": {**FAST, **train},
            "device": "cpu",
            "threads": 1,
            **{k: v for k, v in extra.items() if k != "time_budget_s"},
        }
    )
    return run, run_training(run, stage, progress=False, time_budget_s=extra.get("time_budget_s"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One tokenizer run (stage 0) and one stage-III run that starts from it."""
    tmp = tmp_path_factory.mktemp("byo")
    root = write_robot_dataset(tmp / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, tokenizer = _run(tmp, root, "tokenizer", "tokenizer", {"steps": 24, "batch_size": 8})
        run3, stage3 = _run(tmp, root, "stage3", 3, {"steps": 2}, init_from=str(tmp / "tokenizer"))
    finally:
        torch.set_num_threads(threads)
    return {"tmp": tmp, "root": root, "tokenizer": tokenizer, "stage3": stage3, "run3": run3}


def test_the_embodiment_comes_from_the_dataset_dims_names_stats_rate_and_robot_type(trained) -> None:
    policy = F1Policy.load(trained["stage3"].policy_dir)
    (embodiment,) = policy.config.embodiments
    stats = LeRobotDataset(trained["root"]).stats
    assert (embodiment.name, embodiment.state_dim, embodiment.action_dim) == ("my_arm", STATE_DIM, ACTION_DIM)
    assert embodiment.control_hz == FPS
    assert embodiment.state_names == tuple(STATE_NAMES)
    assert embodiment.normalization == "mean_std"
    assert embodiment.state_stats.mean == pytest.approx(list(stats["observation.state"]["mean"]))
    assert embodiment.action_stats.std == pytest.approx(list(stats["action"]["std"]))


def test_embodiment_options_name_normalization_and_bad_inputs(trained, tmp_path: Path) -> None:
    root = trained["root"]
    assert embodiment_from_dataset(root, name="arm7", normalization="min_max").name == "arm7"
    assert f1_config_for({"preset": "tiny"}, {"root": str(root), "embodiment": "so100"}).embodiments[
        0
    ].name == ("so100")
    with pytest.raises(ConfigError, match=r"data.root: .*nowhere is not a LeRobot dataset"):
        embodiment_from_dataset(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"normalization: expected one of mean_std, .*received 'zscore'"):
        embodiment_from_dataset(root, normalization="zscore")
    with pytest.raises(ConfigError, match=r"model.normalization: expected one of .*received 'zscore'"):
        f1_config_for({"preset": "tiny", "normalization": "zscore"}, {"root": str(root)})
    with pytest.raises(ConfigError, match=r"no 1-d feature 'observation.joints'"):
        embodiment_from_dataset(root, state_key="observation.joints")
    with pytest.raises(
        ConfigError, match=r"data.embodiment: expected one of the model's embodiments \['sim_arm'\]"
    ):
        f1_config_for(
            {"preset": "tiny", "overrides": {"default_embodiment": "sim_arm"}},
            {"root": str(root), "embodiment": "other"},
        )


def test_an_explicit_embodiment_that_does_not_fit_the_dataset_is_refused_before_anything_is_written(
    trained, tmp_path: Path
) -> None:
    explicit = {"embodiments": [{"name": "sim_arm", "state_dim": 8, "action_dim": 7}]}
    with pytest.raises(
        ConfigError,
        match=r"embodiment 'sim_arm' the run names expects state 8 and action 7, "
        r"but the dataset .* holds state 4 and action 3",
    ):
        _run(
            tmp_path, trained["root"], "out", 3, {"steps": 1}, model={"preset": "tiny", "overrides": explicit}
        )
    assert not (tmp_path / "out").exists()
    fitting = {"embodiments": [{"name": "mine", "state_dim": 4, "action_dim": 3}]}
    config = f1_config_for({"preset": "tiny", "overrides": fitting}, {"root": str(trained["root"])})
    assert config.embodiments[0].normalization == "identity"  # the explicit one is kept as given


def test_the_tokenizer_stage_improves_reconstruction_and_reports_foreground_and_codebook_metrics(trained):
    records = read_metrics(trained["tmp"] / "tokenizer")
    assert [r["step"] for r in records] == list(range(1, 25))
    first, last = records[0], records[-1]
    for key in (
        "loss/reconstruction",
        "loss/quantizer",
        "loss/foreground",
        "psnr_db",
        "foreground_psnr_db",
        "perplexity",
        "codebook_usage",
    ):
        assert key in last, key
    assert last["loss/reconstruction"] < 0.5 * first["loss/reconstruction"]
    assert last["loss/foreground"] < 0.8 * first["loss/foreground"]
    assert last["psnr_db"] > first["psnr_db"] + 3
    # the foreground error is measured on the moving square's pixels only, not on the whole frame
    assert abs(last["foreground_psnr_db"] - last["psnr_db"]) > 0.5
    assert last["perplexity"] >= 1.0
    assert 0 < last["codebook_usage"] <= 100
    assert last["loss"] == pytest.approx(
        last["loss/reconstruction"] + last["loss/quantizer"] + last["loss/foreground"], rel=1e-5
    )


def test_stage_three_from_the_tokenizer_run_keeps_its_trained_tokenizer(trained) -> None:
    tokenizer = F1Policy.load(trained["tokenizer"].policy_dir).model.generation.tokenizer.state_dict()
    after = F1Policy.load(trained["stage3"].policy_dir).model.generation.tokenizer.state_dict()
    torch.manual_seed(0)
    fresh = build_f1_model({"preset": "tiny"}, data={"root": str(trained["root"])}).generation.tokenizer
    assert all(torch.equal(tokenizer[k], after[k]) for k in tokenizer)  # loaded, then frozen in stage III
    assert not all(torch.equal(tokenizer[k], v) for k, v in fresh.state_dict().items())


def test_an_exported_checkpoint_acts_like_the_trained_model(trained, tmp_path: Path) -> None:
    run3 = trained["run3"]
    exported = export_policy(run3.output_dir, tmp_path / "policy", step=2)
    trained_model = build_f1_model(run3.model, data=run3.data)
    load_policy_weights(trained_model, Path(run3.output_dir))  # the trainer's own loading path
    item = LeRobotDataset(trained["root"])[5]
    observation = {
        "observation.images.front": item["observation.images.front"],
        "observation.state": item["observation.state"],
        "task": TASK,
    }
    actions = []
    for policy in (
        F1Policy(trained_model.eval()),
        F1Policy.load(exported),
        F1Policy.load(run3.output_dir + "/policy"),
    ):
        policy.reset(seed=3)
        actions.append(policy.select_action(observation))
    assert actions[0].shape == (ACTION_DIM,)
    # the trainer's loader reads tensors at unaligned addresses, where CPU kernels may round differently
    torch.testing.assert_close(actions[0], actions[1], rtol=1e-5, atol=1e-6)
    assert torch.equal(actions[1], actions[2])  # the exported step-2 checkpoint is the run's policy


def test_export_refuses_bad_inputs_and_writes_nothing(trained, tmp_path: Path) -> None:
    run = Path(trained["run3"].output_dir)
    with pytest.raises(
        CheckpointError, match=r"holds no checkpoint of step 7 \(its checkpoints: steps \[2\]\)"
    ):
        export_policy(run, tmp_path / "a", step=7)
    with pytest.raises(ConfigError, match=r"checkpoint: expected a step number >= 0, received -1"):
        export_policy(run, tmp_path / "b", step=-1)
    with pytest.raises(CheckpointError, match="checkpoint path does not exist"):
        export_policy(tmp_path / "no-run", tmp_path / "c")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"output: .*full is not empty; pass --force"):
        export_policy(run, tmp_path / "full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_policy_load_of_a_run_or_a_checkpoint_names_f1_export(trained) -> None:
    run = Path(trained["run3"].output_dir)
    with pytest.raises(
        CheckpointError, match=r"is a training run of f1 train.*its policy is .*policy.*f1 export"
    ):
        F1Policy.load(run)
    with pytest.raises(
        CheckpointError, match=r"is a checkpoint of f1 train: .*`f1 export .*step_00000002 OUT`"
    ):
        F1Policy.load(read_checkpoint(run).path)


def test_a_time_budget_stops_cleanly_with_a_checkpoint_the_policy_and_a_logged_stop(trained) -> None:
    run, result = _run(
        trained["tmp"], trained["root"], "budget", "stage3_scratch", {"steps": 10_000}, time_budget_s=0.5
    )
    assert result.stopped_by_time_budget
    assert 1 <= result.step < 10_000
    assert read_checkpoint(Path(run.output_dir)).step == result.step
    records = read_metrics(Path(run.output_dir))
    assert records[-1]["step"] == result.step
    assert records[-1]["time_budget_reached"] == 1.0
    assert all("time_budget_reached" not in r for r in records[:-1])
    assert F1Policy.load(result.policy_dir).config.embodiments[0].name == "my_arm"


def test_the_tokenizer_stage_and_time_budget_bad_inputs_are_named(trained, tmp_path: Path) -> None:
    root = trained["root"]
    with pytest.raises(ConfigError, match=r"mode 'no_gen' has no VQ-VAE tokenizer"):
        _run(tmp_path, root, "a", 0, {"steps": 1}, model={"preset": "tiny", "overrides": {"mode": "no_gen"}})
    with pytest.raises(
        ConfigError, match=r"time_budget_s must be a finite number of seconds > 0, received 0"
    ):
        _run(tmp_path, root, "b", 3, {"steps": 1}, time_budget_s=0)
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()
    model = build_f1_model({"preset": "tiny"}, data={"root": str(root)})
    with pytest.raises(InputError, match=r"background: expected \(3, 64, 64\), received \(3, 8, 8\)"):
        TokenizerObjective(model, torch.zeros(3, 8, 8))
    with pytest.raises(ConfigError, match="the tokenizer stage trains the VQ-VAE of an F1 model"):
        TokenizerObjective(torch.nn.Linear(2, 2), torch.zeros(3, 64, 64))  # type: ignore[arg-type]
    objective = TokenizerObjective(model, torch.zeros(3, 64, 64))
    with pytest.raises(InputError, match=r"observation.images.front: expected frames \(B, 3, H, W\)"):
        objective({"observation.images.front": torch.zeros(2, 64, 64)})
    trainer = Trainer(
        objective,
        [{"observation.images.front": torch.rand(2, 3, 64, 64)}],
        load_stage_config("tokenizer", {"batch_size": 2}),
        progress=False,
    )
    with pytest.raises(
        ValueError, match="time_budget_s must be a finite number of seconds > 0, received inf"
    ):
        trainer.fit(time_budget_s=float("inf"))
    with pytest.raises(ConfigError, match=r"objective must be one of policy, tokenizer, received 'vae'"):
        load_stage_config("tokenizer", {"objective": "vae"})
    with pytest.raises(ConfigError, match=r"received 'tokeniser'.*did you mean 'tokenizer'"):
        load_stage_config("tokeniser")
