"""The bimodal task, and what flow matching learns on it that regression cannot."""

from __future__ import annotations

import pytest
import torch

import flowmatch as fm


def test_the_task_is_bimodal_with_balanced_modes_at_the_stated_distance():
    task = fm.BimodalChunkTask()
    g = torch.Generator().manual_seed(0)
    context = task.sample_context(4000, generator=g)
    actions, mode = task.sample_actions(context, generator=g)
    assert actions.shape == (4000, 4, 2)
    assert abs(mode.float().mean().item() - 0.5) < 0.03
    nearest, distance = task.nearest_mode(actions, context)
    assert torch.equal(nearest, mode)
    assert abs(distance.pow(2).mean().sqrt().item() - task.noise_std) < 0.005
    centers = task.mode_centers(context)
    half_gap = (centers[:, 0] - centers[:, 1]).pow(2).mean(dim=(1, 2)).sqrt() / 2
    torch.testing.assert_close(half_gap, torch.full_like(half_gap, task.mode_offset))


def test_bad_task_arguments_raise():
    with pytest.raises(ValueError, match="mode_offset must be > 0"):
        fm.BimodalChunkTask(mode_offset=0.0)
    with pytest.raises(ValueError, match=r"context must have shape \(\*, 2\)"):
        fm.BimodalChunkTask().mode_centers(torch.zeros(3, 3))


@pytest.mark.slow
def test_flow_head_reproduces_both_modes_where_an_mse_regressor_of_the_same_size_collapses_to_the_mean():
    task = fm.BimodalChunkTask()
    config = fm.FlowMatchingHeadConfig(action_dim=2, horizon=4, context_dim=2, width=32, depth=2, heads=4)
    torch.manual_seed(0)
    head = fm.FlowMatchingHead(config)
    torch.manual_seed(0)
    regressor = fm.MSERegressor(config)
    assert sum(p.numel() for p in head.parameters()) == sum(p.numel() for p in regressor.parameters())
    fm.fit(head, task, steps=300, seed=0)
    fm.fit(regressor, task, steps=300, seed=0)

    context = task.sample_context(1000, generator=torch.Generator().manual_seed(1))
    samples = head.sample(context, generator=torch.Generator().manual_seed(2)).x  # pi0's 10 Euler steps
    mode, distance = task.nearest_mode(samples, context)
    # Both modes, in the right proportion, everywhere in context space (not one mode per context region).
    for region in (context[:, 0] < 0, context[:, 0] >= 0):
        share = mode[region].float().mean().item()
        assert 0.35 <= share <= 0.65, f"mode share {share:.2f}"
    # Samples land on a mode: the modes are 0.5 (RMS) from their mean; samples are within 0.2 of a mode.
    assert (distance < 0.2).float().mean().item() >= 0.8

    with torch.no_grad():
        predictions = regressor.predict(context)
    _, regressor_distance = task.nearest_mode(predictions, context)
    midpoint = task.mode_centers(context).mean(dim=1)
    to_mean = (predictions - midpoint).pow(2).mean(dim=(1, 2)).sqrt()
    assert (regressor_distance > 0.3).float().mean().item() >= 0.9  # on neither mode
    assert to_mean.median().item() < 0.1  # but on their mean
