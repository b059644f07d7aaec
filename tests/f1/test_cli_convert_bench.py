"""`f1 convert` and `f1 bench`: the command line over the model's importer and the policy benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from f1.cli import SOURCE_FORMATS, main
from f1.model import F1Model, F1Policy, preset
from f1.model.weight_import import SOURCE_FORMATS as MODEL_SOURCE_FORMATS


def test_cli_offers_exactly_the_importers_source_formats() -> None:
    assert SOURCE_FORMATS == MODEL_SOURCE_FORMATS


def test_convert_imports_a_var_vqvae_file_into_a_loadable_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = "generation.tokenizer."
    # A VQ-VAE state dict in VAR's key layout, with values no fresh policy has.
    vae = {
        key.removeprefix(prefix): value + 0.5 if value.is_floating_point() else value
        for key, value in F1Model(preset("tiny")).state_dict().items()
        if key.startswith(prefix)
    }
    source = tmp_path / "vae_tiny.pth"
    torch.save(vae, source)
    argv = ["convert", str(source), str(tmp_path / "out"), "--from", "var_vqvae", "--preset", "tiny"]
    assert main(argv) == 0
    assert f"imported {len(vae)} tensors" in capsys.readouterr().out
    loaded = F1Policy.load(tmp_path / "out").model.state_dict()
    for key, tensor in vae.items():
        assert torch.equal(loaded[prefix + key], tensor), key


def test_convert_reports_a_foreign_file_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "foreign.pth"
    torch.save({"not.a.vqvae.key": torch.zeros(3)}, source)
    out = tmp_path / "out"
    assert main(["convert", str(source), str(out), "--from", "var_vqvae", "--preset", "tiny"]) == 2
    assert "not.a.vqvae.key" in capsys.readouterr().err
    assert not out.exists()


def test_convert_and_bench_reject_bad_arguments_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "o"), "--from", "pi0"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["bench", "--presets", "huge", "--out", str(tmp_path / "b.json")]) == 2
    assert "unknown ['huge']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--presets", "f1-4.2b", "--device", "cpu"],
            "--presets: f1-4.2b (3.7B parameters) is timed on a GPU",
        ),
        (["--device", "tpu"], "--device: expected auto, cpu or cuda, received 'tpu'"),
        (["--compile", "--compile-mode", "fastest"], "--compile-mode: expected one of ['default'"),
    ],
)
def test_bench_refuses_bad_devices_and_compile_modes_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "b.json"
    assert main(["bench", "--presets", "tiny", *extra, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.count("\n") == 1
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_bench_refuses_cuda_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--device", "cuda", "--presets", "f1-4.2b", "--out", str(tmp_path / "b.json")]) == 2
    assert "cuda requested but torch.cuda.is_available() is False" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_writes_the_report_contract(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "--presets", "tiny", "--repeats", "1", "--train-batch", "2", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    tiny = report["presets"]["tiny"]
    assert tiny["params"]["total"] > 0
    assert set(tiny["latency_ms"]) >= {"image_encode", "foresight", "flow_steps", "total"}
    assert all(value >= 0 for value in tiny["latency_ms"].values())
    assert report["cached_inference_speedup"] == tiny["cached_inference_speedup"] > 0
    assert report["machine"]["matmul_gflops"] > 0
    assert tiny["achieved_gflops"] > 0
    assert tiny["matmul_fraction"] == pytest.approx(
        tiny["achieved_gflops"] / report["machine"]["matmul_gflops"], rel=1e-2
    )
    assert report["presets"]["f1-4.2b"]["latency_ms"] is None
    # the published shape less the 109M tensors the understanding expert's last layer does not build
    assert report["presets"]["f1-4.2b"]["params"]["total"] == pytest.approx(3.568e9, rel=0.01)


PI0_FILE = Path(__file__).parent / "model" / "fixtures" / "lerobot_pi0" / "model.safetensors"


def test_convert_refuses_an_unknown_mode_naming_the_modes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from f1.model.config import MODES

    argv = ["convert", str(PI0_FILE), str(tmp_path / "o"), "--from", "pi0", "--set", "vision.heads=2"]
    assert main([*argv, "--mode", "no_foresight"]) == 2
    assert f"mode: expected one of {list(MODES)}, received 'no_foresight'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_convert_from_pi0_reads_the_shape_from_lerobots_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pi0"
    argv = ["convert", str(PI0_FILE), str(out), "--from", "pi0", "--set", "vision.heads=2"]
    assert main([*argv, "--set", "action.n_action_steps=4", "--embodiment", "so100"]) == 0
    printed = capsys.readouterr().out
    assert "read from the tied lm_head.weight" in printed
    assert "shape from config.json: cameras" in printed
    policy = F1Policy.load(out)
    config = policy.config
    assert (config.mode, config.cameras, config.action.n_action_steps) == ("no_gen", ("top", "wrist"), 4)
    assert list(policy.model.adapters) == ["so100"]


def test_convert_refuses_to_replace_a_policy_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "trained"
    F1Policy(preset("tiny")).save(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = ["convert", str(PI0_FILE), str(out), "--from", "pi0", "--set", "vision.heads=2"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "is not empty" in error
    assert "--force" in error
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main([*argv, "--force"]) == 0
    assert F1Policy.load(out).config.mode == "no_gen"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "vision.heads: the SigLIP tower's 32-wide attention"),
        (
            ["--set", "vision.heads=2", "--set", "trunk.n_layer=3"],
            "overrides.trunk: unknown keys ['n_layer']",
        ),
        (["--set", "vision.heads=2", "--set", "action.chunk_size=-1"], "action.chunk_size"),
        (["--set", "novalue"], "expected KEY=VALUE"),
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--set", "vision.heads=2", "--mode", "f1", "--base", "somewhere"], "--base: no such checkpoint"),
    ],
)
def test_convert_usage_errors_exit_2_with_one_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    try:
        code = main(["convert", str(PI0_FILE), str(out), "--from", "pi0", *extra])
    except SystemExit as exit_:  # argparse's own errors (a malformed --set)
        code = exit_.code
    assert code == 2
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error
    assert not out.exists()


def test_bench_times_a_converted_pi0_policy(tmp_path: Path) -> None:
    converted = tmp_path / "lerobot_pi0"
    assert main(["convert", str(PI0_FILE), str(converted), "--from", "pi0", "--set", "vision.heads=2"]) == 0
    out = tmp_path / "bench.json"
    argv = ["bench", "--presets", "--policy", str(converted), "--repeats", "1", "--train-batch", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    row = json.loads(out.read_text())["presets"]["lerobot_pi0"]
    assert row["mode"] == "no_gen"
    assert row["latency_ms"]["flow_steps"] > 0
    assert main(["bench", "--policy", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_the_gpu_preset_is_built_in_bfloat16_with_synthetic_token_ids() -> None:
    # What `f1 bench --device cuda --presets f1-4.2b` times, built here on the meta device (no memory): the
    # published shape has a Gemma tokenizer, which no preset ships, so the benchmark gives it fixed ids.
    from f1.eval.policy_benchmark import SyntheticTokenIds, _benchmarked_policy

    policy = _benchmarked_policy("f1-4.2b", None, torch.device("meta"))
    assert policy.model.dtype == torch.bfloat16
    assert policy.model.generation.tokenizer.quant_conv.weight.dtype == torch.float32
    assert isinstance(policy.tokenizer, SyntheticTokenIds)
    assert policy.tokenizer(["a", "b"]).ids.shape == (2, 48)
    assert len(policy.config.cameras) == 3
