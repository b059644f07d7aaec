"""The head's two ends: chunk + time -> tokens, state -> token, tokens -> velocity."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm


@settings(max_examples=10, deadline=None)
@given(step=st.integers(0, 4), seed=st.integers(0, 1000))
def test_each_action_token_depends_only_on_its_own_step_and_the_time(step: int, seed: int):
    torch.manual_seed(seed)
    encoder = fm.ActionEncoder(action_dim=3, width=16)
    actions = torch.randn(2, 5, 3)
    tau = torch.tensor([0.2, 0.7])
    tokens = encoder(actions, tau)
    changed = actions.clone()
    changed[:, step] += 1.0
    moved = encoder(changed, tau)
    others = torch.arange(5) != step
    assert torch.equal(moved[:, others], tokens[:, others])
    assert not torch.allclose(moved[:, step], tokens[:, step])


def test_time_changes_every_token_and_a_scalar_time_broadcasts():
    torch.manual_seed(0)
    encoder = fm.ActionEncoder(action_dim=2, width=8)
    actions = torch.randn(3, 4, 2)
    early = encoder(actions, torch.full((3,), 0.1))
    late = encoder(actions, torch.full((3,), 0.9))
    assert early.shape == (3, 4, 8)
    assert bool(((early - late).abs().sum(dim=-1) > 0).all())
    torch.testing.assert_close(encoder(actions, torch.tensor(0.1)), early)


def test_tokens_round_trip_through_any_backbone():
    torch.manual_seed(0)
    encoder, decoder, state_encoder = fm.ActionEncoder(4, 12), fm.ActionDecoder(12, 4), fm.StateEncoder(6, 12)
    backbone = torch.nn.GRU(12, 12, batch_first=True)  # anything that maps (B, T, w) -> (B, T, w)
    actions, state = torch.randn(2, 5, 4), torch.randn(2, 6)
    tokens = torch.cat([state_encoder(state), encoder(actions, torch.rand(2))], dim=1)
    assert tokens.shape == (2, 6, 12)
    velocity = decoder(backbone(tokens)[0][:, 1:])
    assert velocity.shape == (2, 5, 4)


def test_bad_inputs_raise_errors_that_name_them():
    encoder = fm.ActionEncoder(3, 8)
    with pytest.raises(
        ValueError, match=r"noisy_actions must have shape \(\*, \*, 3\), received shape \(2, 4, 2\)"
    ):
        encoder(torch.randn(2, 4, 2), torch.rand(2))
    with pytest.raises(ValueError, match=r"tau must have shape \(2,\), received shape \(3,\)"):
        encoder(torch.randn(2, 4, 3), torch.rand(3))
    with pytest.raises(ValueError, match="width must be even"):
        fm.ActionEncoder(3, 7)
    with pytest.raises(ValueError, match=r"state must have shape \(\*, 5\)"):
        fm.StateEncoder(5, 8)(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"action_tokens must have shape \(\*, \*, 8\)"):
        fm.ActionDecoder(8, 3)(torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="action_dim must be > 0"):
        fm.ActionEncoder(0, 8)
