"""Normalizer: affine maps from statistics, exact inverse, plain serialisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from f1.data import NORM_MODES, Normalizer, compute_numeric_stats

finite = st.floats(-100, 100, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(
    data=hnp.arrays(np.float32, st.tuples(st.integers(2, 20), st.integers(1, 4)), elements=finite),
    mode=st.sampled_from(NORM_MODES),
)
def test_unnormalize_inverts_normalize(data: np.ndarray, mode: str) -> None:
    normalizer = Normalizer.from_stats({"x": compute_numeric_stats(data)}, {"x": mode})
    x = torch.from_numpy(data)
    back = normalizer.unnormalize("x", normalizer.normalize("x", x))
    torch.testing.assert_close(back, x, atol=1e-3, rtol=1e-4)


def test_modes_map_their_reference_points() -> None:
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 2))
    stats = {"x": compute_numeric_stats(values)}
    x = torch.tensor(values, dtype=torch.float32)
    mean_std = Normalizer.from_stats(stats, {"x": "mean_std"}).normalize("x", x)
    torch.testing.assert_close(mean_std.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(mean_std.std(0, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    min_max = Normalizer.from_stats(stats, {"x": "min_max"}).normalize("x", x)
    torch.testing.assert_close(min_max.min(0).values, -torch.ones(2))
    torch.testing.assert_close(min_max.max(0).values, torch.ones(2))
    quantile = Normalizer.from_stats(stats, {"x": "quantile"})
    q = torch.tensor(np.stack([stats["x"]["q01"], stats["x"]["q99"]]), dtype=torch.float32)
    torch.testing.assert_close(quantile.normalize("x", q), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))


def test_constant_dimension_maps_to_zero_and_back() -> None:
    values = np.stack([np.full(10, 5.0), np.arange(10.0)], axis=1)
    for mode in NORM_MODES:
        normalizer = Normalizer.from_stats({"x": compute_numeric_stats(values)}, {"x": mode})
        x = torch.tensor(values, dtype=torch.float32)
        normed = normalizer.normalize("x", x)
        assert torch.all(normed[:, 0] == 0)
        torch.testing.assert_close(normalizer.unnormalize("x", normed), x)


def test_image_statistics_broadcast_over_channels() -> None:
    stats = {"cam": {"mean": np.full((3, 1, 1), 0.5), "std": np.full((3, 1, 1), 0.25)}}
    normalizer = Normalizer.from_stats(stats, {"cam": "mean_std"})
    images = torch.full((2, 4, 3, 8, 8), 0.75)
    assert torch.all(normalizer.normalize("cam", images) == 1.0)


def test_serialisation_round_trips(tmp_path: Path) -> None:
    values = np.random.default_rng(1).normal(size=(50, 3))
    stats = {
        "action": compute_numeric_stats(values),
        "observation.state": compute_numeric_stats(values[:, :2]),
    }
    normalizer = Normalizer.from_stats(stats, {"action": "quantile", "observation.state": "mean_std"})
    x = {"action": torch.randn(5, 3), "observation.state": torch.randn(2), "task": "keep me"}
    expected = normalizer.normalize_batch(x)
    assert expected["task"] == "keep me"
    normalizer.save(tmp_path / "norm.safetensors")
    for copy in (Normalizer.load(tmp_path / "norm.safetensors"), Normalizer.from_dict(normalizer.to_dict())):
        assert copy.modes == normalizer.modes
        got = copy.normalize_batch(x)
        torch.testing.assert_close(got["action"], expected["action"])
        torch.testing.assert_close(got["observation.state"], expected["observation.state"])
    assert set(normalizer.state_dict()) == {
        "action.center",
        "action.scale",
        "observation.state.center",
        "observation.state.scale",
    }


def test_bad_input_is_named() -> None:
    stats = {"x": compute_numeric_stats(np.arange(6.0).reshape(3, 2))}
    with pytest.raises(ValueError, match=r"modes\['x'\]: expected one of"):
        Normalizer.from_stats(stats, {"x": "zscore"})
    with pytest.raises(ValueError, match="no statistics for 'y'"):
        Normalizer.from_stats(stats, {"y": "mean_std"})
    normalizer = Normalizer.from_stats(stats, {"x": "mean_std"})
    with pytest.raises(KeyError, match="key: expected one of"):
        normalizer.normalize("y", torch.zeros(2))
    with pytest.raises(ValueError, match="does not broadcast"):
        normalizer.normalize("x", torch.zeros(3))
