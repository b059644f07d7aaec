"""`f1 convert` and `f1 bench`: the command line over the model's importer and the policy benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from f1.cli import SOURCE_FORMATS, main
from f1.model import F1Policy, preset
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
        for key, value in F1Policy(preset("tiny")).state_dict().items()
        if key.startswith(prefix)
    }
    source = tmp_path / "vae_tiny.pth"
    torch.save(vae, source)
    argv = ["convert", str(source), str(tmp_path / "out"), "--from", "var_vqvae", "--preset", "tiny"]
    assert main(argv) == 0
    assert f"imported {len(vae)} tensors" in capsys.readouterr().out
    loaded = F1Policy.load(tmp_path / "out").state_dict()
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
    assert report["presets"]["f1-4.2b"]["params"]["total"] == pytest.approx(3.66e9, rel=0.01)
