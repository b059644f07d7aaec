"""BoxSpace: clipping lands inside, samples lie inside, bounds are validated."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from f1.envs.box_space import BoxSpace

SPACE = BoxSpace(np.array([-0.5, -1.0, 0.0]), np.array([0.5, 1.0, 2.0]), ("a", "b", "c"))


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, 3, elements=st.floats(-1e6, 1e6)))
def test_clipped_vectors_lie_in_the_space_and_inside_points_are_unchanged(x):
    clipped = SPACE.clip(x)
    assert SPACE.contains(clipped)
    if SPACE.contains(x):
        assert np.array_equal(clipped, x)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_samples_lie_in_the_space(seed):
    sample = SPACE.sample(np.random.default_rng(seed))
    assert sample.dtype == np.float32
    assert SPACE.contains(sample)


def test_wrong_shape_is_not_contained():
    assert not SPACE.contains(np.zeros(2))
    assert SPACE.shape == (3,)
    assert SPACE.dim == 3


def test_mismatched_lengths_and_inverted_bounds_are_rejected():
    with pytest.raises(ValueError, match="one length"):
        BoxSpace(np.zeros(2), np.ones(3), ("a", "b", "c"))
    with pytest.raises(ValueError, match="low <= high"):
        BoxSpace(np.ones(1), np.zeros(1), ("a",))
