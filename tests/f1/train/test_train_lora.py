"""LoRA through peft: only the adapters (and the full groups) train, the base stays bitwise, the merged policy
acts like the adapted one, resume is exact, adapters round-trip and refuse a foreign base."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from robot_dataset import write_robot_dataset
from tiny_training_policy import FAST, TinyPolicy

from f1.errors import CheckpointError, ConfigError
from f1.model import EXPERT_GROUPS, F1Model, F1Policy, preset, save_model
from f1.train import (
    LoraSettings,
    RunConfig,
    StageConfig,
    Trainer,
    export_policy,
    load_stage_config,
    read_metrics,
    run_training,
)
from f1.train.config import LORA_PROJECTIONS
from f1.train.lora import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    adapt_for_stage,
    adapter_state_dict,
    apply_lora,
    base_state_dict,
    load_adapter,
    lora_state,
    merge_adapter,
    merged_model,
    read_adapter,
    save_adapter,
)

LORA_FAST = {**FAST, "steps": 4, "batch_size": 2, "checkpoint_interval": 2, "optimizer": {"lr": 1e-2}}


def _batch(seed: int, size: int = 2) -> dict[str, Any]:
    """A training batch of the tiny preset (64 px, state 8, action 7, chunk 8, embodiment sim_arm)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "observation.images.front": torch.rand(size, 3, 64, 64, generator=g),
        "observation.state": torch.randn(size, 8, generator=g),
        "action": torch.randn(size, 8, 7, generator=g),
        "task": ["put the red cube in the bowl"] * size,
        "embodiment": ["sim_arm"] * size,
        "history": torch.rand(size, 2, 3, 64, 64, generator=g),
        "future_image": torch.rand(size, 3, 64, 64, generator=g),
    }


def _observation(seed: int) -> dict[str, Any]:
    batch = _batch(seed, size=1)
    return {k: v for k, v in batch.items() if k not in ("action", "future_image")}


def _model(seed: int = 0, **overrides: Any) -> F1Model:
    torch.manual_seed(seed)
    return F1Model(preset("tiny", **overrides))


def _stage(**lora: Any) -> StageConfig:
    return load_stage_config(3, {**LORA_FAST, "lora": {"rank": 4, **lora}})


def _clone(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in tensors.items()}


def _randomize_adapters(model: F1Model) -> None:
    """Nonzero B (peft starts it at zero), so the adapters change the outputs."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, tensor in adapter_state_dict(model).items():
            if ".lora_B." in name:
                tensor.copy_(0.05 * torch.randn(tensor.shape, generator=generator))


# ---------------------------------------------------------------------------------------------- settings


def test_lora_settings_round_trip_through_dict_and_yaml_and_reach_a_shipped_stage() -> None:
    stage = load_stage_config(3, {"lora": {"rank": 4, "targets": ["q_proj", "v_proj"], "vision": True}})
    assert stage.lora == LoraSettings(rank=4, targets=("q_proj", "v_proj"), vision=True)
    assert StageConfig.from_dict(stage.to_dict()) == stage
    assert StageConfig.from_dict(yaml.safe_load(stage.to_yaml())) == stage
    assert load_stage_config(3, {"lora.rank": 2}).lora == LoraSettings(
        rank=2
    )  # dotted, into an absent section
    assert load_stage_config(3).lora is None
    assert stage.replace(lora=None).lora is None
    assert LoraSettings(rank=4, alpha=8).scaling == 2.0
    assert LoraSettings().targets == LORA_PROJECTIONS


def test_lora_experts_are_the_trunks_experts() -> None:
    assert tuple(EXPERT_GROUPS) == tuple(_model().trunk.experts)  # und, gen, act in trunk order


@pytest.mark.parametrize(
    ("lora", "message"),
    [
        ({"rank": 0}, "lora.rank must be >= 1, received 0"),
        ({"rank": "four"}, "lora.rank must be an integer"),
        ({"alpha": 0}, "lora.alpha must be > 0"),
        ({"dropout": 1.0}, "lora.dropout must be < 1"),
        ({"targets": ["qproj"]}, "lora.targets: unknown projection 'qproj' (did you mean 'q_proj'?)"),
        ({"targets": "q_proj"}, "lora.targets must be a list of projection names"),
        ({"targets": []}, "lora.targets must name at least one"),
        ({"targets": ["q_proj", "q_proj"]}, "lora.targets lists a name twice"),
        ({"experts": ["action"]}, "lora.experts: unknown expert 'action'"),
        ({"experts": []}, "lora.experts must name at least one expert"),
        ({"vision": "yes"}, "lora.vision must be true or false"),
        (
            {"full_groups": ["embodiments"]},
            "unknown parameter group 'embodiments' (did you mean 'embodiment'?)",
        ),
        ({"rnak": 4}, "lora: unknown keys ['rnak'] (did you mean 'rank'?)"),
        (
            {"experts": ["act"], "full_groups": ["action"]},
            "expert 'act' is in group 'action', which full_groups",
        ),
        ({"vision": True, "full_groups": ["vision"]}, "vision adapts the vision tower, which full_groups"),
    ],
)
def test_bad_lora_settings_are_refused_naming_the_key(lora: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_stage_config(3, {"lora": lora})


@pytest.mark.parametrize(
    ("stage", "overrides", "message"),
    [
        ("tokenizer", {}, "objective 'tokenizer' trains no trunk"),
        (
            1,
            {"lora": {"experts": ["act"], "full_groups": []}},
            "lora.experts: 'act' is in group 'action', which frozen freezes",
        ),
        (1, {"lora": {"full_groups": ["embodiment"]}}, "would train in full, but frozen freezes them"),
        (3, {"frozen": ["vision"], "lora": {"vision": True}}, "frozen freezes group 'vision'"),
        (3, {"lora": [4]}, "lora must be a mapping"),
    ],
)
def test_lora_that_contradicts_the_stage_is_refused(stage: Any, overrides: dict, message: str) -> None:
    overrides = {"lora": {}, **overrides}
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_stage_config(stage, overrides)


# ---------------------------------------------------------------------------------------------- adapting


def test_adapting_changes_no_output_until_the_adapters_train() -> None:
    model = _model().eval()
    before = F1Policy(model).plan(_observation(0), seed=3).actions
    apply_lora(model, LoraSettings(rank=4))
    after = F1Policy(model).plan(_observation(0), seed=3).actions
    assert torch.equal(before, after)  # B starts at zero: W x + 0, bit for bit


def test_lora_targets_the_named_projections_of_the_trained_experts_and_lands_in_their_groups() -> None:
    model = _model()
    state = apply_lora(model, LoraSettings(rank=2, targets=("q_proj", "down_proj")), frozen=("generation",))
    assert {m.rsplit(".", 1)[1] for m in state.modules} == {"q_proj", "down_proj"}
    assert {m.split(".")[2] for m in state.modules} == {"und", "act"}  # gen's group is frozen by the stage
    # 2 experts x 2 targets per layer, less und's last layer: it builds keys and values only (no q_proj, MLP)
    assert len(state.modules) == 2 * 2 * model.config.trunk.n_layers - 2
    groups = model.parameter_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    action = {names[id(p)] for p in groups["action"]}
    assert "trunk.experts.act.layers.0.self_attn.q_proj.lora_A.default.weight" in action
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {*adapter_state_dict(model)}  # adapters and the embodiment adapters, nothing else
    assert all(n.startswith("adapters.") or ".lora_" in n for n in trainable)


def test_vision_true_also_adapts_the_vision_blocks() -> None:
    model = _model()
    state = apply_lora(model, LoraSettings(rank=2, vision=True, experts=("act",)))
    vision = [m for m in state.modules if m.startswith("understanding.vision.")]
    assert {m.rsplit(".", 2)[1] + "." + m.rsplit(".", 1)[1] for m in vision} == {
        "attn.qkv",
        "attn.proj",
        "mlp.fc1",
        "mlp.fc2",
    }
    groups = model.parameter_groups()
    assert any(p.requires_grad for p in groups["vision"])


def test_only_adapters_and_full_groups_train_and_the_base_stays_bitwise() -> None:
    model = _model()
    stage = _stage()
    before = _clone(model.state_dict())
    trainer = Trainer(model, [_batch(i) for i in range(4)], stage, progress=False)
    trainer.fit()
    state = lora_state(model)
    assert state is not None
    base = base_state_dict(model)
    changed = {k for k in before if not torch.equal(before[k], base[k])}
    assert changed == set(state.full_parameters)  # only the embodiment adapters, trained in full
    adapters = adapter_state_dict(model)
    assert any(t.abs().sum() > 0 for k, t in adapters.items() if ".lora_B." in k)  # the adapters learned
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    parameters = dict(model.named_parameters())
    assert optimized == {id(parameters[k]) for k in adapters}
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in trainer.trainable_parameters) < total / 20


def test_merged_policy_acts_like_the_adapted_one_within_1e_5(tmp_path: Path) -> None:
    model = _model().eval()
    apply_lora(model, LoraSettings(rank=4, alpha=8, vision=True))
    _randomize_adapters(model)
    merged = merged_model(model)
    assert lora_state(merged) is None
    assert not any(".lora_" in k for k in merged.state_dict())
    save_model(merged, tmp_path / "merged")
    loaded = F1Policy.load(tmp_path / "merged")
    base_actions = F1Policy(_model().eval()).plan(_observation(0), seed=5).actions
    for seed in range(3):
        adapted = F1Policy(model).plan(_observation(seed), seed=seed).actions
        for plain in (merged, loaded.model):
            actions = F1Policy(plain).plan(_observation(seed), seed=seed).actions
            torch.testing.assert_close(actions, adapted, rtol=0, atol=1e-5)
    assert (F1Policy(model).plan(_observation(0), seed=5).actions - base_actions).abs().max() > 1e-3


def test_resume_with_lora_is_bitwise_identical(tmp_path: Path) -> None:
    stage = _stage(dropout=0.1)  # dropout draws from the global RNG too
    batches = [_batch(i) for i in range(3)]
    straight = Trainer(_model(), batches, stage, output_dir=tmp_path / "straight", progress=False)
    straight_losses = [r["loss"] for r in straight.fit().history]
    first = Trainer(_model(), batches, stage, output_dir=tmp_path / "resumed", progress=False)
    first_losses = [r["loss"] for r in first.fit(stop_at_step=2).history]
    torch.manual_seed(1234)
    second = Trainer(_model(seed=99), batches, stage, output_dir=tmp_path / "resumed", progress=False)
    assert second.resume(tmp_path / "resumed").name == "step_00000002"
    second_losses = [r["loss"] for r in second.fit().history]
    assert first_losses + second_losses == straight_losses
    expected = straight.model.state_dict()
    for name, value in second.model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_a_model_is_adapted_once_and_other_settings_or_models_are_refused(tmp_path: Path) -> None:
    model = _model()
    state = apply_lora(model, LoraSettings(rank=4))
    assert apply_lora(model, LoraSettings(rank=4)) is state  # a second trainer on the same model
    with pytest.raises(ConfigError, match="already carries adapters of other settings"):
        apply_lora(model, LoraSettings(rank=8))
    with pytest.raises(ConfigError, match="the stage has no lora section"):
        adapt_for_stage(model, load_stage_config(3, LORA_FAST))
    with pytest.raises(CheckpointError, match="carries LoRA adapters, which a policy folder cannot hold"):
        save_model(model, tmp_path / "policy")
    assert not (tmp_path / "policy").exists()
    with pytest.raises(ConfigError, match="LoRA adapts an F1Model, received a TinyPolicy"):
        apply_lora(TinyPolicy(), LoraSettings())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "settings", "message"),
    [
        ({"mode": "no_gen"}, LoraSettings(experts=("gen",)), "'gen' is no expert of this policy"),
        ({"generation.frozen": True}, LoraSettings(experts=("gen",)), "freezes expert 'gen' itself"),
        ({}, LoraSettings(experts=("act",), full_groups=()), None),
    ],
)
def test_explicit_experts_must_exist_and_train(
    overrides: dict, settings: LoraSettings, message: str | None
) -> None:
    model = _model(**overrides)
    if message is None:
        assert {m.split(".")[2] for m in apply_lora(model, settings).modules} == {"act"}
        return
    with pytest.raises(ConfigError, match=message):
        apply_lora(model, settings)
    assert lora_state(model) is None  # unchanged
    assert not hasattr(model, "peft_config")


def test_frozen_gen_gets_no_adapters_by_default() -> None:
    state = apply_lora(_model(**{"generation.frozen": True}), LoraSettings())
    assert {m.split(".")[2] for m in state.modules} == {"und", "act"}


def test_missing_peft_is_a_config_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` raise ImportError
    model = _model()
    with pytest.raises(
        ConfigError, match=re.escape("needs the optional dependency peft: pip install 'f1[lora]'")
    ):
        apply_lora(model, LoraSettings())
    assert lora_state(model) is None


@pytest.mark.slow  # a fresh interpreter imports torch and f1: about 15 s on a busy 2-core machine
def test_f1_and_its_command_line_import_without_peft() -> None:
    code = "import sys; sys.modules['peft'] = None; import f1, f1.train, f1.train.lora, f1.cli, f1.demo"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------- files


@pytest.fixture
def adapted(tmp_path: Path) -> dict[str, Any]:
    """A base policy folder and, trained from it, an adapted model whose adapters are saved."""
    base = _model()
    save_model(base, tmp_path / "base")
    model = F1Policy.load(tmp_path / "base").model
    apply_lora(model, LoraSettings(rank=4, alpha=4))
    _randomize_adapters(model)
    with torch.no_grad():  # the fully trained embodiment adapters moved too
        next(model.adapters.parameters()).add_(0.5)
    save_adapter(model, tmp_path / "adapter")
    return {"model": model, "base": tmp_path / "base", "adapter": tmp_path / "adapter", "tmp": tmp_path}


def test_adapters_round_trip_onto_their_base(adapted: dict[str, Any]) -> None:
    assert {p.name for p in adapted["adapter"].iterdir()} == {ADAPTER_WEIGHTS, ADAPTER_CONFIG}
    saved = read_adapter(adapted["adapter"])
    assert saved.settings == LoraSettings(rank=4, alpha=4)
    assert saved.modules == lora_state(adapted["model"]).modules
    model = F1Policy.load(adapted["base"]).model
    load_adapter(model, adapted["adapter"])
    expected = adapted["model"].state_dict()
    assert set(model.state_dict()) == set(expected)
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_merge_adapter_writes_the_merged_policy(adapted: dict[str, Any]) -> None:
    out = merge_adapter(adapted["adapter"], adapted["base"], adapted["tmp"] / "merged")
    expected = merged_model(adapted["model"]).state_dict()
    loaded = F1Policy.load(out).model.state_dict()
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_bad_adapter_folders_are_refused_naming_the_file(adapted: dict[str, Any]) -> None:
    tmp = adapted["tmp"]
    with pytest.raises(CheckpointError, match="no such directory"):
        read_adapter(tmp / "missing")
    (tmp / "empty").mkdir()
    with pytest.raises(CheckpointError, match=f"holds no {ADAPTER_WEIGHTS}"):
        read_adapter(tmp / "empty")
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / ADAPTER_WEIGHTS).write_bytes((adapted["base"] / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"is not an f1 LoRA adapter .*format='f1-policy'"):
        read_adapter(tmp / "foreign")
    (tmp / "truncated").mkdir()
    data = (adapted["adapter"] / ADAPTER_WEIGHTS).read_bytes()
    (tmp / "truncated" / ADAPTER_WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
        read_adapter(tmp / "truncated")


def test_adapters_refuse_a_base_of_another_config_or_other_weights(adapted: dict[str, Any]) -> None:
    other_config = F1Model(preset("tiny", mode="no_gen"))
    with pytest.raises(CheckpointError, match=r"trained on another base policy; config differences.*mode"):
        load_adapter(other_config, adapted["adapter"])
    other_weights = F1Policy.load(adapted["base"]).model
    with torch.no_grad():
        other_weights.trunk.experts["act"].norm.weight.add_(1e-3)
    with pytest.raises(CheckpointError, match="trained on other base weights"):
        load_adapter(other_weights, adapted["adapter"])
    assert lora_state(other_weights) is None  # unchanged
    assert not hasattr(other_weights, "peft_config")
    save_model(other_weights, adapted["tmp"] / "other")
    out = adapted["tmp"] / "out"
    with pytest.raises(CheckpointError, match="trained on other base weights"):
        merge_adapter(adapted["adapter"], adapted["tmp"] / "other", out)
    assert not out.exists()


def test_merge_adapter_refuses_to_replace_a_policy_or_write_over_its_inputs(adapted: dict[str, Any]) -> None:
    occupied = adapted["tmp"] / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty; pass --force"):
        merge_adapter(adapted["adapter"], adapted["base"], occupied)
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    with pytest.raises(ConfigError, match="is the base policy"):
        merge_adapter(adapted["adapter"], adapted["base"], adapted["base"], overwrite=True)
    with pytest.raises(ConfigError, match="is the adapter folder"):
        merge_adapter(adapted["adapter"], adapted["base"], adapted["adapter"], overwrite=True)
    merge_adapter(adapted["adapter"], adapted["base"], occupied, overwrite=True)
    F1Policy.load(occupied)


def test_saving_adapters_of_a_plain_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="carries no LoRA adapters"):
        save_adapter(_model(), tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()


# ---------------------------------------------------------------------------------------------- a run


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory) -> dict[str, Any]:
    """A base run (stage III, full), a LoRA run from it, and the same LoRA run interrupted and resumed."""
    tmp = tmp_path_factory.mktemp("lora_runs")
    root = write_robot_dataset(tmp / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def run(name: str, train: dict, **extra: Any) -> RunConfig:
        return RunConfig.from_dict(
            {
                "output_dir": str(tmp / name),
                "model": {"preset": "tiny"},
                "data": {"root": str(root)},
                "train": {"batch_size": 4, "log_interval": 1, "precision": "fp32", **train},
                "device": "cpu",
                "threads": 1,
                **extra,
            }
        )

    lora = {"steps": 4, "checkpoint_interval": 2, "schedule": {"warmup_steps": 1}, "lora": {"rank": 4}}
    try:
        base = run_training(run("base", {"steps": 1}), 3, progress=False)
        straight = run_training(run("lora", lora, init_from=str(tmp / "base")), 3, progress=False)
        resumed_run = run("resumed", lora, init_from=str(tmp / "base"))
        run_training(resumed_run, 3, progress=False, stop_at_step=2)
        resumed = run_training(resumed_run, 3, progress=False, resume=True)
    finally:
        torch.set_num_threads(threads)
    return {"tmp": tmp, "base": base, "straight": straight, "resumed": resumed}


def test_a_lora_run_writes_its_adapters_and_the_merged_policy(lora_runs: dict[str, Any]) -> None:
    straight, tmp = lora_runs["straight"], lora_runs["tmp"]
    assert straight.adapter_dir == tmp / "lora" / "adapter"
    assert lora_runs["base"].adapter_dir is None
    assert (tmp / "lora" / "stage.yaml").read_text().count("rank: 4") == 1
    merged = merge_adapter(straight.adapter_dir, lora_runs["base"].policy_dir, tmp / "merged")
    run_policy = F1Policy.load(straight.policy_dir).model.state_dict()
    for folder in (merged, export_policy(tmp / "lora", tmp / "exported")):  # three ways to the same policy
        other = F1Policy.load(folder).model.state_dict()
        assert set(other) == set(run_policy)
        assert all(torch.equal(other[k], run_policy[k]) for k in run_policy)


def test_a_resumed_lora_run_is_bitwise_the_uninterrupted_one(lora_runs: dict[str, Any]) -> None:
    tmp = lora_runs["tmp"]
    losses = [r["loss"] for r in read_metrics(tmp / "lora")]
    assert [r["loss"] for r in read_metrics(tmp / "resumed")] == losses
    assert len(losses) == 4
    a = read_adapter(tmp / "lora" / "adapter")
    b = read_adapter(tmp / "resumed" / "adapter")
    assert a.base_digest == b.base_digest
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
