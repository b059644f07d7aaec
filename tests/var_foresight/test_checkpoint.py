import gzip
from pathlib import Path

import pytest
import torch

from var_foresight.checkpoint import (
    CheckpointError,
    load_predictor,
    load_vqvae,
    read_state_dict,
    save_predictor,
    save_vqvae,
)
from var_foresight.config import released_vqvae_config, tiny_vqvae_config
from var_foresight.predictor import NextScalePredictor, NextScalePredictorConfig
from var_foresight.vqvae import VQVAE

KEYS_TSV = Path(__file__).parent / "fixtures" / "var-vqvae-keys.tsv.gz"


def _released_layout() -> dict[str, tuple[int, ...]]:
    layout = {}
    for line in gzip.decompress(KEYS_TSV.read_bytes()).decode().splitlines():
        key, shape, dtype = line.split("\t")
        assert dtype == "torch.float32"
        layout[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return layout


def test_released_preset_has_exactly_the_released_key_layout():
    with torch.device("meta"):
        model = VQVAE(released_vqvae_config())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    released = _released_layout()
    assert len(released) == 324
    assert ours == released


def test_released_layout_loads_strictly_from_a_weights_only_pth(tmp_path):
    # the released checkpoint is a flat state dict saved with torch.save; mimic it on the meta device
    with torch.device("meta"):
        model = VQVAE(released_vqvae_config())
    fake = {k: torch.zeros(v.shape) for k, v in model.state_dict().items() if "encoder.conv_in" in k}
    torch.save(fake, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing 322 key"):
        load_vqvae(tmp_path / "partial.pth", released_vqvae_config())


def test_round_trip_through_pth_and_safetensors(golden_state_dict, golden, tmp_path):
    torch.save(golden_state_dict, tmp_path / "vae.pth")
    from_pth = load_vqvae(tmp_path / "vae.pth", tiny_vqvae_config())
    weights = save_vqvae(from_pth, tmp_path / "saved")
    reloaded = load_vqvae(weights)  # config.json beside the weights
    assert reloaded.config == tiny_vqvae_config()
    indices = reloaded.encode_indices(golden["image"])
    for k in range(10):
        assert torch.equal(indices[k], golden[f"indices.{k}"])


def test_pickled_code_is_refused(tmp_path):
    torch.save({"encoder.conv_in.weight": torch.zeros(1), "extra": Path("x")}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not a tensors-only"):
        read_state_dict(tmp_path / "evil.pth")


def test_foreign_and_mismatched_checkpoints_are_named(golden_state_dict):
    with pytest.raises(CheckpointError, match="foreign checkpoint"):
        load_vqvae({"model.layers.0.weight": torch.zeros(3)}, tiny_vqvae_config())
    wrong = dict(golden_state_dict)
    wrong["quantize.embedding.weight"] = torch.zeros(4096, 32)
    with pytest.raises(CheckpointError, match=r"quantize.embedding.weight: expected shape \(512, 32\)"):
        load_vqvae(wrong, tiny_vqvae_config())
    extra = dict(golden_state_dict, **{"encoder.extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected 1 key"):
        load_vqvae(extra, tiny_vqvae_config())
    with pytest.raises(FileNotFoundError, match="path"):
        load_vqvae("/nonexistent/vae.pth")


def test_predictor_round_trips_with_its_config(tmp_path):
    torch.manual_seed(0)
    model = NextScalePredictor(NextScalePredictorConfig.tiny(depth=1)).eval()
    save_predictor(model, tmp_path / "gen")
    reloaded = load_predictor(tmp_path / "gen")
    assert reloaded.config == model.config
    condition = torch.randn(1, 2, 64)
    with torch.no_grad():
        assert torch.equal(reloaded(condition, None, 1), model(condition, None, 1))
    with pytest.raises(CheckpointError, match="next-scale predictor config"):
        load_predictor(tmp_path / "gen", NextScalePredictorConfig.tiny(depth=2))
