"""Embodiments: their action/state spaces, and the end effector never leaving the table."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from f1.envs.embodiments import PointGripper, TwoLinkArm, make_embodiment

ACTION_SEQUENCES = st.lists(arrays(np.float64, 3, elements=st.floats(-1.0, 1.0)), min_size=1, max_size=60)


def test_registry_builds_each_embodiment_and_rejects_unknown_names():
    assert isinstance(make_embodiment("gripper"), PointGripper)
    assert isinstance(make_embodiment("arm"), TwoLinkArm)
    with pytest.raises(
        ValueError, match=r"embodiment: expected one of \['gripper', 'arm'\], received 'humanoid'"
    ):
        make_embodiment("humanoid")


@pytest.mark.parametrize(
    ("name", "action_names", "state_names"),
    [
        ("gripper", ("dx", "dy", "grip"), ("x", "y", "grip")),
        (
            "arm",
            ("dq_shoulder", "dq_elbow", "grip"),
            ("q_shoulder", "q_elbow", "dq_shoulder", "dq_elbow", "ee_x", "ee_y", "grip"),
        ),
    ],
)
def test_embodiments_describe_their_action_and_state_dimensions(name, action_names, state_names):
    body = make_embodiment(name, fps=10)
    body.reset((0.5, 0.85))
    assert body.action_names == action_names
    assert body.action_dim == len(action_names)
    assert body.state_names == state_names
    assert body.state_dim == len(state_names)
    state = body.state_vector()
    assert state.dtype == np.float32
    assert state.shape == (body.state_dim,)
    assert body.fps == 10
    assert body.action_space.high[-1] == 1.0
    assert body.action_space.low[-1] == -1.0


@settings(max_examples=40, deadline=None)
@given(ACTION_SEQUENCES)
def test_point_gripper_stays_on_the_table(actions):
    gripper = make_embodiment("gripper")
    gripper.reset((0.5, 0.85))
    for action in actions:
        before = gripper.ee_position
        gripper.move(gripper.action_space.clip(action * 0.1))
        x, y = gripper.ee_position
        assert 0.0 <= x <= 1.0
        assert 0.0 <= y <= 1.0
        assert abs(x - before[0]) <= PointGripper.MAX_STEP + 1e-9
        assert abs(y - before[1]) <= PointGripper.MAX_STEP + 1e-9


@settings(max_examples=40, deadline=None)
@given(ACTION_SEQUENCES)
def test_arm_forward_kinematics_stay_on_the_table_and_joints_within_limits(actions):
    arm = make_embodiment("arm")
    assert isinstance(arm, TwoLinkArm)
    arm.reset((0.5, 0.85))
    (s_low, s_high), (e_low, e_high) = arm.geometry.shoulder_limits, arm.geometry.elbow_limits
    for action in actions:
        arm.move(arm.action_space.clip(action * 0.2))
        x, y = arm.ee_position
        q1, q2 = arm.joint_angles
        assert 0.0 <= x <= 1.0
        assert 0.0 <= y <= 1.0
        assert s_low <= q1 <= s_high
        assert e_low <= q2 <= e_high
        assert arm.state_space.contains(arm.state_vector())


def test_arm_reports_joint_velocities_in_radians_per_second():
    arm = make_embodiment("arm", fps=20)
    arm.reset((0.5, 0.7))
    q_before = arm.joint_angles
    arm.move(np.array([0.05, -0.03, 0.0]))
    state = arm.state_vector()
    assert state[2] == pytest.approx((arm.joint_angles[0] - q_before[0]) * 20, rel=1e-5)
    assert state[3] == pytest.approx((arm.joint_angles[1] - q_before[1]) * 20, rel=1e-5)
    assert state[2] == pytest.approx(0.05 * 20, rel=1e-5)
    assert tuple(state[4:6]) == pytest.approx(arm.ee_position, abs=1e-6)


def test_arm_refuses_a_start_it_cannot_reach():
    with pytest.raises(ValueError, match="ee_start"):
        make_embodiment("arm").reset((0.0, 0.0))
