import pytest
import torch

from var_foresight.codebook_health import (
    codebook_health,
    dead_code_mask,
    dead_thresholds,
    perplexity_per_scale,
    restart_dead_codes,
)
from var_foresight.config import tiny_vqvae_config
from var_foresight.quantizer import MultiScaleResidualQuantizer


def _collapsed_quantizer(seed: int) -> MultiScaleResidualQuantizer:
    torch.manual_seed(seed)
    quantizer = MultiScaleResidualQuantizer(tiny_vqvae_config().replace(vocab_size=64))
    with torch.no_grad():  # every code far from the data: a few win everything, the rest never move
        quantizer.embedding.weight.copy_(torch.randn(64, 32) * 0.01 + 3.0)
    return quantizer.train()


def test_perplexity_is_one_for_a_single_code_and_vocab_for_uniform_use():
    hits = torch.zeros(2, 8)
    hits[0, 3] = 10
    hits[1] = 5
    torch.testing.assert_close(perplexity_per_scale(hits), torch.tensor([1.0, 8.0]))


def test_restarts_draw_codes_from_every_scale_in_equal_shares():
    quantizer = MultiScaleResidualQuantizer(tiny_vqvae_config().replace(vocab_size=4000))
    # scale k's residuals are all equal to k (the 1x1 scale has 1 vector, the 16x16 one 256)
    residuals = [torch.full((n, 32), float(k)) for k, n in enumerate(quantizer.schedule.tokens_per_scale)]
    thresholds = dead_thresholds(quantizer, batch=1)
    restarted = restart_dead_codes(quantizer, residuals, thresholds, torch.Generator().manual_seed(0))
    assert restarted == 4000  # a fresh quantizer has no hits: every code is dead
    share = torch.bincount(quantizer.embedding.weight[:, 0].round().long(), minlength=10).float() / 4000
    assert bool(((share - 0.1).abs() < 0.025).all())  # ~10% per scale, not 256/680 for the largest
    assert int(dead_code_mask(quantizer, thresholds).sum()) == 0


def test_restart_zeroes_the_optimizer_moments_of_restarted_codes():
    quantizer = _collapsed_quantizer(0)
    optimizer = torch.optim.Adam(quantizer.parameters(), lr=1e-2)
    out = quantizer(torch.randn(4, 32, 16, 16))
    out.loss.backward()
    optimizer.step()
    dead = dead_code_mask(quantizer, dead_thresholds(quantizer, 4))
    assert int(dead.sum()) > 0
    restart_dead_codes(quantizer, out.residuals, dead_thresholds(quantizer, 4), None, optimizer)
    state = optimizer.state[quantizer.embedding.weight]
    assert float(state["exp_avg"][dead].abs().sum()) == 0.0


def _train(quantizer, restart_every: int, steps: int = 16):
    g = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(quantizer.parameters(), lr=1e-2)
    thresholds = dead_thresholds(quantizer, 8)
    for step in range(1, steps + 1):
        out = quantizer(torch.randn(8, 32, 16, 16, generator=g))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if restart_every and step % restart_every == 0:
            restart_dead_codes(quantizer, out.residuals, thresholds, g, optimizer)
    return codebook_health(quantizer, out.hits, thresholds), float(out.loss.detach())


@pytest.mark.slow
def test_dead_code_restarts_keep_small_scales_from_collapsing():
    without, loss_without = _train(_collapsed_quantizer(0), restart_every=0)
    with_restarts, loss_with = _train(_collapsed_quantizer(0), restart_every=4)
    # without restarts the small scales stay on a handful of codes
    assert without.perplexity[1] < 3
    for k in range(1, 10):
        assert with_restarts.perplexity[k] > without.perplexity[k], f"scale {k}"
    assert with_restarts.dead_codes < without.dead_codes
    assert loss_with < loss_without
