import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from var_foresight.config import tiny_vqvae_config
from var_foresight.predictor import NextScalePredictor, NextScalePredictorConfig, RecomputedNextScaleLogits
from var_foresight.sampling import SamplingConfig
from var_foresight.vqvae import VQVAE


@pytest.fixture(scope="module")
def predictor() -> NextScalePredictor:
    torch.manual_seed(0)
    return NextScalePredictor(NextScalePredictorConfig.tiny()).eval().requires_grad_(False)


def _random_indices(schedule, batch, seed, vocab=512):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (batch, n), generator=g) for n in schedule.tokens_per_scale]


def _stepwise_logits(logits_fn, quantizer, indices, num_scales):
    f_hat, inputs, out = quantizer.empty_fhat(indices[0].shape[0]), None, []
    for k in range(num_scales):
        out.append(logits_fn(k, inputs))
        f_hat, inputs = quantizer.next_scale_input(k, f_hat, indices[k])
    return torch.cat(out, dim=1)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 1000), num_scales=st.integers(1, 10), cond_len=st.integers(1, 6))
def test_teacher_forced_logits_equal_kv_cached_step_by_step_logits(
    predictor, shared_golden_vqvae, seed, num_scales, cond_len
):
    quantizer = shared_golden_vqvae.quantize
    indices = _random_indices(quantizer.schedule, 2, seed)
    condition = torch.randn(2, cond_len, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        teacher = quantizer.teacher_forcing_inputs(indices[: num_scales - 1]) if num_scales > 1 else None
        forced = predictor(condition, teacher, num_scales)
        cached = _stepwise_logits(predictor.logits_fn(condition, num_scales), quantizer, indices, num_scales)
    assert forced.shape == (2, quantizer.schedule.offsets[num_scales - 1][1], 512)
    assert (forced - cached).abs().max() <= 1e-5


@pytest.mark.parametrize("rotary", [False, True])
def test_recomputed_prefix_logits_equal_cached_logits(shared_golden_vqvae, rotary):
    torch.manual_seed(0)
    predictor = NextScalePredictor(NextScalePredictorConfig.tiny(rotary=rotary)).eval()
    quantizer = shared_golden_vqvae.quantize
    indices = _random_indices(quantizer.schedule, 1, 3)
    condition = torch.randn(1, 3, 64)
    with torch.no_grad():
        cached = _stepwise_logits(predictor.logits_fn(condition, 5), quantizer, indices, 5)
        recomputed_fn = RecomputedNextScaleLogits(predictor, predictor.embed_condition(condition))
        recomputed = _stepwise_logits(recomputed_fn, quantizer, indices, 5)
    assert (cached - recomputed).abs().max() <= 1e-5


def test_later_scales_never_change_earlier_logits(predictor, shared_golden_vqvae):
    quantizer = shared_golden_vqvae.quantize
    indices = _random_indices(quantizer.schedule, 1, 5)
    other = [i.clone() for i in indices]
    other[4] = (other[4] + 1) % 512  # changes the inputs of scales 5..9 only
    condition = torch.randn(1, 2, 64)
    with torch.no_grad():
        a = predictor(condition, quantizer.teacher_forcing_inputs(indices[:9]), 10)
        b = predictor(condition, quantizer.teacher_forcing_inputs(other[:9]), 10)
    end_of_scale_4 = quantizer.schedule.offsets[4][1]
    assert torch.equal(a[:, :end_of_scale_4], b[:, :end_of_scale_4])
    assert not torch.equal(a[:, end_of_scale_4:], b[:, end_of_scale_4:])


def test_training_loss_decreases_on_a_fixed_batch(shared_golden_vqvae):
    torch.manual_seed(1)
    model = NextScalePredictor(NextScalePredictorConfig.tiny(condition_dropout=0.0)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    indices = _random_indices(shared_golden_vqvae.quantize.schedule, 2, 7)
    condition = torch.randn(2, 4, 64)
    losses = []
    for _ in range(12):
        loss = model.loss(condition, indices, shared_golden_vqvae.quantize, num_scales=4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[0] == pytest.approx(torch.log(torch.tensor(512.0)).item(), rel=0.1)
    assert losses[-1] < 0.5 * losses[0]


def test_condition_dropout_is_off_in_eval_mode(predictor):
    config = NextScalePredictorConfig.tiny(condition_dropout=0.9)
    model = NextScalePredictor(config).eval()
    condition = torch.randn(3, 2, 64)
    with torch.no_grad():
        a, b = model(condition, None, 1), model(condition, None, 1)
    assert torch.equal(a, b)


def test_generation_is_reproducible_with_the_same_generator_and_returns_everything(predictor):
    tokenizer = VQVAE(tiny_vqvae_config()).eval()
    condition = torch.randn(2, 3, 64)
    sampling = SamplingConfig(temperature=1.0, top_k=40, top_p=0.9, cfg=2.0, num_scales=6)
    a = predictor.generate(condition, tokenizer, sampling, torch.Generator().manual_seed(11))
    b = predictor.generate(condition, tokenizer, sampling, torch.Generator().manual_seed(11))
    c = predictor.generate(condition, tokenizer, sampling, torch.Generator().manual_seed(12))
    assert len(a.indices) == 6
    assert all(torch.equal(x, y) for x, y in zip(a.indices, b.indices))
    assert not all(torch.equal(x, y) for x, y in zip(a.indices, c.indices))
    assert a.image.shape == (2, 3, 32, 32)
    torch.testing.assert_close(a.f_hat, tokenizer.quantize.indices_to_fhat(a.indices), atol=1e-6, rtol=0)
    torch.testing.assert_close(a.image, tokenizer.decode_fhat(a.f_hat))


def test_mismatched_tokenizer_and_bad_condition_are_named(predictor):
    with pytest.raises(ValueError, match="tokenizer: expected vocab 512"):
        predictor.generate(torch.randn(1, 1, 64), VQVAE(tiny_vqvae_config().replace(vocab_size=256)))
    with pytest.raises(ValueError, match=r"condition: expected shape \(B, T_c, 64\)"):
        predictor(torch.randn(1, 2, 8), None, 1)
    with pytest.raises(ValueError, match="teacher_inputs: expected shape"):
        predictor(torch.randn(1, 2, 64), torch.zeros(1, 3, 32), 3)
    with pytest.raises(KeyError, match="unknown key"):
        NextScalePredictorConfig.from_dict({"widht": 3})


def test_config_round_trips():
    config = NextScalePredictorConfig.tiny(scales=((1, 1), (2, 3)))
    assert NextScalePredictorConfig.from_dict(config.to_dict()) == config


def test_rectangular_schedules_train_and_generate():
    scales = ((1, 1), (2, 3), (4, 6), (16, 24))
    tokenizer = VQVAE(tiny_vqvae_config().replace(scales=scales)).eval()
    model = NextScalePredictor(NextScalePredictorConfig.tiny(scales=scales)).eval()
    images = torch.rand(1, 3, 32, 48) * 2 - 1
    indices = tokenizer.encode_indices(images)
    assert [i.shape[1] for i in indices] == [1, 6, 24, 384]
    condition = torch.randn(1, 2, 64)
    assert torch.isfinite(model.loss(condition, indices, tokenizer.quantize, loss_scales=[1, 3]))
    foresight = model.generate(
        condition, tokenizer, SamplingConfig(top_k=20), torch.Generator().manual_seed(0)
    )
    assert foresight.image.shape == (1, 3, 32, 48)
