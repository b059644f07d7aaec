"""Embodiments: normalization is invertible, the registry names unknown robots, stats load from LeRobot."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from f1.model import (
    ConfigError,
    Embodiment,
    EmbodimentRegistry,
    InputError,
    UnknownEmbodimentError,
    padded_embodiment,
)


def _arm(normalization: str = "mean_std") -> Embodiment:
    return Embodiment(
        name="arm",
        state_dim=3,
        action_dim=2,
        control_hz=20.0,
        action_names=("x", "gripper"),
        normalization=normalization,
        state_stats={
            **{"mean": [0.0, 1.0, 2.0], "std": [1.0, 2.0, 0.5], "min": [-1, -1, -1], "max": [1, 2, 3]},
            **{"q01": [-0.9, -0.5, -0.8], "q99": [0.9, 1.5, 2.5]},
        },
        action_stats={
            **{"mean": [0.5, 0.0], "std": [2.0, 1.0], "min": [-1.0, 0.0], "max": [1.0, 1.0]},
            **{"q01": [-0.8, 0.1], "q99": [0.6, 0.9]},
        },
    )


@settings(max_examples=30, deadline=None)
@given(
    mode=st.sampled_from(["mean_std", "min_max", "quantile", "identity"]),
    values=st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=2),
)
def test_unnormalize_inverts_normalize(mode: str, values: list[float]) -> None:
    embodiment = _arm(mode)
    action = torch.tensor([values], dtype=torch.float64)
    back = embodiment.unnormalize_action(embodiment.normalize_action(action))
    torch.testing.assert_close(back, action, rtol=1e-9, atol=1e-9)


def test_mean_std_and_min_max_map_the_statistics_where_expected() -> None:
    state = torch.tensor([[0.0, 1.0, 2.0]])
    assert torch.allclose(_arm("mean_std").normalize_state(state), torch.zeros(1, 3), atol=1e-6)
    extremes = torch.tensor([[-1.0, 0.0], [1.0, 1.0]])
    normalized = _arm("min_max").normalize_action(extremes)
    assert torch.allclose(normalized, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    quantiles = torch.tensor([[-0.8, 0.1], [0.6, 0.9], [2.0, 0.5]])  # q01, q99, and beyond q99
    normalized = _arm("quantile").normalize_action(quantiles)
    assert torch.allclose(normalized[:2], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    assert normalized[2, 0] > 1  # outliers are not clipped


def test_quantile_normalization_needs_quantiles_and_ordered_ones() -> None:
    with pytest.raises(ConfigError, match=r"normalization 'quantile' needs statistics \['q01', 'q99'\]"):
        Embodiment("arm", 2, 2, normalization="quantile", action_stats={"mean": [0, 0], "std": [1, 1]})
    with pytest.raises(ConfigError, match="q01 > q99 at dimensions"):
        Embodiment("arm", 1, 1, normalization="quantile", state_stats={"q01": [1.0], "q99": [0.0]})


def test_wrong_dimension_names_the_key_and_the_embodiment() -> None:
    with pytest.raises(
        InputError, match=r"observation.state: embodiment 'arm' expects \(\.\.\., 3\), received \(1, 4\)"
    ):
        _arm().normalize_state(torch.zeros(1, 4))


def test_stats_must_fit_the_dimensions_and_the_mode() -> None:
    with pytest.raises(ConfigError, match=r"state_stats.mean: expected 3 numbers, received 2"):
        Embodiment(
            name="a",
            state_dim=3,
            action_dim=1,
            normalization="mean_std",
            state_stats={"mean": [0, 0], "std": [1, 1, 1]},
            action_stats={"mean": [0], "std": [1]},
        )
    with pytest.raises(ConfigError, match=r"normalization 'min_max' needs statistics \['min', 'max'\]"):
        Embodiment(name="a", state_dim=1, action_dim=1, normalization="min_max")
    with pytest.raises(ConfigError, match="action_mask: expected 2 booleans"):
        Embodiment(name="a", state_dim=1, action_dim=2, action_mask=(True,))


def test_registry_raises_a_clear_error_for_unknown_embodiments() -> None:
    registry = EmbodimentRegistry([_arm()])
    assert registry.get("arm").control_hz == 20.0
    with pytest.raises(
        UnknownEmbodimentError, match=r"unknown embodiment 'ufo'; registered embodiments: \['arm'\]"
    ):
        registry.get("ufo")
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(_arm())


def test_from_dataset_stats_reads_lerobot_stats_json_entries() -> None:
    stats = {
        "observation.state": {"mean": [0.0, 1.0], "std": [1.0, 1.0], "count": [10], "q01": [0, 0]},
        "action": {"mean": [0.0], "std": [2.0], "min": [-3.0], "max": [3.0]},
    }
    embodiment = Embodiment.from_dataset_stats("so100", stats, control_hz=30.0)
    assert (embodiment.state_dim, embodiment.action_dim) == (2, 1)
    assert embodiment.action_stats.std == (2.0,)
    assert Embodiment.from_dict(embodiment.to_dict()) == embodiment


def test_padded_embodiment_masks_the_padding() -> None:
    embodiment = padded_embodiment("libero", state_dim=8, action_dim=7)
    assert embodiment.action_dim == 32
    assert embodiment.action_mask_tensor().sum().item() == 7
    assert embodiment.action_mask_tensor()[:7].all()
