"""`f1 convert --merge-lora ADAPTER_DIR --base POLICY_DIR OUT`: adapters merged into a plain policy folder;
bad inputs exit 2 with one line and write nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from f1.cli import main
from f1.model import F1Model, F1Policy, preset, save_model
from f1.train import LoraSettings
from f1.train.lora import ADAPTER_WEIGHTS, adapter_state_dict, apply_lora, merged_model, save_adapter


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Any]:
    """A base policy folder, adapters trained from it (nonzero), and the adapted model."""
    tmp = tmp_path_factory.mktemp("merge_lora")
    torch.manual_seed(0)
    save_model(F1Model(preset("tiny")), tmp / "base")
    model = F1Policy.load(tmp / "base").model
    apply_lora(model, LoraSettings(rank=2, experts=("act",)))
    with torch.no_grad():
        for name, tensor in adapter_state_dict(model).items():
            tensor.add_(0.1 if ".lora_B." in name else 0.0)
    save_adapter(model, tmp / "adapter")
    return {"tmp": tmp, "base": tmp / "base", "adapter": tmp / "adapter", "model": model}


def test_merge_lora_writes_a_plain_policy_with_the_adapters_merged(
    folders: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "merged"
    argv = ["convert", "--merge-lora", str(folders["adapter"]), "--base", str(folders["base"]), str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "merged 14 LoRA-adapted projections (rank 2, alpha 16)" in printed
    assert f"wrote {out}" in printed
    expected = merged_model(folders["model"]).state_dict()
    loaded = F1Policy.load(out).model.state_dict()
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def _foreign(tmp: Path) -> Path:
    folder = tmp / "foreign"
    if not folder.exists():
        folder.mkdir()
        (folder / ADAPTER_WEIGHTS).write_bytes((tmp / "base" / "model.safetensors").read_bytes())
    return folder


def _other_base(tmp: Path) -> Path:
    folder = tmp / "other_base"
    if not folder.exists():
        torch.manual_seed(1)
        save_model(F1Model(preset("tiny")), folder)
    return folder


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (lambda f: ["--merge-lora", f["tmp"] / "missing", "--base", f["base"]], "no such adapter folder"),
        (
            lambda f: ["--merge-lora", f["adapter"], "--base", f["tmp"] / "nope"],
            "--base: no such policy folder",
        ),
        (lambda f: ["--merge-lora", f["adapter"]], "--merge-lora needs --base POLICY_DIR"),
        (lambda f: ["--merge-lora", f["adapter"], "--base", f["base"], f["base"]], "takes no SOURCE"),
        (
            lambda f: ["--merge-lora", f["adapter"], "--base", f["base"], "--from", "f1", "--preset", "tiny"],
            "takes no --from, --preset",
        ),
        (lambda f: ["--merge-lora", _foreign(f["tmp"]), "--base", f["base"]], "is not an f1 LoRA adapter"),
        (lambda f: ["--merge-lora", f["adapter"], "--base", _other_base(f["tmp"])], "other base weights"),
        (lambda f: ["--merge-lora", f["adapter"], "--base", f["adapter"]], "model.safetensors' is missing"),
        (lambda f: ["--merge-lora", f["base"], "--base", f["base"]], f"holds no {ADAPTER_WEIGHTS}"),
    ],
)
def test_merge_lora_bad_inputs_exit_2_with_one_line_and_write_nothing(
    folders: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: Any, message: str
) -> None:
    out = tmp_path / "out"
    assert main(["convert", *map(str, arguments(folders)), str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.count("\n") == 1
    assert error.startswith("f1 convert: error: ")
    assert not out.exists()


def test_merge_lora_refuses_a_non_empty_output_without_force(
    folders: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "occupied"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["convert", "--merge-lora", str(folders["adapter"]), "--base", str(folders["base"]), str(out)]
    assert main(argv) == 2
    assert "is not empty; pass --force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert main([*argv, "--force"]) == 0
    F1Policy.load(out)


def test_convert_without_merge_lora_still_needs_a_source_and_its_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["convert", str(tmp_path / "out")]) == 2
    assert "SOURCE is required" in capsys.readouterr().err
    source = tmp_path / "weights.safetensors"
    source.write_bytes(b"")
    assert main(["convert", str(source), str(tmp_path / "out")]) == 2
    assert "--from is required" in capsys.readouterr().err
