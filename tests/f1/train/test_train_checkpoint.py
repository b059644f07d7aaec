"""Checkpoints: atomic, tensors only, and refused with a clear message when foreign, corrupt or misfit."""

from __future__ import annotations

import errno
import json
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import torch
from killed_save import kill_mid_save
from tiny_training_policy import TinyPolicy

from f1.train import checkpoint as ckpt
from f1.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_policy_weights,
    read_checkpoint,
    read_weights,
    save_checkpoint,
)
from f1.train.config import OptimizerConfig, ScheduleConfig
from f1.train.optim import build_optimizer, build_scheduler
from f1.train.rng import capture_rng_state

HERE = Path(__file__).resolve().parent


def _save(directory: Path, policy: torch.nn.Module, step: int, keep: int | None = None) -> Path:
    optimizer = build_optimizer({"action": list(policy.parameters())}, OptimizerConfig())
    scheduler = build_scheduler(optimizer, ScheduleConfig(warmup_steps=2), total_steps=10)
    return save_checkpoint(
        directory,
        step=step,
        model=policy,
        optimizer=optimizer,
        scheduler=scheduler,
        stage_config={"name": "test"},
        rng_states=[capture_rng_state()],
        batch_states=[{"epoch": 0, "batch_in_epoch": step}],
        metadata={"run": {"model": {"preset": "tiny"}}},
        keep=keep,
    )


def test_checkpoint_round_trips_every_part(tmp_path: Path) -> None:
    policy = TinyPolicy()
    path = _save(tmp_path, policy, step=3)
    assert path.name == "step_00000003"
    loaded = read_checkpoint(tmp_path)
    assert loaded.step == 3
    assert loaded.batch_states == [{"epoch": 0, "batch_in_epoch": 3}]
    assert loaded.metadata == {"run": {"model": {"preset": "tiny"}}}
    assert loaded.param_group_names == ["action", "action/no_decay"]
    for name, value in policy.state_dict().items():
        assert torch.equal(loaded.weights[name], value)
    assert torch.equal(loaded.rng_states[0]["torch"], torch.get_rng_state())
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors",
        "optimizer.pt",
        "rng.pt",
        "scheduler.pt",
        "trainer_state.json",
    ]


def test_tied_weights_are_stored_once_and_restored_tied(tmp_path: Path) -> None:
    policy = TinyPolicy()
    policy.tied_head = torch.nn.Linear(16, 8, bias=False)
    policy.tied_head.weight = policy.codebook.weight  # (8, 16), like an LM head tied to its embedding
    path = _save(tmp_path, policy, step=1)
    stored = safetensors.torch.load_file(str(path / "model.safetensors"))
    assert "codebook.weight" in stored
    assert "tied_head.weight" not in stored
    fresh = TinyPolicy()
    fresh.tied_head = torch.nn.Linear(16, 8, bias=False)
    fresh.tied_head.weight = fresh.codebook.weight
    load_policy_weights(fresh, tmp_path)
    assert torch.equal(fresh.tied_head.weight, policy.codebook.weight)
    assert fresh.tied_head.weight is fresh.codebook.weight


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    policy = TinyPolicy()
    for step in (1, 2, 3, 4):
        _save(tmp_path, policy, step=step, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000003", "step_00000004"]


def test_an_exception_halfway_through_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    policy = TinyPolicy()
    _save(tmp_path, policy, step=1)
    real_write = ckpt._write_torch

    def write_half_then_fail(path: Path, obj) -> None:
        real_write(path, obj)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_torch", write_half_then_fail)
    with torch.no_grad():
        policy.vision.weight.add_(1.0)
    expected = (
        r"could not write the checkpoint of step 2 .*: No space left on device .*step_00000001 is intact"
    )
    with pytest.raises(CheckpointError, match=expected):
        _save(tmp_path, policy, step=2)
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    assert not list(tmp_path.glob(".tmp-*"))  # the partial directory was removed
    assert read_checkpoint(tmp_path).step == 1


def test_a_full_disk_reported_by_torch_names_the_reason_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch
) -> None:
    policy = TinyPolicy()
    _save(tmp_path, policy, step=1)

    def torch_style_failure(path: Path, obj) -> None:  # torch.save's own wrapping of ENOSPC
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as cause:
            raise RuntimeError(
                "[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"
            ) from cause

    monkeypatch.setattr(ckpt, "_write_torch", torch_style_failure)
    with pytest.raises(CheckpointError, match="No space left on device"):
        _save(tmp_path, policy, step=2)
    assert read_checkpoint(tmp_path).step == 1


@pytest.mark.slow
def test_a_process_killed_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path: Path) -> None:
    marker = tmp_path / "halfway"
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(HERE)!r})
        from test_train_checkpoint import _save
        from tiny_training_policy import TinyPolicy
        from killed_save import hang_after_torch_write

        policy = TinyPolicy()
        _save(Path({str(tmp_path)!r}), policy, step=1)
        hang_after_torch_write(Path({str(marker)!r}))
        _save(Path({str(tmp_path)!r}), policy, step=2)
        """
    )
    kill_mid_save(script, marker, timeout_s=60)
    assert list(tmp_path.glob(".tmp-step_00000002-*")), "the killed save should leave its partial directory"
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    assert read_checkpoint(tmp_path).step == 1
    _save(tmp_path, TinyPolicy(), step=2)  # the next save clears the leftovers
    assert not list(tmp_path.glob(".tmp-*"))
    assert read_checkpoint(tmp_path).step == 2


def test_foreign_and_missing_checkpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint path does not exist: .*nowhere"):
        read_checkpoint(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        read_checkpoint(empty)
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match=r"metadata format 'f1\.train\.checkpoint'"):
        read_weights(foreign)
    other = tmp_path / "other" / "step_00000001"
    other.mkdir(parents=True)
    (other / "trainer_state.json").write_text(json.dumps({"format": "something.else"}))
    expected = r"expected format 'f1\.train\.checkpoint', received 'something\.else'"
    with pytest.raises(CheckpointError, match=expected):
        read_checkpoint(other)


@pytest.mark.parametrize("victim", ["model.safetensors", "optimizer.pt", "trainer_state.json"])
def test_corrupt_files_are_named(tmp_path: Path, victim: str) -> None:
    path = _save(tmp_path, TinyPolicy(), step=1)
    target = path / victim
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=victim.replace(".", r"\.")):
        read_checkpoint(tmp_path)


def test_a_file_with_pickled_code_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path, TinyPolicy(), step=1)
    evil = path / "optimizer.pt"
    torch.save({"state": {}, "param_groups": [], "payload": OptimizerConfig()}, evil)  # a class, not tensors
    state = json.loads((path / "trainer_state.json").read_text())
    state["file_sizes"]["optimizer.pt"] = evil.stat().st_size
    (path / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"optimizer\.pt is corrupt or holds more than tensors"):
        read_checkpoint(tmp_path)


def test_weights_that_do_not_fit_are_refused_before_any_change(tmp_path: Path) -> None:
    _save(tmp_path, TinyPolicy(hidden=16), step=1)
    other = TinyPolicy(hidden=8)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    expected = r"does not match the model; 14 shape mismatches: .*vision\.weight: expected \(8, 6\), "
    expected += r"received \(16, 6\)"
    with pytest.raises(CheckpointError, match=expected):
        load_policy_weights(other, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_init_from_weights_written_with_the_dead_last_layer_tensors_drops_them(tmp_path: Path) -> None:
    # a run of a version that still built the understanding expert's last layer in full
    from f1.model import F1Model, preset

    torch.manual_seed(0)
    source = F1Model(preset("tiny", mode="no_gen"))
    weights = {k: v.clone() for k, v in source.state_dict().items()}
    und = source.trunk.experts["und"]
    dead = {f"trunk.experts.und.{name}": torch.zeros(1) for name in und.unbuilt_tensors}
    assert dead
    metadata = {"format": ckpt.CHECKPOINT_FORMAT}
    safetensors.torch.save_file({**weights, **dead}, str(tmp_path / "model.safetensors"), metadata=metadata)
    torch.manual_seed(1)
    target = F1Model(preset("tiny", mode="no_gen"))
    load_policy_weights(target, tmp_path / "model.safetensors")
    assert all(torch.equal(target.state_dict()[k], v) for k, v in weights.items())
