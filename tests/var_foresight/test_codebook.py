import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from var_foresight.checkpoint import load_vqvae
from var_foresight.codebook import VectorQuantizeLookup, direct_lookup
from var_foresight.config import tiny_vqvae_config


def test_vector_quantize_codebook_reproduces_the_golden_tokens(golden_state_dict, golden):
    model = load_vqvae(golden_state_dict, tiny_vqvae_config().replace(lookup="vector_quantize"))
    encoding = model.encode(golden["image"])
    for k, indices in enumerate(encoding.indices):
        assert torch.equal(indices, golden[f"indices.{k}"]), f"scale {k}"
    torch.testing.assert_close(encoding.f_hat, golden["f_hat"], atol=1e-5, rtol=0)


def test_vector_quantize_lookup_leaves_the_codebook_untouched_and_adds_no_keys(golden_state_dict):
    model = load_vqvae(golden_state_dict, tiny_vqvae_config().replace(lookup="vector_quantize"))
    before = model.quantize.embedding.weight.detach().clone()
    model.train()
    model(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert torch.equal(model.quantize.embedding.weight.detach(), before)
    assert set(model.state_dict()) == set(golden_state_dict)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 50), vocab=st.integers(2, 64))
def test_direct_lookup_picks_the_euclidean_nearest_code(seed, n, vocab):
    g = torch.Generator().manual_seed(seed)
    z, codebook = torch.randn(n, 8, generator=g), torch.randn(vocab, 8, generator=g)
    distances = torch.cdist(z.double(), codebook.double())
    best = distances.min(dim=1).values
    chosen = distances.gather(1, direct_lookup(z, codebook)[:, None])[:, 0]
    assert bool(((chosen - best) <= 1e-5).all())
    assert torch.equal(VectorQuantizeLookup(vocab, 8)(z, codebook), direct_lookup(z, codebook)) or bool(
        (distances.gather(1, VectorQuantizeLookup(vocab, 8)(z, codebook)[:, None])[:, 0] - best <= 1e-5).all()
    )


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 300), vocab=st.integers(2, 1100))
def test_direct_lookup_is_the_argmin_of_the_released_distances_ties_to_the_first_code(seed, n, vocab):
    g = torch.Generator().manual_seed(seed)
    # codes drawn from a few values and duplicated rows make exact ties common
    codebook = torch.randint(-2, 3, (vocab, 4), generator=g).float()
    codebook[vocab // 2 :] = codebook[: vocab - vocab // 2].clone()
    z = torch.randint(-2, 3, (n, 4), generator=g).float()
    z[: n // 2] += torch.randn(n // 2, 4, generator=g)
    distances = torch.sum(z.square(), dim=1, keepdim=True) + torch.sum(codebook.square(), dim=1)
    distances.addmm_(z, codebook.T, alpha=-2, beta=1)
    assert torch.equal(direct_lookup(z, codebook), distances.argmin(dim=1))
