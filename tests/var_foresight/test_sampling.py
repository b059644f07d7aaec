import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from var_foresight.sampling import (
    SamplingConfig,
    filter_logits,
    guidance_weight,
    sample_next_scales,
    sample_tokens,
)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), top_k=st.integers(1, 20), top_p=st.floats(0.05, 1.0))
def test_filtered_tokens_are_the_top_k_and_reach_top_p_mass(seed, top_k, top_p):
    logits = torch.randn(3, 20, generator=torch.Generator().manual_seed(seed))
    kept = torch.isfinite(filter_logits(logits, top_k, top_p))
    probs = logits.softmax(-1)
    for row in range(3):
        order = logits[row].argsort(descending=True)
        n = int(kept[row].sum())
        assert 1 <= n <= top_k
        assert bool(kept[row, order[:n]].all())  # a prefix of the ranking
        # top-p keeps the smallest ranked prefix reaching top_p within the top-k renormalised mass
        renorm = probs[row, order[:top_k]] / probs[row, order[:top_k]].sum()
        assert float(renorm[: n - 1].sum()) < top_p + 1e-6
        if n < top_k:
            assert float(renorm[:n].sum()) >= top_p - 1e-6


def test_greedy_sampling_is_argmax_and_seeded_sampling_is_reproducible():
    logits = torch.randn(2, 5, 30)
    assert torch.equal(sample_tokens(logits, temperature=0), logits.argmax(-1))
    a = sample_tokens(logits, 1.0, 10, 0.9, torch.Generator().manual_seed(4))
    b = sample_tokens(logits, 1.0, 10, 0.9, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_samples_follow_the_softmax_distribution():
    logits = torch.tensor([[[0.0, math.log(3.0)]]]).expand(1, 4000, 2)
    tokens = sample_tokens(logits, generator=torch.Generator().manual_seed(0))
    assert float(tokens.float().mean()) == pytest.approx(0.75, abs=0.03)


def test_guidance_ramps_linearly_over_the_full_schedule():
    assert guidance_weight(0, 10, 3.0) == 0.0
    assert guidance_weight(9, 10, 3.0) == 3.0
    assert guidance_weight(3, 10, 3.0) == pytest.approx(1.0)
    assert guidance_weight(3, 10, 3.0, "constant") == 3.0


def test_guided_sampling_combines_conditional_and_unconditional_rows(shared_golden_vqvae):
    quantizer = shared_golden_vqvae.quantize
    seen_batches = []

    def logits_fn(scale, inputs):
        rows = 1 if inputs is None else inputs.shape[0]
        seen_batches.append(rows)
        n = quantizer.schedule.tokens_per_scale[scale]
        cond = torch.zeros(n, 512)
        cond[:, 7] = 1.0
        uncond = torch.zeros(n, 512)
        uncond[:, 7] = 3.0  # guidance pushes away from what the unconditional branch likes
        uncond[:, 9] = -5.0
        return torch.stack([cond, uncond]) if rows == 2 or inputs is None else cond[None]

    config = SamplingConfig(temperature=0, cfg=4.0, cfg_ramp="constant", num_scales=3)
    out = sample_next_scales(logits_fn, quantizer, 1, config)
    assert seen_batches[1:] == [2, 2]  # inputs duplicated for both branches
    # guided logits: token 7: 5*1 - 4*3 = -7; token 9: 0 - 4*(-5) = 20 -> argmax 9
    assert all(bool((idx == 9).all()) for idx in out.indices)


def test_sampling_config_rejects_bad_values():
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=-1)
    with pytest.raises(ValueError, match="cfg_ramp"):
        SamplingConfig(cfg_ramp="cosine")
