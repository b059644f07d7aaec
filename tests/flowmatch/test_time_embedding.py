"""The sinusoidal time embedding: pi0's periods, shape and sensitivity."""

from __future__ import annotations

import math

import pytest
import torch

import flowmatch as fm


def test_embedding_has_sin_then_cos_halves_with_geometric_periods():
    tau = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    emb = fm.sinusoidal_time_embedding(tau, 8)
    assert emb.shape == (3, 8)
    periods = 4e-3 * (4.0 / 4e-3) ** torch.linspace(0, 1, 4, dtype=torch.float64)
    expected = torch.cat(
        [torch.sin(2 * math.pi * tau[:, None] / periods), torch.cos(2 * math.pi * tau[:, None] / periods)],
        dim=1,
    )
    torch.testing.assert_close(emb, expected)
    torch.testing.assert_close(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4, dtype=torch.float64))


def test_nearby_times_get_distinct_embeddings_and_dtype_is_kept():
    tau = torch.tensor([0.500, 0.501])
    emb = fm.sinusoidal_time_embedding(tau, 64)
    assert (emb[0] - emb[1]).abs().max() > 0.1  # the 4e-3 period resolves a 1e-3 difference
    assert fm.sinusoidal_time_embedding(tau.to(torch.bfloat16), 64).dtype == torch.bfloat16


def test_a_bfloat16_encoder_still_resolves_nearby_float32_times():
    torch.manual_seed(0)
    encoder = fm.ActionEncoder(2, 16).to(torch.bfloat16)
    actions = torch.zeros(2, 3, 2, dtype=torch.bfloat16)
    tokens = encoder(actions, torch.tensor([0.500, 0.501]))
    assert tokens.dtype == torch.bfloat16
    assert not torch.equal(tokens[0], tokens[1])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="dim must be even"):
        fm.sinusoidal_time_embedding(torch.zeros(2), 7)
    with pytest.raises(ValueError, match=r"tau must have shape \(B,\)"):
        fm.sinusoidal_time_embedding(torch.zeros(2, 1), 8)
    with pytest.raises(ValueError, match="need 0 < min_period < max_period"):
        fm.sinusoidal_time_embedding(torch.zeros(2), 8, min_period=1.0, max_period=0.5)
