"""Confidence intervals for success rates: Wilson's score interval for one rate and Newcombe's hybrid score
interval for the difference of two independent rates.

Both stay inside [0, 1] (resp. [-1, 1]) and behave well at 0% and 100% success, where the textbook normal
(Wald) interval collapses to a point. References: Wilson (1927); Newcombe, Statistics in Medicine 17 (1998),
method 10.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["difference_interval", "wilson_interval", "z_score"]


def z_score(confidence: float) -> float:
    """The two-sided standard-normal quantile for ``confidence`` (0.95 -> 1.959964)."""
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), received {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _check_counts(successes: int, trials: int, name: str = "") -> None:
    for label, value in ((f"{name}successes", successes), (f"{name}trials", trials)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{label}: expected a non-negative integer, received {value!r}")
    if trials == 0:
        raise ValueError(f"{name}trials: expected at least one trial, received 0")
    if successes > trials:
        raise ValueError(f"{name}successes: expected at most trials={trials}, received {successes}")


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(lo, hi)`` for the success probability behind ``successes`` of ``trials``."""
    _check_counts(successes, trials)
    z = z_score(confidence)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    lower = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends (no rounding error)
    upper = 1.0 if successes == trials else min(1.0, centre + half)
    return lower, upper


def difference_interval(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval ``(lo, hi)`` for ``p_a - p_b`` of two independent samples.

    Built from the two Wilson intervals; it excludes zero when the rates differ at the given confidence.
    """
    _check_counts(successes_a, trials_a, "a: ")
    _check_counts(successes_b, trials_b, "b: ")
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    lo_a, hi_a = wilson_interval(successes_a, trials_a, confidence)
    lo_b, hi_b = wilson_interval(successes_b, trials_b, confidence)
    difference = p_a - p_b
    lower = difference - math.sqrt((p_a - lo_a) ** 2 + (hi_b - p_b) ** 2)
    upper = difference + math.sqrt((hi_a - p_a) ** 2 + (p_b - lo_b) ** 2)
    return max(-1.0, lower), min(1.0, upper)
