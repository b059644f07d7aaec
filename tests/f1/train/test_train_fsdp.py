"""FSDP2 on a 2-process gloo group (CPU): the tiny F1 trains as 1 process on the combined batch in all three
stages, sharded checkpoints are atomic, resume bitwise, load on another number of processes, and export to a
policy folder.

The runs read a small LeRobot dataset whose samples carry their own flow noise and time and have no padded
steps (``lerobot_seeded_flow``, tests/f1/train/tiny_training_policy.py): the model's losses are means over
valid entries, so equal randomness and equal counts per sample make 2 processes on halves of a batch equal
1 process on all of it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from robot_dataset import write_robot_dataset
from safetensors.torch import load_file
from tiny_training_policy import TinyPolicy

from f1.errors import CheckpointError, ConfigError
from f1.model import F1Policy
from f1.train import RunConfig, Trainer, export_policy, load_stage_config, read_checkpoint, read_metrics
from f1.train import checkpoint as ckpt
from f1.train.distributed import DistributedConfig
from f1.train.sharded_checkpoint import SHARDED_DIR, load_sharded_weights, read_sharded_metadata

HERE = Path(__file__).resolve().parent
STEPS = 4
TRAIN = {
    "steps": STEPS,
    "batch_size": 8,  # global: 4 per process with 2 processes
    "log_interval": 1,
    "checkpoint_interval": 2,
    "schedule": {"warmup_steps": 1},
    "optimizer": {"lr": 1e-3},
    "precision": "fp32",
}
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_robot_dataset(tmp_path_factory.mktemp("fsdp") / "data", episodes=4, length=14)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_file(folder: Path, name: str, data: Path, distributed: dict, *, draws: int = 1, **extra) -> Path:
    model = {"factory": "f1_seeded_flow", "preset": "tiny", "overrides": {"action": {"noise_draws": draws}}}
    run = {
        "output_dir": str(folder / name),
        "model": model,
        "data": {"factory": "lerobot_seeded_flow", "root": str(data)},
        "train": {**TRAIN, **extra.pop("train", {})},
        "device": "cpu",
        "distributed": distributed,
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def _train(run_file: Path, stage: int | str, processes: int, *flags: str) -> None:
    command = [sys.executable, "-m", "f1.cli", "train", "--config", str(run_file), "--stage", str(stage)]
    if processes > 1:
        command[1:3] = [
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={processes}",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            "-m",
            "f1.cli",
        ]
    done = subprocess.run(
        [*command, "--no-progress", *flags], env=ENV, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-4000:]


def _weights(policy_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(policy_dir / "model.safetensors"))


def _losses(run_dir: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k.startswith("loss")} for r in read_metrics(run_dir)]


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
    _train(_run_file(tmp_path, "two", dataset, sharded, draws=draws, train=train), stage, 2)
    _train(_run_file(tmp_path, "one", dataset, {"strategy": "ddp"}, draws=draws, train=train), stage, 1)

    two, one = _losses(tmp_path / "two"), _losses(tmp_path / "one")
    assert len(two) == len(one) == STEPS
    for step, (a, b) in enumerate(zip(two, one), start=1):
        assert a.keys() == b.keys()
        for name in a:
            assert a[name] == pytest.approx(b[name], abs=1e-5), (step, name)
    two_weights, one_weights = _weights(tmp_path / "two" / "policy"), _weights(tmp_path / "one" / "policy")
    assert two_weights.keys() == one_weights.keys()
    frozen = load_stage_config(stage).frozen
    assert frozen, "every shipped stage freezes something: frozen parameters are sharded too"
    for name, value in one_weights.items():
        assert torch.allclose(two_weights[name], value, atol=1e-5, rtol=0), name
    # the sharded run's checkpoints are sharded, its policy folder is whole and loadable
    assert read_checkpoint(tmp_path / "two").sharded
    assert not read_checkpoint(tmp_path / "one").sharded
    F1Policy.load(tmp_path / "two" / "policy")
    if lora:  # the adapters alone, gathered from the shards
        assert (tmp_path / "two" / "adapter" / "adapter_model.safetensors").is_file()
    if stage == 3 and not lora:  # 2 sharded processes do not resume the unsharded checkpoint of a DDP run
        refused = _run_file(tmp_path, "one", dataset, {"strategy": "fsdp"})
        with pytest.raises(AssertionError, match="an FSDP run resumes only sharded checkpoints"):
            _train(refused, stage, 2, "--resume")


def _sharded_weights(checkpoint: Path, like: Path) -> dict[str, torch.Tensor]:
    """The model tensors of a sharded checkpoint, read whole in this process (no process group)."""
    policy = F1Policy.load(like)
    load_sharded_weights(checkpoint / SHARDED_DIR, policy.model)
    return {k: v.clone() for k, v in policy.model.state_dict().items()}


@pytest.mark.slow
def test_a_sharded_checkpoint_resumes_bitwise_and_loads_on_another_number_of_processes(
    tmp_path, dataset
) -> None:
    sharded = {"strategy": "fsdp"}
    whole = _run_file(tmp_path, "whole", dataset, sharded)
    _train(whole, 3, 2)
    halves = _run_file(tmp_path, "halves", dataset, sharded)
    _train(halves, 3, 2, "--stop-at-step", "2")
    assert read_checkpoint(tmp_path / "halves").world_size == 2
    shutil.copytree(tmp_path / "halves", tmp_path / "on_one")  # the same step-2 checkpoint, for 1 process
    _train(halves, 3, 2, "--resume")

    final = "checkpoints/step_00000004"
    expected = _sharded_weights(tmp_path / "whole" / final, tmp_path / "whole" / "policy")
    resumed = _sharded_weights(tmp_path / "halves" / final, tmp_path / "whole" / "policy")
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    assert [r["loss"] for r in read_metrics(tmp_path / "halves")] == [
        r["loss"] for r in read_metrics(tmp_path / "whole")
    ]

    # saved by 2 processes at step 2, resumed by 1 (no process group) to step 3, then by 2 again to step 4:
    # the same data and per-sample randomness, so the same run up to float rounding (only the RNG streams
    # are not carried over across process counts)
    on_one = _run_file(tmp_path, "on_one", dataset, sharded)
    _train(on_one, 3, 1, "--resume", "--stop-at-step", "3")
    assert read_checkpoint(tmp_path / "on_one").world_size == 1
    _train(on_one, 3, 2, "--resume")
    assert read_checkpoint(tmp_path / "on_one").world_size == 2
    losses = [r["loss"] for r in read_metrics(tmp_path / "on_one")]
    assert losses == pytest.approx([r["loss"] for r in read_metrics(tmp_path / "whole")], abs=1e-5)
    moved = _sharded_weights(tmp_path / "on_one" / final, tmp_path / "whole" / "policy")
    assert all(torch.allclose(moved[k], v, atol=1e-5, rtol=0) for k, v in expected.items())


def test_f1_export_reads_a_sharded_checkpoint_into_a_whole_policy(tmp_path, dataset) -> None:
    run = RunConfig.from_yaml(_run_file(tmp_path, "run", dataset, {"strategy": "fsdp"}, train={"steps": 2}))
    from f1.train import run_training

    result = run_training(run, 3, progress=False)
    assert read_checkpoint(result.last_checkpoint).sharded
    exported = export_policy(tmp_path / "run", tmp_path / "exported")
    final = _weights(result.policy_dir)
    assert all(torch.equal(_weights(exported)[k], v) for k, v in final.items())
    metadata = read_sharded_metadata(result.last_checkpoint / SHARDED_DIR)
    assert any(key.startswith("optimizer.state.") for key in metadata.state_dict_metadata)


# ----------------------------------------------------------------------------------- sharded checkpoints


def _trainer(tmp_path: Path, **distributed) -> Trainer:
    torch.manual_seed(0)
    stage = load_stage_config(3, {**TRAIN, "steps": 10})
    return Trainer(
        TinyPolicy(),
        [],
        stage,
        output_dir=tmp_path,
        progress=False,
        distributed=DistributedConfig(strategy="fsdp", **distributed),
    )


def _one_step(trainer: Trainer) -> None:
    from tiny_training_policy import TinyEpisodes

    from f1.train import SeededBatchStream

    trainer.train_step(next(iter(SeededBatchStream(TinyEpisodes(size=16), 8, seed=0))))


def test_a_sharded_checkpoint_round_trips_the_model_and_the_optimizer_on_one_process(tmp_path) -> None:
    trainer = _trainer(tmp_path)
    _one_step(trainer)
    path = trainer.save()
    assert read_checkpoint(path).sharded
    restored = _trainer(tmp_path / "other")
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
    trainer = _trainer(tmp_path)
    _one_step(trainer)
    trainer.save()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_torch", fail)
    _one_step(trainer)
    with pytest.raises(CheckpointError, match=r"No space left on device.*step_00000001 is intact"):
        trainer.save()
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert read_checkpoint(tmp_path).step == 1


def test_a_process_killed_mid_sharded_save_leaves_the_previous_checkpoint_loadable(tmp_path: Path) -> None:
    marker = tmp_path / "halfway"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(HERE)!r})
        from test_train_fsdp import _one_step, _trainer
        from f1.train import checkpoint as ckpt

        trainer = _trainer(Path({str(tmp_path)!r}))
        _one_step(trainer)
        trainer.save()
        real_write = ckpt._write_torch

        def write_then_hang(path, obj):
            real_write(path, obj)
            Path({str(marker)!r}).touch()
            time.sleep(120)

        ckpt._write_torch = write_then_hang
        _one_step(trainer)
        trainer.save()
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], env=ENV)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the child exited before reaching the middle of its save"
            assert time.monotonic() < deadline, "the child never reached the middle of its save"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # no cleanup handler runs
    finally:
        child.wait(timeout=30)
    partial = list((tmp_path / "checkpoints").glob(".tmp-step_00000002-*"))
    assert partial, "the killed save should leave its partial directory"
    assert list((partial[0] / SHARDED_DIR).glob("*.distcp")), "the kill came after the shards were written"
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint.step == 1
    restored = _trainer(tmp_path / "other")
    restored.resume(checkpoint.path)
    assert restored.step == 1


def test_a_sharded_checkpoint_that_does_not_fit_or_is_damaged_is_refused_before_any_change(tmp_path) -> None:
    trainer = _trainer(tmp_path)
    _one_step(trainer)
    path = trainer.save()
    other = Trainer(
        TinyPolicy(hidden=8),
        [],
        load_stage_config(3, {**TRAIN, "steps": 10}),
        progress=False,
        distributed=DistributedConfig(strategy="fsdp"),
    )
    before = {k: v.clone() for k, v in other.model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"does not fit this model; mis-shaped: .*checkpoint \(16"):
        other.resume(path)
    assert all(torch.equal(before[k], v) for k, v in other.model.state_dict().items())

    shard = next((path / SHARDED_DIR).glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:-10])  # truncated
    with pytest.raises(CheckpointError, match=r"\.distcp is corrupt: expected \d+ bytes"):
        _trainer(tmp_path / "again").resume(path)


def test_sharded_metadata_naming_code_is_refused_without_running_it(tmp_path) -> None:
    trainer = _trainer(tmp_path)
    _one_step(trainer)
    path = trainer.save()
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

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
    _one_step(plain)
    path = plain.save()
    assert not read_checkpoint(path).sharded
    sharded = _trainer(tmp_path / "sharded")  # one process: nothing is sharded, the weights load whole
    sharded.resume(path)
    assert sharded.step == 1
    _one_step(sharded)
    assert read_checkpoint(sharded.save()).sharded


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
    from f1.train import run_training

    losses = []
    for name, checkpointing in (("plain", False), ("recomputing", True)):
        run = _run_file(
            tmp_path, name, dataset, {"activation_checkpointing": checkpointing}, train={"steps": 3}
        )
        run_training(RunConfig.from_yaml(run), 2, progress=False)
        losses.append(_losses(tmp_path / name))
    for a, b in zip(*losses):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), key


@pytest.mark.slow
def test_fsdp_in_bf16_mixed_precision_trains_and_keeps_the_tokenizer_exact(tmp_path, dataset) -> None:
    # what CUDA gets by default (mixed_precision auto, precision auto), forced on the CPU
    bf16 = {"strategy": "fsdp", "mixed_precision": "bf16"}
    _train(_run_file(tmp_path, "bf16", dataset, bf16, train={"precision": "bf16"}), 3, 2)
    _train(_run_file(tmp_path, "fp32", dataset, {"strategy": "ddp"}), 3, 1)
    bf16_losses, fp32_losses = _losses(tmp_path / "bf16"), _losses(tmp_path / "fp32")
    assert len(bf16_losses) == STEPS
    assert all(math.isfinite(value) for record in bf16_losses for value in record.values())
    for name, value in bf16_losses[0].items():  # the same first step, up to bf16 rounding
        assert value == pytest.approx(fp32_losses[0][name], rel=0.05), name
    trained = _weights(tmp_path / "bf16" / "policy")
    reference = _weights(tmp_path / "fp32" / "policy")
    tokenizer = [k for k in trained if k.startswith("generation.tokenizer.")]
    assert tokenizer
    assert all(trained[k].dtype == torch.float32 for k in trained)  # master weights stay fp32
    assert all(torch.equal(trained[k], reference[k]) for k in tokenizer)  # frozen, whole, untouched
