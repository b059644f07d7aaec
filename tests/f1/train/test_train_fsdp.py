"""FSDP2 on a 2-process gloo group (CPU): the tiny F1 trains as 1 process on the combined batch in all three
stages, with LoRA and in bf16 mixed precision; the distributed section of a run file and activation
checkpointing (helpers and the dataset's randomness: fsdp_runs.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from fsdp_runs import STEPS, TRAIN, launch, losses, run_file, weights, write_dataset
from tiny_training_policy import TinyPolicy

from f1.errors import ConfigError
from f1.model import F1Policy
from f1.train import RunConfig, Trainer, load_stage_config, read_checkpoint, run_training
from f1.train.distributed import DistributedConfig


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("fsdp"))


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "lora"), [(1, False), (2, False), (3, False), (3, True)])
def test_fsdp_on_two_processes_trains_as_one_process_on_the_combined_batch(
    tmp_path, dataset, stage, lora
) -> None:
    # stage 3's sharded run also recomputes every trunk layer in backward (activation checkpointing);
    # stage 2 averages 4 flow draws that share one prefix pass (the action expert runs 4 times per step);
    # with lora, stage 3 trains adapters only, sharded with their frozen base weights
    sharded = {"strategy": "fsdp", "activation_checkpointing": stage == 3 and not lora}
    draws = 4 if stage == 2 else 1
    train = {"lora": {"rank": 4}} if lora else {}
    launch(run_file(tmp_path, "two", dataset, sharded, draws=draws, train=train), stage, 2)
    launch(run_file(tmp_path, "one", dataset, {"strategy": "ddp"}, draws=draws, train=train), stage, 1)

    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert len(two) == len(one) == STEPS
    for step, (a, b) in enumerate(zip(two, one), start=1):
        assert a.keys() == b.keys()
        for name in a:
            assert a[name] == pytest.approx(b[name], abs=1e-5), (step, name)
    two_weights, one_weights = weights(tmp_path / "two" / "policy"), weights(tmp_path / "one" / "policy")
    assert two_weights.keys() == one_weights.keys()
    frozen = load_stage_config(stage).frozen
    assert frozen, "every shipped stage freezes something: frozen parameters are sharded too"
    # Adam divides each gradient entry by its own running scale, so an entry whose gradient is close to
    # zero moves by up to the learning rate (1e-3 here) whichever way the two runs' different reduction
    # orders round it: the weights agree to 1e-4 (seen: 3.8e-5 on one entry of stage 2, an AMD EPYC host),
    # the losses above to 1e-5.
    for name, value in one_weights.items():
        assert torch.allclose(two_weights[name], value, atol=1e-4, rtol=0), name
    # the sharded run's checkpoints are sharded, its policy folder is whole and loadable
    assert read_checkpoint(tmp_path / "two").sharded
    assert not read_checkpoint(tmp_path / "one").sharded
    F1Policy.load(tmp_path / "two" / "policy")
    if lora:  # the adapters alone, gathered from the shards
        assert (tmp_path / "two" / "adapter" / "adapter_model.safetensors").is_file()
    if stage == 3 and not lora:  # 2 sharded processes do not resume the unsharded checkpoint of a DDP run
        refused = run_file(tmp_path, "one", dataset, {"strategy": "fsdp"})
        with pytest.raises(AssertionError, match="an FSDP run resumes only sharded checkpoints"):
            launch(refused, stage, 2, "--resume")


# ----------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"strategy": "fsdp2"}, r"distributed.strategy: expected one of ddp, fsdp, received 'fsdp2'.*'fsdp'"),
        (
            {"activation_checkpointing": "yes"},
            r"distributed.activation_checkpointing: expected true or false",
        ),
        ({"reshard_after_forward": 1}, r"distributed.reshard_after_forward: expected true or false"),
        ({"mixed_precision": "fp16"}, r"distributed.mixed_precision: expected one of auto, bf16, fp32"),
        ({"stratgy": "fsdp"}, r"stratgy"),
        ("fsdp", r"distributed: expected a mapping, received str"),
    ],
)
def test_bad_distributed_sections_are_named(data, message) -> None:
    with pytest.raises(ConfigError, match=message):
        DistributedConfig.from_dict(data)
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict({"output_dir": "out", "distributed": data})


def test_the_distributed_section_round_trips_through_the_run_file(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"output_dir": "out", "distributed": {"strategy": "fsdp"}}))
    run = RunConfig.from_yaml(path, {"distributed.activation_checkpointing": True})
    assert run.distributed == DistributedConfig(strategy="fsdp", activation_checkpointing=True)
    assert RunConfig.from_dict(run.to_dict()) == run
    assert RunConfig.from_dict({"output_dir": "out"}).distributed == DistributedConfig()


def test_activation_checkpointing_needs_a_model_that_supports_it() -> None:
    with pytest.raises(ConfigError, match="TinyPolicy has no set_activation_checkpointing"):
        Trainer(
            TinyPolicy(),
            [],
            load_stage_config(3, TRAIN),
            progress=False,
            distributed=DistributedConfig(activation_checkpointing=True),
        )


def test_activation_checkpointing_changes_no_loss_of_the_tiny_f1(tmp_path, dataset) -> None:
    runs = []
    for name, checkpointing in (("plain", False), ("recomputing", True)):
        run = run_file(
            tmp_path, name, dataset, {"activation_checkpointing": checkpointing}, train={"steps": 3}
        )
        run_training(RunConfig.from_yaml(run), 2, progress=False)
        runs.append(losses(tmp_path / name))
    for a, b in zip(*runs):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), key


@pytest.mark.slow
def test_fsdp_in_bf16_mixed_precision_trains_and_keeps_the_tokenizer_exact(tmp_path, dataset) -> None:
    # what CUDA gets by default (mixed_precision auto, precision auto), forced on the CPU
    bf16 = {"strategy": "fsdp", "mixed_precision": "bf16"}
    launch(run_file(tmp_path, "bf16", dataset, bf16, train={"precision": "bf16"}), 3, 2)
    launch(run_file(tmp_path, "fp32", dataset, {"strategy": "ddp"}), 3, 1)
    bf16_losses, fp32_losses = losses(tmp_path / "bf16"), losses(tmp_path / "fp32")
    assert len(bf16_losses) == STEPS
    assert all(math.isfinite(value) for record in bf16_losses for value in record.values())
    for name, value in bf16_losses[0].items():  # the same first step, up to bf16 rounding
        assert value == pytest.approx(fp32_losses[0][name], rel=0.05), name
    trained = weights(tmp_path / "bf16" / "policy")
    reference = weights(tmp_path / "fp32" / "policy")
    tokenizer = [k for k in trained if k.startswith("generation.tokenizer.")]
    assert tokenizer
    assert all(trained[k].dtype == torch.float32 for k in trained)  # master weights stay fp32
    assert all(torch.equal(trained[k], reference[k]) for k in tokenizer)  # frozen, whole, untouched
