"""Two-link arm kinematics: inverse kinematics inverts forward kinematics on the one elbow branch."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from f1.envs.arm_kinematics import TwoLinkGeometry, forward_kinematics, inverse_kinematics

GEOMETRY = TwoLinkGeometry()


@settings(max_examples=100, deadline=None)
@given(
    st.floats(GEOMETRY.shoulder_limits[0], GEOMETRY.shoulder_limits[1]),
    st.floats(GEOMETRY.elbow_limits[0] + 1e-3, GEOMETRY.elbow_limits[1]),
)
def test_inverse_kinematics_recovers_the_joint_angles(shoulder, elbow):
    _, (x, y) = forward_kinematics(GEOMETRY, shoulder, elbow)
    joints = inverse_kinematics(GEOMETRY, x, y)
    assert joints is not None
    assert joints[0] == pytest.approx(shoulder, abs=1e-5)
    assert joints[1] == pytest.approx(elbow, abs=1e-5)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.42, 1.0))
def test_the_conveyor_and_the_lower_table_are_reachable_and_hit_exactly(x, y):
    joints = inverse_kinematics(GEOMETRY, x, y)
    assert joints is not None
    _, (fx, fy) = forward_kinematics(GEOMETRY, *joints)
    assert (fx, fy) == (pytest.approx(x, abs=1e-9), pytest.approx(y, abs=1e-9))


def test_points_out_of_reach_have_no_solution():
    assert inverse_kinematics(GEOMETRY, 0.0, 0.0) is None  # top corner: farther than both links
    assert inverse_kinematics(GEOMETRY, *GEOMETRY.base) is None  # the base itself needs a folded elbow


def test_links_have_their_lengths():
    elbow, ee = forward_kinematics(GEOMETRY, 0.7, 1.1)
    assert math.dist(GEOMETRY.base, elbow) == pytest.approx(GEOMETRY.link_lengths[0])
    assert math.dist(elbow, ee) == pytest.approx(GEOMETRY.link_lengths[1])


def test_invalid_geometry_is_rejected():
    with pytest.raises(ValueError, match="link_lengths"):
        TwoLinkGeometry(link_lengths=(0.6, 0.0))
    with pytest.raises(ValueError, match="elbow_limits"):
        TwoLinkGeometry(elbow_limits=(1.0, 0.5))
