"""The training memory planner: counted parameters, sharding, LoRA, checkpointing, the measured activation
formula, validation and ``f1 plan-memory``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from f1.cli import main
from f1.errors import ConfigError
from f1.model import F1Model, preset
from f1.train.memory_plan import (
    LORA_TARGETS,
    MemoryPlan,
    _activation_units,
    _meta_model,
    _parameter_layout,
    _scaled_sites,
    activation_units,
    measure_activations,
    plan_memory,
    training_batch,
)


@pytest.fixture(scope="module")
def tiny_model() -> F1Model:
    torch.manual_seed(0)
    return F1Model(preset("tiny"))


def _trainable_numel(model: F1Model) -> int:
    groups = model.parameter_groups()
    return sum(
        p.numel() for g, params in groups.items() if g != "tokenizer" for p in params if p.requires_grad
    )


def test_parameter_bytes_equal_the_real_models_numel_times_the_bytes_at_tiny(tiny_model: F1Model) -> None:
    plan = plan_memory("tiny", strategy="ddp", world_size=1, batch_size=2, precision="fp32")
    numel = sum(p.numel() for p in tiny_model.parameters())
    trainable = _trainable_numel(tiny_model)
    assert plan.counts["parameters"] == numel
    assert plan.parameters == 4 * numel
    assert plan.gradients == 4 * trainable
    assert plan.optimizer == 8 * trainable  # AdamW's two fp32 moments
    assert "ddp_buckets" not in plan.other  # one process: the trainer wraps no DDP
    assert plan.total == max(plan.phases.values()) >= plan.parameters + plan.optimizer + plan.activations


def test_ddp_on_several_ranks_keeps_a_flat_copy_of_the_gradients_and_bf16_copies_of_the_weights(
    tiny_model: F1Model,
) -> None:
    plan = plan_memory("tiny", strategy="ddp", world_size=2, batch_size=2, precision="bf16")
    linear = sum(
        p.numel()
        for name, m in tiny_model.named_modules()
        if isinstance(m, nn.Linear | nn.Conv2d) and not name.startswith("generation.tokenizer")
        for p in m.parameters(recurse=False)
    )
    assert plan.other["ddp_buckets"] == 4 * _trainable_numel(tiny_model)
    assert plan.other["weight_copies"] == 2 * linear


def test_fsdp_divides_the_sharded_categories_by_the_world_size(tiny_model: F1Model) -> None:
    one = plan_memory("tiny", strategy="fsdp", world_size=1, batch_size=2, precision="fp32")
    four = plan_memory("tiny", strategy="fsdp", world_size=4, batch_size=2, precision="fp32")
    whole = {id(p) for m in tiny_model.unsharded_modules() for p in m.parameters()}  # the tokenizer
    padded = sum(
        math.ceil((p.shape[0] if p.ndim else 1) / 4) * (p.numel() // (p.shape[0] if p.ndim else 1))
        for p in tiny_model.parameters()
        if id(p) not in whole
    )
    kept = sum(p.numel() for p in tiny_model.parameters() if id(p) in whole)
    assert kept > 0
    assert four.parameters == 4 * (padded + kept)  # FSDP2 pads dim 0 to a multiple of the world size
    for category in ("gradients", "optimizer"):
        assert getattr(one, category) / 4 <= getattr(four, category) <= getattr(one, category) / 4 * 1.01
    assert four.activations == one.activations  # each rank runs its own micro-batch
    assert four.other["fsdp_root"] == one.other["fsdp_root"]  # gathered whole on every rank


def test_lora_leaves_no_gradient_or_optimizer_state_for_base_weights(tiny_model: F1Model) -> None:
    rank = 4
    plan = plan_memory("tiny", strategy="ddp", world_size=1, batch_size=2, precision="fp32", lora_rank=rank)
    adapters = sum(
        rank * (m.in_features + m.out_features)
        for name, m in tiny_model.named_modules()
        if isinstance(m, nn.Linear)
        and name.startswith("trunk.experts.")
        and name.split(".")[-1] in LORA_TARGETS
    )
    assert plan.counts["lora"] == plan.counts["trainable"] == adapters
    assert plan.gradients == 4 * adapters
    assert plan.optimizer == 8 * adapters
    assert plan.parameters == 4 * (sum(p.numel() for p in tiny_model.parameters()) + adapters)


def test_a_frozen_vision_tower_saves_nothing_for_backward() -> None:
    measured = measure_activations("tiny", 2, lora_rank=4)  # LoRA: only the experts' adapters train
    assert not any(site.startswith("vision.") for site in measured.site_bytes)
    full = measure_activations("tiny", 2)
    assert sum(v for k, v in full.site_bytes.items() if k.startswith("vision.")) > 0


def test_checkpointing_lowers_the_activations_and_recomputes_one_layer() -> None:
    kept = plan_memory("tiny", batch_size=4, precision="fp32")
    checkpointed = plan_memory("tiny", batch_size=4, precision="fp32", activation_checkpointing=True)
    assert checkpointed.activations < kept.activations
    assert 0 < checkpointed.other["recompute"] < kept.activations
    assert "recompute" in checkpointed.phases
    assert "recompute" not in kept.phases


def test_the_activation_formula_reproduces_the_tiny_measurement_at_another_batch() -> None:
    calibration = measure_activations("tiny", 2)
    measured = measure_activations("tiny", 6)
    predicted, fallback = _scaled_sites(calibration, measured.units, 6)
    assert not fallback
    assert sum(predicted.values()) == pytest.approx(measured.saved_bytes, rel=0.02)
    for site in ("trunk.mlp_hidden", "trunk.qkv", "trunk.attention", "vision.block.mlp.fc2"):
        assert predicted[site] == pytest.approx(measured.site_bytes[site], rel=0.01)


def test_units_follow_the_modules_the_model_builds() -> None:
    model = _meta_model(preset("tiny"))
    full = _activation_units(model, None)
    layers = len(model.trunk.experts["act"].layers)
    params = sum(p.numel for p in _parameter_layout(model, None, ("action",)))
    del model.trunk.experts["act"].layers[layers - 1].mlp  # as a K/V-only last layer is built
    fewer = _activation_units(model, None)
    tokens = model.config.action.chunk_size + 1  # the state token and the chunk
    mlp = model.config.trunk.action_mlp
    assert full["trunk.mlp_hidden"] - fewer["trunk.mlp_hidden"] == tokens * mlp
    assert sum(p.numel for p in _parameter_layout(model, None, ("action",))) < params


def test_activation_units_grow_with_the_model_and_count_the_history_frames() -> None:
    tiny, small = activation_units("tiny"), activation_units("small")
    assert small["trunk.attention"] > tiny["trunk.attention"] > 0
    assert tiny["frames_per_sample"] == preset("tiny").generation.history_frames


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config": "huge"}, "config: expected an F1Config or a preset in"),
        ({"config": 3}, "config: expected an F1Config or a preset name, received int"),
        ({"strategy": "zero3"}, "strategy: expected one of ['ddp', 'fsdp'], received 'zero3'"),
        ({"world_size": 0}, "world_size: expected an int >= 1, received 0"),
        ({"world_size": True}, "world_size: expected an int >= 1, received True"),
        ({"batch_size": 2.5}, "batch_size: expected an int >= 1, received 2.5"),
        ({"lora_rank": 0}, "lora_rank: expected an int >= 1, received 0"),
        ({"activation_checkpointing": "yes"}, "activation_checkpointing: expected a bool, received 'yes'"),
        ({"precision": "fp16"}, "precision: expected one of ['bf16', 'fp32'], received 'fp16'"),
        ({"trainable_groups": "vision"}, "trainable_groups: expected a sequence of parameter groups"),
        ({"trainable_groups": ["visoin"]}, "trainable_groups: expected groups among"),
        ({"trainable_groups": []}, "trainable_groups: nothing would train"),
        ({"generation_scales": 9}, "generation_scales: expected None or an int in [1, 4]"),
        ({"frames_encoded": 1}, "frames_encoded: expected a bool, received 1"),
        ({"calibration": "nano"}, "calibration: expected an F1Config or a preset in"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs: dict, message: str) -> None:
    arguments = {"config": "tiny", **kwargs}
    with pytest.raises(ConfigError) as error:
        plan_memory(arguments.pop("config"), **arguments)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: measure_activations("tiny", 0), "batch_size: expected an int >= 1, received 0"),
        (lambda: measure_activations("tiny", mode="fp16"), "mode: expected one of ['fp32', 'bf16_weights']"),
        (lambda: measure_activations("tiny", lora_rank=0), "lora_rank: expected an int >= 1, received 0"),
        (lambda: measure_activations("tiny", trainable_groups=["x"]), "trainable_groups: expected groups"),
        (lambda: activation_units("huge"), "config: expected an F1Config or a preset in"),
        (lambda: activation_units("tiny", generation_scales=0), "generation_scales: expected None or an int"),
        (lambda: training_batch("tiny", -1), "batch_size: expected an int >= 1, received -1"),
        (lambda: plan_memory("tiny", precision="fp32").table(unit="KB"), "unit: expected 'GiB' or 'MiB'"),
    ],
)
def test_the_other_public_entries_refuse_bad_arguments_naming_them(call, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        call()
    assert message in str(error.value)


def test_the_cli_prints_gib_per_rank_with_the_formulas_and_writes_the_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"
    argv = ["plan-memory", "--preset", "tiny", "--strategy", "fsdp", "--world-size", "2", "--batch-size", "2"]
    assert main([*argv, "--precision", "fp32", "--checkpointing", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("GiB per rank", "4 B x S(N)", "at forward_end", "activation formula:", "assumptions:"):
        assert text in printed
    written = json.loads(out.read_text())
    plan = plan_memory(
        "tiny", strategy="fsdp", world_size=2, batch_size=2, precision="fp32", activation_checkpointing=True
    )
    assert isinstance(plan, MemoryPlan)
    assert written["total"] == plan.total
    assert written["parameters"] == plan.parameters
    assert written["phases"] == plan.phases
    assert written["peak_phase"] == plan.peak_phase
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--preset: expected one of"),
        (
            ["--preset", "huge"],
            "--preset: expected one of ['tiny', 'small', 'f1-4.2b', 'pi0'], received 'huge'",
        ),
        (["--preset", "tiny", "--strategy", "zero"], "--strategy: expected one of ['ddp', 'fsdp']"),
        (["--preset", "tiny", "--world-size", "two"], "--world-size: expected an int >= 1, received 'two'"),
        (["--preset", "tiny", "--batch-size", "0"], "--batch-size: expected an int >= 1, received '0'"),
        (["--preset", "tiny", "--lora", "-4"], "--lora: expected an int >= 1, received '-4'"),
        (["--preset", "tiny", "--precision", "fp8"], "--precision: expected one of ['bf16', 'fp32']"),
        (["--preset", "tiny", "--generation-scales", "5"], "--generation-scales: expected None or an int"),
        (["--preset", "tiny", "--trainable", "heads"], "--trainable: expected groups among"),
        (["--preset", "tiny", "--json", "/no/such/folder/p.json"], "--json: expected a file in an existing"),
    ],
)
def test_the_cli_refuses_bad_arguments_with_exit_2_and_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan-memory", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert message in captured.err
