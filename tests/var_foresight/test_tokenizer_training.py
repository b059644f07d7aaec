import pytest
import torch

from var_foresight.config import tiny_vqvae_config
from var_foresight.tokenizer_training import TokenizerTrainer, TokenizerTrainingConfig
from var_foresight.vqvae import VQVAE


@pytest.mark.slow
def test_training_steps_reduce_the_loss_and_report_codebook_health():
    torch.manual_seed(0)
    model = VQVAE(tiny_vqvae_config().replace(vocab_size=64, scales=(1, 2, 4, 8, 16)))
    trainer = TokenizerTrainer(
        model, torch.optim.Adam(model.parameters(), lr=2e-3), TokenizerTrainingConfig(restart_every=3)
    )
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(4, 3, 32, 32, generator=g) * 2 - 1).clamp(-1, 1)
    reports = [trainer.step(images) for _ in range(9)]
    assert reports[-1].loss < reports[0].loss
    assert reports[-1].step == 9
    assert len(reports[-1].health.usage_percent) == 5
    assert len(reports[-1].health.perplexity) == 5
    assert all(1 <= p <= 64 for p in reports[-1].health.perplexity)
    assert sum(r.restarted for r in reports) > 0  # restarts ran on steps 3, 6, 9
    assert all(r.restarted == 0 for r in reports if r.step % 3)


def test_a_training_step_changes_weights_and_the_hit_ema():
    torch.manual_seed(0)
    model = VQVAE(tiny_vqvae_config().replace(vocab_size=32, scales=(1, 2, 16)))
    trainer = TokenizerTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    before = model.encoder.conv_in.weight.detach().clone()
    report = trainer.step(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert not torch.equal(before, model.encoder.conv_in.weight)
    assert float(model.quantize.ema_vocab_hit_SV.sum()) == pytest.approx(2 * (1 + 4 + 256))
    assert report.loss == pytest.approx(report.reconstruction_loss + report.quantizer_loss, rel=1e-5)


def test_bad_training_config_and_images_are_named():
    with pytest.raises(ValueError, match="reconstruction"):
        TokenizerTrainingConfig(reconstruction="lpips")
    with pytest.raises(ValueError, match="restart_every"):
        TokenizerTrainingConfig(restart_every=-1)
    model = VQVAE(tiny_vqvae_config().replace(vocab_size=32, scales=(1, 16)))
    trainer = TokenizerTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="images"):
        trainer.step(torch.zeros(2, 32, 32))
