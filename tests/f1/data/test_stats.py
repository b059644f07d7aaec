"""Statistics: per-episode values, exact combination across episodes, stats.json round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from f1.data import LeRobotDataset, aggregate_stats, compute_image_stats, compute_numeric_stats
from f1.data.stats import QUANTILE_KEYS, STAT_KEYS, load_stats_json, sample_frame_indices, write_stats_json

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


def test_numeric_stats_match_numpy() -> None:
    values = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    stats = compute_numeric_stats(values)
    assert list(stats) == list(STAT_KEYS)
    np.testing.assert_allclose(stats["mean"], values.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], values.astype(np.float64).std(0), rtol=1e-6)
    np.testing.assert_allclose(stats["q10"], np.quantile(values.astype(np.float64), 0.1, axis=0))
    assert stats["count"].tolist() == [50]
    scalar = compute_numeric_stats(np.arange(5, dtype=np.int64))
    assert scalar["mean"].shape == (1,)
    assert scalar["max"].tolist() == [4.0]


def test_image_stats_are_per_channel_in_unit_range() -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(3, 250, size=(7, 8, 8, 3), dtype=np.uint8)  # min/max away from 0 and 255
    stats = compute_image_stats(frames)
    pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
    for key in ("min", "max", "mean", "std", *QUANTILE_KEYS):
        assert stats[key].shape == (3, 1, 1)
    np.testing.assert_allclose(stats["min"].ravel(), pixels.min(0), atol=1e-12)
    np.testing.assert_allclose(stats["max"].ravel(), pixels.max(0), atol=1e-12)
    np.testing.assert_allclose(stats["mean"].ravel(), pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(stats["std"].ravel(), pixels.std(0), rtol=1e-9)
    np.testing.assert_allclose(
        stats["q50"].ravel(), np.quantile(pixels, 0.5, axis=0, method="inverted_cdf"), atol=1e-12
    )
    assert stats["count"].tolist() == [7]
    with pytest.raises(ValueError, match="frames: expected uint8"):
        compute_image_stats(frames.astype(np.float32))


def test_frame_sampling_follows_lerobot() -> None:
    assert sample_frame_indices(5).tolist() == [0, 1, 2, 3, 4]
    assert len(sample_frame_indices(1000)) == 177  # LeRobot's documented value
    assert sample_frame_indices(1000)[-1] == 999


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.just(2)), elements=finite),
        min_size=1,
        max_size=5,
    )
)
def test_aggregation_equals_stats_of_concatenation(parts: list[np.ndarray]) -> None:
    """min/max/mean/std of the combined episodes are exact; count adds up."""
    combined = aggregate_stats([{"x": compute_numeric_stats(p)} for p in parts])["x"]
    direct = compute_numeric_stats(np.concatenate(parts))
    for key in ("min", "max", "mean"):
        np.testing.assert_allclose(combined[key], direct[key], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(combined["std"], direct["std"], rtol=1e-6, atol=1e-6)
    assert combined["count"].tolist() == [sum(len(p) for p in parts)]


def test_stats_json_round_trip(tmp_path: Path) -> None:
    stats = {"a": compute_numeric_stats(np.arange(12.0).reshape(6, 2))}
    write_stats_json(stats, tmp_path / "meta/stats.json")
    back = load_stats_json(tmp_path / "meta/stats.json")
    for key in STAT_KEYS:
        np.testing.assert_array_equal(back["a"][key], stats["a"][key])


def test_writer_stores_dataset_stats(write_dataset) -> None:
    root, episodes, _ = write_dataset(lengths=(3, 4, 5))
    stored = json.loads((root / "meta/stats.json").read_text())
    features = ["observation.images.front", "observation.state", "action", "timestamp", "frame_index"]
    assert set(features) <= set(stored)
    assert set(stored["action"]) == set(STAT_KEYS)
    ds = LeRobotDataset(root)
    actions = np.concatenate([ep["action"] for ep in episodes]).astype(np.float64)
    np.testing.assert_allclose(ds.stats["action"]["mean"], actions.mean(0), rtol=1e-6)
    np.testing.assert_allclose(ds.stats["action"]["std"], actions.std(0), rtol=1e-6)
    assert ds.stats["action"]["count"].tolist() == [12]
    assert ds.stats["observation.images.front"]["mean"].shape == (3, 1, 1)
    exact = ds.compute_stats(include_cameras=True)
    np.testing.assert_allclose(exact["action"]["q90"], np.quantile(actions, 0.9, axis=0), rtol=1e-6)
    # decoded (lossy) frames give camera statistics close to the ones computed from the originals
    np.testing.assert_allclose(
        exact["observation.images.front"]["mean"], ds.stats["observation.images.front"]["mean"], atol=0.02
    )
