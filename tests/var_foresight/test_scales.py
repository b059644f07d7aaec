import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from var_foresight.scales import (
    RELEASED_PHI_TABLE,
    VAR_SCALES_256,
    ScaleSchedule,
    phi_table,
)


def _numpy_phi_table(num_scales: int, num_phi: int) -> tuple[int, ...]:
    # VAR's rule written with numpy, as its PhiPartiallyShared does it
    lo = 1 / 3 / num_phi if num_phi == 4 else 1 / 2 / num_phi
    ticks = np.linspace(lo, 1 - lo, num_phi)
    return tuple(int(np.argmin(np.abs(ticks - k / (num_scales - 1)))) for k in range(num_scales))


def test_released_phi_table_is_the_hard_coded_one():
    assert phi_table(10, 4) == (0, 0, 1, 1, 1, 2, 2, 3, 3, 3) == RELEASED_PHI_TABLE
    assert _numpy_phi_table(10, 4) == RELEASED_PHI_TABLE
    naive = tuple(round(k / 9 * 3) for k in range(10))
    assert naive != RELEASED_PHI_TABLE  # the tempting shortcut is incompatible


@settings(max_examples=40, deadline=None)
@given(num_scales=st.integers(2, 40), num_phi=st.integers(2, 8))
def test_phi_table_equals_vars_float64_argmin_rule(num_scales, num_phi):
    assert phi_table(num_scales, num_phi) == _numpy_phi_table(num_scales, num_phi)


def test_released_schedule_token_counts():
    schedule = ScaleSchedule.from_sides(VAR_SCALES_256)
    assert schedule.total_tokens == 680
    assert [end for _, end in schedule.offsets] == [1, 5, 14, 30, 55, 91, 155, 255, 424, 680]
    levels = schedule.level_ids()
    assert levels.shape == (680,)
    assert int(levels[0]) == 0
    assert int(levels[-1]) == 9
    assert int((levels == 9).sum()) == 256


@settings(max_examples=30, deadline=None)
@given(sides=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=6))
def test_level_ids_count_every_token_of_its_scale_once(sides):
    sizes = sorted(sides)
    sizes = [
        (max(h for h, _ in sizes[: i + 1]), max(w for _, w in sizes[: i + 1])) for i in range(len(sizes))
    ]
    schedule = ScaleSchedule.from_sides(sizes)
    levels = schedule.level_ids()
    assert levels.numel() == schedule.total_tokens
    for k, (begin, end) in enumerate(schedule.offsets):
        assert bool((levels[begin:end] == k).all())


def test_bad_schedules_are_rejected_with_the_argument_named():
    with pytest.raises(ValueError, match="must not shrink"):
        ScaleSchedule.from_sides([1, 4, 2])
    with pytest.raises(TypeError, match=r"scales\[1\]"):
        ScaleSchedule.from_sides([1, "2"])
    with pytest.raises(ValueError, match="empty"):
        ScaleSchedule.from_sides([])
    with pytest.raises(ValueError, match="num_scales"):
        ScaleSchedule.from_sides([1, 2]).prefix(3)
