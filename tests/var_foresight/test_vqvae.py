"""The tokenizer reproduces the reference implementation's outputs (golden fixtures: fixtures/README.md)."""

import pytest
import torch

from var_foresight.config import VQVAEConfig, released_vqvae_config, tiny_vqvae_config, vqvae_config
from var_foresight.vqvae import VQVAE


def test_golden_indices_match_at_every_scale(golden_vqvae, golden):
    encoding = golden_vqvae.encode(golden["image"])
    assert len(encoding.indices) == 10
    for k, indices in enumerate(encoding.indices):
        assert torch.equal(indices, golden[f"indices.{k}"]), f"scale {k}"
    torch.testing.assert_close(encoding.f_hat, golden["f_hat"], atol=1e-5, rtol=0)


def test_golden_latent_and_reconstruction(golden_vqvae, golden):
    with torch.no_grad():
        torch.testing.assert_close(
            golden_vqvae.encode_latent(golden["image"]), golden["f"], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            golden_vqvae.decode_fhat(golden["f_hat"]), golden["reconstruction"], atol=1e-5, rtol=0
        )
        indices = [golden[f"indices.{k}"] for k in range(10)]
        torch.testing.assert_close(
            golden_vqvae.decode_indices(indices), golden["decoded_from_indices"], atol=1e-5, rtol=0
        )


def test_golden_shorter_schedule_uses_vars_phi_rule(golden_vqvae, golden):
    encoding = golden_vqvae.encode(golden["image"], scales=(1, 2, 4, 8, 16))
    for k, indices in enumerate(encoding.indices):
        assert torch.equal(indices, golden[f"short.indices.{k}"]), f"scale {k}"
    torch.testing.assert_close(encoding.f_hat, golden["short.f_hat"], atol=1e-5, rtol=0)


def test_golden_rectangular_maps(golden_vqvae, golden):
    scales = ((1, 1), (2, 3), (3, 4), (4, 6), (6, 9), (8, 12), (12, 18), (16, 24))
    encoding = golden_vqvae.encode(golden["nonsquare.image"], scales=scales)
    for k, indices in enumerate(encoding.indices):
        assert torch.equal(indices, golden[f"nonsquare.indices.{k}"]), f"scale {k}"
    torch.testing.assert_close(encoding.f_hat, golden["nonsquare.f_hat"], atol=1e-5, rtol=0)


def test_golden_training_pass_loss_and_straight_through_gradients(golden_vqvae, golden):
    model = golden_vqvae.train()
    reconstruction, quantized = model(golden["image"])
    torch.testing.assert_close(quantized.loss.reshape(1), golden["train.vq_loss"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(reconstruction, golden["train.reconstruction"], atol=1e-5, rtol=0)
    loss = torch.nn.functional.mse_loss(reconstruction, golden["image"]) + quantized.loss
    loss.backward()
    params = dict(model.named_parameters())
    for name in ("quantize.quant_resi.qresi_ls.0.weight", "encoder.conv_in.weight"):
        torch.testing.assert_close(params[name].grad, golden[f"train.grad.{name}"], atol=1e-6, rtol=1e-4)


def test_encode_of_a_batch_equals_encode_of_each_image(golden_vqvae, golden):
    images = torch.cat([golden["image"], golden["image"].flip(-1), -golden["image"]])
    batched = golden_vqvae.encode_indices(images)
    for b in range(3):
        single = golden_vqvae.encode_indices(images[b : b + 1])
        for k in range(10):
            assert torch.equal(batched[k][b : b + 1], single[k])


def test_decoded_image_is_clamped_and_full_size(golden_vqvae, golden):
    with torch.no_grad():
        image = golden_vqvae.decode_fhat(golden["f_hat"] * 50)
    assert image.shape == (1, 3, 32, 32)
    assert float(image.abs().max()) <= 1.0


def test_released_preset_shapes_on_meta_device():
    with torch.device("meta"):
        model = VQVAE(released_vqvae_config())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(108.9e6, rel=1e-3)
    assert released_vqvae_config().image_size == (256, 256)
    assert vqvae_config("tiny") == tiny_vqvae_config()


def test_config_round_trips_and_rejects_bad_values(tmp_path):
    config = tiny_vqvae_config().replace(scales=((1, 1), (2, 3), (4, 6)))
    config.save_json(tmp_path / "c.json")
    assert VQVAEConfig.load_json(tmp_path / "c.json") == config
    with pytest.raises(KeyError, match="unknown key"):
        VQVAEConfig.from_dict({"chanels": 3})
    with pytest.raises(ValueError, match="norm_groups"):
        VQVAEConfig(ch=48)
    with pytest.raises(ValueError, match="lookup"):
        VQVAEConfig(lookup="faiss")
    with pytest.raises(KeyError, match="preset"):
        vqvae_config("huge")


def test_bad_images_raise_with_the_argument_named(golden_vqvae):
    with pytest.raises(ValueError, match=r"images: expected shape \(B, 3, H, W\)"):
        golden_vqvae.encode_indices(torch.zeros(3, 32, 32))
    with pytest.raises(TypeError, match="images: expected a floating dtype"):
        golden_vqvae.encode_indices(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="multiples of 2"):
        golden_vqvae.encode_indices(torch.zeros(1, 3, 31, 32))
    with pytest.raises(ValueError, match="does not match the last scale"):
        golden_vqvae.encode_indices(torch.zeros(1, 3, 64, 64))


def test_compile_encoding_refuses_bad_arguments_and_stays_eager(golden_vqvae):
    with pytest.raises(TypeError, match="dynamic: expected a bool, got str"):
        golden_vqvae.compile_encoding(dynamic="no")
    with pytest.raises(TypeError, match=r"mode: expected a torch\.compile mode name or None, got int"):
        golden_vqvae.compile_encoding(mode=3)
    assert golden_vqvae._compiled_encoding is None


@pytest.mark.slow
def test_a_compiled_encoding_gives_the_golden_tokens_and_keeps_the_eager_checks(golden_vqvae, golden):
    # The golden image has no near tie between codes, so the compiled encoder and quantizer (floats equal to
    # tolerance) give VAR's tokens too; images outside [-1, 1] are still refused by the eager checks.
    compiled = golden_vqvae.compile_encoding()
    encoded = compiled.encode(golden["image"])
    for k, indices in enumerate(encoded.indices):
        assert torch.equal(indices, golden[f"indices.{k}"]), f"scale {k}"
    torch.testing.assert_close(encoded.f_hat, golden["f_hat"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="images"):
        compiled.encode(golden["image"] * 3)
