"""Sharded checkpoints of FSDP2 runs: atomic, resumed bitwise, loaded on another number of processes,
exported whole; damaged, mismatched or code-carrying checkpoints refused (helpers: fsdp_runs.py)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from fsdp_runs import (
    ENV,
    HERE,
    TRAIN,
    launch,
    one_step,
    run_file,
    sharded_trainer,
    sharded_weights,
    weights,
    write_dataset,
)
from killed_save import kill_mid_save
from tiny_training_policy import TinyPolicy

from f1.errors import CheckpointError
from f1.train import (
    RunConfig,
    Trainer,
    export_policy,
    load_stage_config,
    read_checkpoint,
    read_metrics,
    run_training,
)
from f1.train import checkpoint as ckpt
from f1.train.distributed import DistributedConfig
from f1.train.sharded_checkpoint import SHARDED_DIR, read_sharded_metadata


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("fsdp"))


@pytest.mark.slow
def test_a_sharded_checkpoint_resumes_bitwise_and_loads_on_another_number_of_processes(
    tmp_path, dataset
) -> None:
    sharded = {"strategy": "fsdp"}
    whole = run_file(tmp_path, "whole", dataset, sharded)
    launch(whole, 3, 2)
    halves = run_file(tmp_path, "halves", dataset, sharded)
    launch(halves, 3, 2, "--stop-at-step", "2")
    assert read_checkpoint(tmp_path / "halves").world_size == 2
    shutil.copytree(tmp_path / "halves", tmp_path / "on_one")  # the same step-2 checkpoint, for 1 process
    launch(halves, 3, 2, "--resume")

    final = "checkpoints/step_00000004"
    expected = sharded_weights(tmp_path / "whole" / final, tmp_path / "whole" / "policy")
    resumed = sharded_weights(tmp_path / "halves" / final, tmp_path / "whole" / "policy")
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    assert [r["loss"] for r in read_metrics(tmp_path / "halves")] == [
        r["loss"] for r in read_metrics(tmp_path / "whole")
    ]

    # saved by 2 processes at step 2, resumed by 1 (no process group) to step 3, then by 2 again to step 4:
    # the same data and per-sample randomness, so the same run up to float rounding (only the RNG streams
    # are not carried over across process counts)
    on_one = run_file(tmp_path, "on_one", dataset, sharded)
    launch(on_one, 3, 1, "--resume", "--stop-at-step", "3")
    assert read_checkpoint(tmp_path / "on_one").world_size == 1
    launch(on_one, 3, 2, "--resume")
    assert read_checkpoint(tmp_path / "on_one").world_size == 2
    losses = [r["loss"] for r in read_metrics(tmp_path / "on_one")]
    assert losses == pytest.approx([r["loss"] for r in read_metrics(tmp_path / "whole")], abs=1e-5)
    moved = sharded_weights(tmp_path / "on_one" / final, tmp_path / "whole" / "policy")
    assert all(torch.allclose(moved[k], v, atol=1e-5, rtol=0) for k, v in expected.items())


def test_f1_export_reads_a_sharded_checkpoint_into_a_whole_policy(tmp_path, dataset) -> None:
    run = RunConfig.from_yaml(run_file(tmp_path, "run", dataset, {"strategy": "fsdp"}, train={"steps": 2}))

    result = run_training(run, 3, progress=False)
    assert read_checkpoint(result.last_checkpoint).sharded
    exported = export_policy(tmp_path / "run", tmp_path / "exported")
    final = weights(result.policy_dir)
    assert all(torch.equal(weights(exported)[k], v) for k, v in final.items())
    metadata = read_sharded_metadata(result.last_checkpoint / SHARDED_DIR)
    assert any(key.startswith("optimizer.state.") for key in metadata.state_dict_metadata)


# ----------------------------------------------------------------------------------- sharded checkpoints


def test_a_sharded_checkpoint_round_trips_the_model_and_the_optimizer_on_one_process(tmp_path) -> None:
    trainer = sharded_trainer(tmp_path)
    one_step(trainer)
    path = trainer.save()
    assert read_checkpoint(path).sharded
    restored = sharded_trainer(tmp_path / "other")
    restored.resume(path)
    for (name, a), b in zip(trainer.model.state_dict().items(), restored.model.state_dict().values()):
        assert torch.equal(a, b), name
    saved, loaded = trainer.optimizer.state_dict(), restored.optimizer.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for index, state in saved["state"].items():
        assert all(torch.equal(value, loaded["state"][index][key]) for key, value in state.items())
    assert restored.step == trainer.step == 1


def test_an_exception_halfway_through_a_sharded_save_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch
) -> None:
    trainer = sharded_trainer(tmp_path)
    one_step(trainer)
    trainer.save()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_torch", fail)
    one_step(trainer)
    with pytest.raises(CheckpointError, match=r"No space left on device.*step_00000001 is intact"):
        trainer.save()
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert read_checkpoint(tmp_path).step == 1


def test_a_process_killed_mid_sharded_save_leaves_the_previous_checkpoint_loadable(tmp_path: Path) -> None:
    marker = tmp_path / "halfway"
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(HERE)!r})
        from fsdp_runs import one_step, sharded_trainer
        from killed_save import hang_after_torch_write

        trainer = sharded_trainer(Path({str(tmp_path)!r}))
        one_step(trainer)
        trainer.save()
        hang_after_torch_write(Path({str(marker)!r}))
        one_step(trainer)
        trainer.save()
        """
    )
    kill_mid_save(script, marker, timeout_s=120, env=ENV)
    partial = list((tmp_path / "checkpoints").glob(".tmp-step_00000002-*"))
    assert partial, "the killed save should leave its partial directory"
    assert list((partial[0] / SHARDED_DIR).glob("*.distcp")), "the kill came after the shards were written"
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint.step == 1
    restored = sharded_trainer(tmp_path / "other")
    restored.resume(checkpoint.path)
    assert restored.step == 1


def test_a_sharded_checkpoint_that_does_not_fit_or_is_damaged_is_refused_before_any_change(tmp_path) -> None:
    trainer = sharded_trainer(tmp_path)
    one_step(trainer)
    path = trainer.save()
    other = Trainer(
        TinyPolicy(hidden=8),
        [],
        load_stage_config(3, {**TRAIN, "steps": 10}),
        progress=False,
        distributed=DistributedConfig(strategy="fsdp"),
    )
    before = {k: v.clone() for k, v in other.model.state_dict().items()}
    mismatch = r"does not match the model; .*shape mismatches: .*expected \(8, .*received \(16"
    with pytest.raises(CheckpointError, match=mismatch):
        other.resume(path)
    assert all(torch.equal(before[k], v) for k, v in other.model.state_dict().items())

    shard = next((path / SHARDED_DIR).glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:-10])  # truncated
    with pytest.raises(CheckpointError, match=r"\.distcp is corrupt: expected \d+ bytes"):
        sharded_trainer(tmp_path / "again").resume(path)


def test_sharded_metadata_naming_code_is_refused_without_running_it(tmp_path) -> None:
    trainer = sharded_trainer(tmp_path)
    one_step(trainer)
    path = trainer.save()
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    metadata = path / SHARDED_DIR / ".metadata"
    metadata.write_bytes(pickle.dumps(Payload()))
    state = json.loads((path / ckpt.STATE_FILE).read_text())
    state["file_sizes"][f"{SHARDED_DIR}/.metadata"] = metadata.stat().st_size
    (path / ckpt.STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(
        CheckpointError, match=r"\.metadata is corrupt or holds more than checkpoint metadata"
    ):
        read_checkpoint(path)
    assert not marker.exists()


def test_one_process_under_fsdp_resumes_an_unsharded_checkpoint_and_writes_sharded_ones(tmp_path) -> None:
    plain = Trainer(
        TinyPolicy(), [], load_stage_config(3, {**TRAIN, "steps": 10}), output_dir=tmp_path, progress=False
    )
    one_step(plain)
    path = plain.save()
    assert not read_checkpoint(path).sharded
    sharded = sharded_trainer(tmp_path / "sharded")  # one process: nothing is sharded, the weights load whole
    sharded.resume(path)
    assert sharded.step == 1
    one_step(sharded)
    assert read_checkpoint(sharded.save()).sharded
