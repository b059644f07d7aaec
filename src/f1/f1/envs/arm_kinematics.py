"""Forward and inverse kinematics of the two-link planar arm, as pure functions of its geometry."""

from __future__ import annotations

import math
from dataclasses import dataclass

_LIMIT_TOLERANCE = 1e-9  # radians


@dataclass(frozen=True)
class TwoLinkGeometry:
    """Where the arm is mounted, how long its links are and how far its joints turn.

    Coordinates are table widths in the image frame (x right, y down); the base sits below the table's
    bottom edge. Angles are radians, counter-clockwise as seen in the image: the shoulder angle is
    measured from the +x axis, the elbow angle from the first link. The elbow is limited to one bend
    direction, so inverse kinematics has one solution.

    Attributes:
        base: shoulder position (x, y).
        link_lengths: (upper arm, forearm).
        shoulder_limits: (min, max) shoulder angle.
        elbow_limits: (min, max) elbow angle.
    """

    base: tuple[float, float] = (0.5, 1.15)
    link_lengths: tuple[float, float] = (0.6, 0.6)
    shoulder_limits: tuple[float, float] = (-0.5 * math.pi, math.pi)
    elbow_limits: tuple[float, float] = (0.0, math.pi - 0.05)

    def __post_init__(self) -> None:
        if min(self.link_lengths) <= 0:
            raise ValueError(f"link_lengths: expected two positive lengths, received {self.link_lengths}")
        for name in ("shoulder_limits", "elbow_limits"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"{name}: expected (min, max) with min < max, received {(low, high)}")


def forward_kinematics(
    geometry: TwoLinkGeometry, shoulder: float, elbow: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Elbow and end-effector positions (x, y) in table widths for joint angles in radians."""
    bx, by = geometry.base
    l1, l2 = geometry.link_lengths
    ex = bx + l1 * math.cos(shoulder)
    ey = by - l1 * math.sin(shoulder)
    total = shoulder + elbow
    return (ex, ey), (ex + l2 * math.cos(total), ey - l2 * math.sin(total))


def inverse_kinematics(geometry: TwoLinkGeometry, x: float, y: float) -> tuple[float, float] | None:
    """Joint angles (shoulder, elbow) in radians placing the end effector at (x, y), or None.

    None when the point is out of reach or needs a joint beyond its limits.
    """
    bx, by = geometry.base
    l1, l2 = geometry.link_lengths
    dx, dy_up = x - bx, by - y
    cos_elbow = (dx * dx + dy_up * dy_up - l1 * l1 - l2 * l2) / (2.0 * l1 * l2)
    if not -1.0 <= cos_elbow <= 1.0:
        return None
    elbow = math.acos(cos_elbow)
    shoulder = math.atan2(dy_up, dx) - math.atan2(l2 * math.sin(elbow), l1 + l2 * math.cos(elbow))
    s_low, s_high = geometry.shoulder_limits
    e_low, e_high = geometry.elbow_limits
    # A tolerance for points computed from joint angles on a limit, which round to just beyond it.
    tol = _LIMIT_TOLERANCE
    # The one turn of angles that starts at the lower shoulder limit.
    shoulder = (shoulder - (s_low - tol)) % (2.0 * math.pi) + (s_low - tol)
    if not (s_low - tol <= shoulder <= s_high + tol and e_low - tol <= elbow <= e_high + tol):
        return None
    return min(max(shoulder, s_low), s_high), min(max(elbow, e_low), e_high)
