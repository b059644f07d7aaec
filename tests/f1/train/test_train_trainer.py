"""The trainer: stages decide what learns; losses are weighted as configured; resume is bitwise exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_training_policy import FAST, TinyEpisodes, TinyPolicy

from f1.train import (
    PARAMETER_GROUP_NAMES,
    CheckpointError,
    ConfigError,
    SeededBatchStream,
    StageConfig,
    Trainer,
    load_stage_config,
    read_metrics,
)
from f1.train.trainer import use_bf16_autocast


def _stream(dataset: TinyEpisodes, stage: StageConfig) -> SeededBatchStream:
    return SeededBatchStream(dataset, stage.batch_size, seed=stage.seed)


def _parameters(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def test_stage_one_changes_only_the_generation_expert(tiny_policy, tiny_dataset) -> None:
    stage = load_stage_config(1, FAST)
    before = _parameters(tiny_policy)
    Trainer(tiny_policy, _stream(tiny_dataset, stage), stage, progress=False).fit(stop_at_step=2)
    after = _parameters(tiny_policy)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"scale_embedding", "generation_head.weight", "generation_head.bias"}
    groups = tiny_policy.parameter_groups()
    assert all(
        not p.requires_grad for g in ("vision", "understanding", "action", "tokenizer") for p in groups[g]
    )


def test_stage_three_trains_everything_but_the_tokenizer(tiny_policy, tiny_dataset, tiny_stage) -> None:
    before = _parameters(tiny_policy)
    trainer = Trainer(tiny_policy, _stream(tiny_dataset, tiny_stage), tiny_stage, progress=False)
    trainer.fit(stop_at_step=2)
    after = _parameters(tiny_policy)
    unchanged = {k for k in before if torch.equal(before[k], after[k])}
    assert unchanged == {"codebook.weight"}
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert id(tiny_policy.codebook.weight) not in optimized  # frozen means: not in the optimizer either


def test_learning_rates_follow_the_groups_and_the_schedule(tiny_policy, tiny_dataset, tiny_stage) -> None:
    trainer = Trainer(tiny_policy, _stream(tiny_dataset, tiny_stage), tiny_stage, progress=False)
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    # Warmup of 2 steps: the first step runs at half the peak rate.
    assert lrs["vision"] == pytest.approx(5e-3 / 2)
    assert lrs["action"] == pytest.approx(1e-2 / 2)
    decay = {g["name"]: g["weight_decay"] for g in trainer.optimizer.param_groups}
    assert decay["action"] == 0.01
    assert decay["action/no_decay"] == 0.0  # biases and norms are never decayed
    trainer.fit()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine reached its end


def test_total_loss_is_the_configured_weighted_sum(tiny_policy, tiny_dataset, tiny_stage) -> None:
    trainer = Trainer(tiny_policy, _stream(tiny_dataset, tiny_stage), tiny_stage, progress=False)
    history = trainer.fit(stop_at_step=3).history
    for record in history:
        assert record["loss"] == pytest.approx(record["flow"] + 0.1 * record["generation"], rel=1e-6)


def test_gradients_are_clipped_to_the_configured_norm(tiny_policy, tiny_dataset, tiny_stage) -> None:
    stage = tiny_stage.replace(grad_clip=1e-3)
    trainer = Trainer(tiny_policy, _stream(tiny_dataset, stage), stage, progress=False)
    batch = next(iter(_stream(tiny_dataset, stage)))
    norms = []

    def record_clipped_norm(optimizer, args, kwargs) -> None:
        grads = [p.grad for p in trainer.trainable_parameters if p.grad is not None]
        norms.append(
            float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        )

    trainer.optimizer.register_step_pre_hook(record_clipped_norm)
    out = trainer.train_step(batch)
    assert float(out["grad_norm"]) > 1e-3  # the raw norm is reported
    assert norms[0] == pytest.approx(1e-3, rel=1e-4)  # the step sees the clipped one


def test_metrics_are_written_as_jsonl(tiny_policy, tiny_dataset, tiny_stage, tmp_path: Path) -> None:
    Trainer(
        tiny_policy, _stream(tiny_dataset, tiny_stage), tiny_stage, output_dir=tmp_path, progress=False
    ).fit()
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "loss/flow", "loss/generation", "grad_norm", "lr/vision", "lr/action"} <= set(records[0])
    assert records[0]["lr/action"] == pytest.approx(1e-2 / 2)  # the rate step 1 used: half-way up the warmup
    assert records[0]["lr/vision"] == pytest.approx(5e-3 / 2)


def test_a_loss_the_stage_weights_but_the_policy_omits_is_a_clear_error(
    tiny_policy, tiny_dataset, tiny_stage
) -> None:
    stage = tiny_stage.replace(loss_weights={"flow": 1.0, "foresight": 0.1})
    trainer = Trainer(tiny_policy, _stream(tiny_dataset, stage), stage, progress=False)
    with pytest.raises(KeyError, match=r"weights losses \['foresight'\].*returned: \['flow', 'generation'\]"):
        trainer.fit(stop_at_step=1)


def test_a_zero_weight_turns_a_loss_off_and_all_zero_weights_are_refused(
    tiny_policy, tiny_dataset, tiny_stage
) -> None:
    stage = tiny_stage.replace(loss_weights={"flow": 1.0, "generation": 0.0})
    trainer = Trainer(tiny_policy, _stream(tiny_dataset, stage), stage, progress=False)
    assert trainer.loss_weights == {"flow": 1.0}
    record = trainer.fit(stop_at_step=1).history[0]
    assert record["loss"] == record["flow"]  # the generation loss is logged, not weighted
    assert "generation" in record
    stage = tiny_stage.replace(loss_weights={"flow": 0.0, "generation": 0.0})
    with pytest.raises(ConfigError, match="loss_weights: nothing to train"):
        Trainer(tiny_policy, _stream(tiny_dataset, stage), stage, progress=False)


def test_a_policy_with_ungrouped_parameters_is_rejected(tiny_dataset, tiny_stage) -> None:
    policy = TinyPolicy()
    policy.extra = torch.nn.Linear(2, 2)  # in no group: it would silently never train
    with pytest.raises(
        ValueError, match=r"2 parameters of the policy are in no parameter group: extra.weight"
    ):
        Trainer(policy, _stream(tiny_dataset, tiny_stage), tiny_stage, progress=False)


def test_a_stream_with_the_wrong_batch_size_is_rejected(tiny_policy, tiny_dataset, tiny_stage) -> None:
    with pytest.raises(ValueError, match="batches yield 4 samples per process but the stage asks for 8"):
        Trainer(tiny_policy, SeededBatchStream(tiny_dataset, 4, seed=0), tiny_stage, progress=False)


def test_non_finite_loss_stops_training_with_the_step(tiny_policy, tiny_dataset, tiny_stage) -> None:
    stage = tiny_stage.replace(optimizer={"lr": 1e30, "group_lr": {}})
    trainer = Trainer(tiny_policy, _stream(tiny_dataset, stage), stage, progress=False)
    with pytest.raises(FloatingPointError, match="non-finite loss at step"):
        trainer.fit()


def test_bf16_autocast_only_where_available() -> None:
    assert not use_bf16_autocast("auto", torch.device("cpu"))
    assert use_bf16_autocast("bf16", torch.device("cpu"))
    assert not use_bf16_autocast("fp32", torch.device("cuda"))


def test_bf16_autocast_runs_a_step_on_cpu(tiny_policy, tiny_dataset, tiny_stage) -> None:
    stage = tiny_stage.replace(precision="bf16")
    trainer = Trainer(tiny_policy, _stream(tiny_dataset, stage), stage, progress=False)
    assert trainer.bf16
    history = trainer.fit(stop_at_step=2).history
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    assert tiny_policy.vision.weight.dtype == torch.float32  # master weights stay fp32


def _fresh_trainer(stage: StageConfig, output_dir: Path, init_seed: int) -> Trainer:
    torch.manual_seed(init_seed)  # a different initialisation: only the checkpoint can make it equal again
    policy = TinyPolicy()
    return Trainer(
        policy, _stream(TinyEpisodes(size=40), stage), stage, output_dir=output_dir, progress=False
    )


def test_interrupted_and_resumed_training_is_bitwise_identical(tiny_stage, tmp_path: Path) -> None:
    # 40 samples, batch 8: 5 batches per epoch, so 12 steps cross two epoch boundaries; the tiny policy draws
    # flow noise and time from the global RNG, so exactness needs the RNG and data order restored.
    stage = tiny_stage.replace(steps=12, checkpoint_interval=5)
    straight = _fresh_trainer(stage, tmp_path / "straight", init_seed=0)
    straight_losses = [r["loss"] for r in straight.fit().history]

    first = _fresh_trainer(stage, tmp_path / "resumed", init_seed=0)
    first_losses = [r["loss"] for r in first.fit(stop_at_step=7).history]
    del first
    torch.manual_seed(1234)  # disturb every global RNG the way a new process would
    torch.rand(100)
    second = _fresh_trainer(stage, tmp_path / "resumed", init_seed=99)
    used = second.resume(tmp_path / "resumed")
    assert used.name == "step_00000007"
    second_losses = [r["loss"] for r in second.fit().history]

    assert first_losses + second_losses == straight_losses  # bitwise: float equality, no tolerance
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name
    records = read_metrics(tmp_path / "resumed")
    assert [r["step"] for r in records] == list(range(1, 13))  # no step logged twice


def test_resume_with_a_changed_recipe_is_refused_before_anything_changes(tiny_stage, tmp_path: Path) -> None:
    trainer = _fresh_trainer(tiny_stage, tmp_path, init_seed=0)
    trainer.fit(stop_at_step=3)
    other = _fresh_trainer(tiny_stage.replace(optimizer={"lr": 1.0}), tmp_path / "other", init_seed=5)
    before = _parameters(other.model)
    with pytest.raises(
        CheckpointError, match=r"different stage config.*optimizer.lr: checkpoint 0.01, now 1.0"
    ):
        other.resume(tmp_path)
    after = _parameters(other.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert other.step == 0


def test_resume_may_change_intervals(tiny_stage, tmp_path: Path) -> None:
    _fresh_trainer(tiny_stage, tmp_path, init_seed=0).fit(stop_at_step=3)
    trainer = _fresh_trainer(tiny_stage.replace(log_interval=2, checkpoint_interval=2), tmp_path, init_seed=0)
    trainer.resume(tmp_path)
    assert trainer.step == 3


def test_parameters_the_policy_froze_itself_stay_frozen(tiny_policy, tiny_dataset, tiny_stage) -> None:
    # E.g. the Frozen-Gen ablation: the policy freezes its generation expert; stage III must not unfreeze it.
    for param in tiny_policy.parameter_groups()["generation"]:
        param.requires_grad_(False)
    before = _parameters(tiny_policy)
    Trainer(tiny_policy, _stream(tiny_dataset, tiny_stage), tiny_stage, progress=False).fit(stop_at_step=2)
    after = _parameters(tiny_policy)
    unchanged = {k for k in before if torch.equal(before[k], after[k])}
    generation = {"scale_embedding", "generation_head.weight", "generation_head.bias"}
    assert unchanged == {"codebook.weight", *generation}


def test_a_stage_that_leaves_nothing_to_train_is_refused(tiny_policy, tiny_dataset, tiny_stage) -> None:
    stage = tiny_stage.replace(frozen=list(PARAMETER_GROUP_NAMES))
    with pytest.raises(ConfigError, match="nothing would train"):
        Trainer(tiny_policy, _stream(tiny_dataset, stage), stage, progress=False)


def test_gradient_accumulation_matches_one_big_batch(tiny_stage) -> None:
    # Flow noise and time come with the samples, so both runs see the same randomness per sample.
    data = TinyEpisodes(size=40, with_flow_noise=True)
    results = []
    for accumulation in (1, 4):
        stage = tiny_stage.replace(accumulation_steps=accumulation, steps=3)
        torch.manual_seed(0)
        policy = TinyPolicy()
        stream = SeededBatchStream(data, stage.batch_size // accumulation, seed=stage.seed)
        history = Trainer(policy, stream, stage, progress=False).fit().history
        results.append((history, policy.state_dict()))
    (big_history, big), (micro_history, micro) = results
    assert [r["loss"] for r in micro_history] == pytest.approx([r["loss"] for r in big_history], abs=1e-6)
    for name, value in big.items():
        assert torch.allclose(micro[name], value, atol=1e-6, rtol=0), name


def test_accumulation_must_split_the_batch(tiny_stage) -> None:
    with pytest.raises(ConfigError, match=r"batch_size must be divisible by accumulation_steps: 8 % 3 != 0"):
        tiny_stage.replace(accumulation_steps=3)
