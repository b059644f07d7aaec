import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from var_foresight.config import tiny_vqvae_config
from var_foresight.quantizer import MultiScaleResidualQuantizer


def test_golden_teacher_forcing_inputs(golden_vqvae, golden):
    indices = [golden[f"indices.{k}"] for k in range(10)]
    with torch.no_grad():
        inputs = golden_vqvae.quantize.teacher_forcing_inputs(indices)
    assert inputs.shape == (1, 679, 32)
    torch.testing.assert_close(inputs, golden["teacher_forcing_inputs"], atol=1e-5, rtol=0)


def _random_indices(quantizer, batch, generator):
    return [
        torch.randint(0, quantizer.vocab_size, (batch, n), generator=generator)
        for n in quantizer.schedule.tokens_per_scale
    ]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 3))
def test_incremental_next_scale_inputs_equal_teacher_forcing_inputs_exactly(shared_golden_vqvae, seed, batch):
    quantizer = shared_golden_vqvae.quantize
    indices = _random_indices(quantizer, batch, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        teacher = quantizer.teacher_forcing_inputs(indices)
        f_hat, steps = quantizer.empty_fhat(batch), []
        for k, idx in enumerate(indices):
            f_hat, next_input = quantizer.next_scale_input(k, f_hat, idx)
            if next_input is not None:
                steps.append(next_input)
        assert next_input is None  # nothing follows the last scale
        assert torch.equal(torch.cat(steps, dim=1), teacher)
        assert torch.equal(f_hat, quantizer.indices_to_fhat(indices))


def test_teacher_forcing_of_a_prefix_is_a_prefix_of_teacher_forcing(golden_vqvae):
    quantizer = golden_vqvae.quantize
    indices = _random_indices(quantizer, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = quantizer.teacher_forcing_inputs(indices)
        for k in (1, 4, 9):
            part = quantizer.teacher_forcing_inputs(indices[:k])
            assert torch.equal(part, full[:, : part.shape[1]])
            assert part.shape[1] == sum(quantizer.schedule.tokens_per_scale[1 : k + 1])


def test_encoding_the_decoded_latent_of_codes_recovers_a_lower_residual(golden_vqvae, golden):
    # each scale must explain part of the residual: the error of f_hat after k scales shrinks overall
    quantizer = golden_vqvae.quantize
    f = golden["f"]
    indices = quantizer.encode(f).indices
    with torch.no_grad():
        errors = [float((quantizer.indices_to_fhat(indices[: k + 1]) - f).square().mean()) for k in range(10)]
    assert errors[-1] < errors[0]


def test_bad_indices_raise_with_the_scale_named():
    quantizer = MultiScaleResidualQuantizer(tiny_vqvae_config())
    with pytest.raises(ValueError, match=r"indices\[1\]: expected shape \(B, 4\)"):
        quantizer.indices_to_fhat([torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long)])
    with pytest.raises(TypeError, match="integer dtype"):
        quantizer.indices_to_fhat([torch.zeros(1, 1)])
    with pytest.raises(ValueError, match=r"expected 1\.\.10 scales"):
        quantizer.teacher_forcing_inputs([])
    with pytest.raises(ValueError, match=r"f: expected shape \(B, 32, H, W\)"):
        quantizer.encode(torch.zeros(1, 8, 16, 16))


def test_compile_next_scale_refuses_bad_arguments_and_stays_eager():
    quantizer = MultiScaleResidualQuantizer(tiny_vqvae_config())
    with pytest.raises(TypeError, match="dynamic: expected a bool, got str"):
        quantizer.compile_next_scale(dynamic="no")
    with pytest.raises(TypeError, match=r"mode: expected a torch\.compile mode name or None, got int"):
        quantizer.compile_next_scale(mode=3)
    assert quantizer._compiled_next_scale is None


@pytest.mark.slow
def test_compiled_next_scale_steps_equal_the_eager_ones_within_1e_5_and_keep_their_checks():
    torch.manual_seed(0)
    eager = MultiScaleResidualQuantizer(tiny_vqvae_config()).eval()
    compiled = MultiScaleResidualQuantizer(tiny_vqvae_config()).eval()
    compiled.load_state_dict(eager.state_dict())
    assert compiled.compile_next_scale() is compiled
    indices = _random_indices(eager, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for _ in range(2):  # the second pass reuses the graphs of the first
            f_eager, f_compiled = eager.empty_fhat(2), compiled.empty_fhat(2)
            for k, idx in enumerate(indices):
                f_eager, next_eager = eager.next_scale_input(k, f_eager, idx)
                f_compiled, next_compiled = compiled.next_scale_input(k, f_compiled, idx)
                torch.testing.assert_close(f_compiled, f_eager, atol=1e-5, rtol=1e-5)
                if next_eager is None:
                    assert next_compiled is None
                else:
                    torch.testing.assert_close(next_compiled, next_eager, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="f_hat: expected shape"):
            compiled.next_scale_input(0, compiled.empty_fhat(3), indices[0])
