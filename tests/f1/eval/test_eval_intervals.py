"""Confidence intervals: Wilson for one success rate, Newcombe's hybrid score for a difference."""

from __future__ import annotations

import pytest

from f1.eval import difference_interval, wilson_interval, z_score


def test_z_score_of_95_percent_is_1_96():
    assert z_score(0.95) == pytest.approx(1.959964, abs=1e-6)


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        (0, 10, (0.0, 0.2775)),  # Wilson at 0%: a real upper bound, unlike the Wald interval
        (10, 10, (0.7225, 1.0)),
        (81, 263, (0.2553, 0.3662)),  # Newcombe (1998), table I example
        (50, 100, (0.4038, 0.5962)),
    ],
)
def test_wilson_interval_matches_published_values(successes, trials, expected):
    lo, hi = wilson_interval(successes, trials)
    assert lo == pytest.approx(expected[0], abs=1e-4)
    assert hi == pytest.approx(expected[1], abs=1e-4)


@pytest.mark.parametrize("trials", [1, 7, 100, 400])
def test_wilson_interval_contains_the_rate_and_stays_in_unit_range(trials):
    for successes in range(trials + 1):
        lo, hi = wilson_interval(successes, trials)
        assert 0.0 <= lo <= successes / trials <= hi <= 1.0


def test_wilson_interval_narrows_with_more_trials():
    widths = [hi - lo for lo, hi in (wilson_interval(n // 2, n) for n in (10, 100, 1000))]
    assert widths[0] > widths[1] > widths[2]


def test_difference_interval_matches_newcombe_example():
    # Newcombe (1998), method 10: 56/70 vs 48/80 gives (0.0524, 0.3339).
    lo, hi = difference_interval(56, 70, 48, 80)
    assert lo == pytest.approx(0.0524, abs=1e-4)
    assert hi == pytest.approx(0.3339, abs=1e-4)


def test_difference_interval_is_antisymmetric_and_contains_zero_for_equal_rates():
    lo, hi = difference_interval(30, 100, 30, 100)
    assert lo < 0 < hi
    a = difference_interval(70, 100, 40, 100)
    b = difference_interval(40, 100, 70, 100)
    assert a[0] == pytest.approx(-b[1])
    assert a[1] == pytest.approx(-b[0])


def test_difference_interval_excludes_zero_for_a_clear_gap():
    lo, _ = difference_interval(67, 100, 33, 100)
    assert lo > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((3, 0), "trials"),
        ((5, 4), "successes"),
        ((-1, 4), "successes"),
        ((1.5, 4), "successes"),
    ],
)
def test_bad_counts_raise_naming_the_argument(args, message):
    with pytest.raises(ValueError, match=message):
        wilson_interval(*args)


def test_bad_confidence_raises():
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.5)
