"""The complete head: config, masked loss on its own batches, seeded sampling, state and context handling."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowmatch as fm


def _head(state_dim: int | None = None, seed: int = 0, **overrides) -> fm.FlowMatchingHead:
    torch.manual_seed(seed)
    config = fm.FlowMatchingHeadConfig(
        action_dim=3, horizon=4, context_dim=5, state_dim=state_dim, width=16, depth=1, heads=2, **overrides
    )
    return fm.FlowMatchingHead(config).eval()


def test_config_round_trips_through_plain_data_and_rejects_unknown_keys():
    config = fm.FlowMatchingHeadConfig(
        action_dim=7, horizon=50, context_dim=32, state_dim=8, time_sampler="uniform"
    )
    assert fm.FlowMatchingHeadConfig.from_dict(config.to_dict()) == config
    with pytest.raises(KeyError, match=r"unknown FlowMatchingHeadConfig keys \['chunk'\]"):
        fm.FlowMatchingHeadConfig.from_dict({**config.to_dict(), "chunk": 50})


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"action_dim": 0}, "action_dim must be a positive int"),
        ({"horizon": 2.5}, "horizon must be a positive int"),
        ({"state_dim": -1}, "state_dim must be a positive int or None"),
        ({"width": 15}, "width must be even"),
        ({"width": 18, "heads": 4}, r"width \(18\) must be divisible by heads \(4\)"),
        ({"time_sampler": "cosine"}, "time_sampler must be 'uniform', 'beta' or 'logit_normal'"),
    ],
)
def test_bad_config_values_raise_at_construction(overrides, match):
    base = {"action_dim": 3, "horizon": 4, "context_dim": 5, "width": 16, "heads": 2}
    with pytest.raises(ValueError, match=match):
        fm.FlowMatchingHeadConfig(**{**base, **overrides})


def test_the_loss_is_finite_and_trains_every_parameter():
    head = _head(state_dim=2).train()
    g = torch.Generator().manual_seed(0)
    loss = head.loss(torch.randn(6, 4, 3), torch.randn(6, 5), state=torch.randn(6, 2), generator=g)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), valid_steps=st.integers(1, 3), valid_dims=st.integers(1, 2))
def test_padded_actions_never_change_the_heads_loss_or_gradients(
    seed: int, valid_steps: int, valid_dims: int
):
    head = _head(state_dim=2).train()
    g = torch.Generator().manual_seed(seed)
    actions, context, state = (
        torch.randn(2, 4, 3, generator=g),
        torch.randn(2, 5, generator=g),
        torch.randn(2, 2),
    )
    dim_mask = torch.arange(3) < valid_dims
    step_mask = (torch.arange(4) < valid_steps).expand(2, 4)
    padded = actions.clone()
    padded[:, valid_steps:] = 1e3
    padded[:, :, valid_dims:] = float("nan")
    masks = {"action_dim_mask": dim_mask, "step_mask": step_mask, "state": state}

    def loss_and_grads(chunk: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        head.zero_grad()
        loss = head.loss(chunk, context, generator=torch.Generator().manual_seed(1), **masks)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in head.parameters()]

    clean_loss, clean_grads = loss_and_grads(actions)
    dirty_loss, dirty_grads = loss_and_grads(padded)
    torch.testing.assert_close(dirty_loss, clean_loss, rtol=1e-6, atol=1e-7)
    for clean, dirty in zip(clean_grads, dirty_grads):
        torch.testing.assert_close(dirty, clean, rtol=1e-5, atol=1e-6)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_same_generator_seed_gives_identical_action_chunks(seed: int):
    head = _head(state_dim=2)
    context, state = torch.randn(3, 5), torch.randn(3, 2)
    first = head.sample(context, state=state, generator=torch.Generator().manual_seed(seed))
    second = head.sample(context, state=state, generator=torch.Generator().manual_seed(seed))
    other = head.sample(context, state=state, generator=torch.Generator().manual_seed(seed + 1))
    assert first.x.shape == (3, 4, 3)
    assert first.nfe == 10
    assert torch.equal(first.x, second.x)
    assert not torch.equal(first.x, other.x)


@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_sampling_a_batch_equals_sampling_each_context_alone(solver: str):
    head = _head()
    context = torch.randn(4, 5)
    noise = torch.randn(4, 4, 3)
    batch = head.sample(context, noise=noise, solver=solver, steps=3).x
    for i in range(4):
        alone = head.sample(context[i : i + 1], noise=noise[i : i + 1], solver=solver, steps=3).x
        torch.testing.assert_close(alone, batch[i : i + 1], rtol=0, atol=1e-5)


def test_token_context_with_padding_and_a_float64_head():
    head = _head().double()
    context = torch.randn(2, 3, 5, dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    result = head.sample(
        context, context_mask=mask, generator=torch.Generator().manual_seed(0), solver="heun", steps=2
    )
    assert result.x.dtype == torch.float64
    assert result.nfe == 4
    garbage = context.clone()
    garbage[~mask] = 50.0
    again = head.sample(
        garbage, context_mask=mask, generator=torch.Generator().manual_seed(0), solver="heun", steps=2
    )
    torch.testing.assert_close(again.x, result.x)


def test_the_velocity_closure_is_what_sample_integrates():
    head = _head()
    context, noise = torch.randn(2, 5), torch.randn(2, 4, 3)
    with torch.no_grad():
        by_hand = fm.sample(head.velocity_fn(context), noise, solver="midpoint", steps=4)
    assert torch.equal(head.sample(context, noise=noise, solver="midpoint", steps=4).x, by_hand.x)


def test_state_is_required_exactly_when_configured():
    with pytest.raises(ValueError, match=r"state of shape \(B, 2\) is required"):
        _head(state_dim=2).sample(torch.randn(1, 5))
    with pytest.raises(ValueError, match="state was given but the config has state_dim=None"):
        _head().sample(torch.randn(1, 5), state=torch.randn(1, 2))


def test_bad_inputs_raise_errors_that_name_them():
    head = _head()
    with pytest.raises(ValueError, match=r"actions must have shape \(\*, 4, 3\), received shape \(2, 5, 3\)"):
        head.loss(torch.randn(2, 5, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"noise must have shape \(2, 4, 3\)"):
        head.sample(torch.randn(2, 5), noise=torch.randn(1, 4, 3))
    with pytest.raises(TypeError, match="config must be a FlowMatchingHeadConfig"):
        fm.FlowMatchingHead({"action_dim": 3})  # type: ignore[arg-type]
