"""Widths in metres from a camera's ground calibration, against pole cameras whose geometry is known."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.ground import GroundPlane
from simulators.cameras.clip import marked_ground
from simulators.cameras.second.camera import PoleCamera


@pytest.mark.parametrize(("mount_m", "pitch_deg", "yaw_deg"), [(4.0, 15.0, 0.0), (8.0, 35.0, 30.0),
                                                               (25.0, 60.0, 60.0)])
def test_an_object_measures_its_width_across_the_line_of_sight_in_metres(mount_m: float, pitch_deg: float,
                                                                         yaw_deg: float) -> None:
    """A car side on, 4.5 m long, where the camera's axis meets the ground: its box's bottom edge spans 4.5 m;
    turned by `yaw_deg`, about what it spans across the line of sight."""
    camera = PoleCamera.build(640, 360, mount_m, pitch_deg, 70.0, 0.0)
    plane = GroundPlane(marked_ground(640, 360, camera.to_ground))
    depth = mount_m / np.tan(np.radians(pitch_deg))
    yaw = np.radians(yaw_deg)
    half = 2.25 * np.array([np.cos(yaw), np.sin(yaw)])
    ends, _ = camera.project(np.array([[-half[0], depth - half[1], 0.0], [half[0], depth + half[1], 0.0]]))
    left, right = sorted(ends.tolist())
    box = (left[0], min(left[1], right[1]) - 30, right[0] - left[0], 30 + abs(left[1] - right[1]))
    width = plane.width_m(box)
    assert width is not None
    # Across the line of sight: 4.5 m × cos(yaw); turned, its far end looks narrower, so a little less.
    assert 0.8 * 4.5 * np.cos(yaw) <= width <= 4.5 * np.cos(yaw) + 0.01


def test_an_object_whose_foot_is_past_the_horizon_has_no_width() -> None:
    camera = PoleCamera.build(640, 360, 6.0, 10.0, 70.0, 0.0)
    plane = GroundPlane(marked_ground(640, 360, camera.to_ground))
    horizon_y = camera.point(0.0, 1e6)[1]
    assert plane.width_m((300, horizon_y - 40, 40, 20)) is None
    assert plane.width_m((300, horizon_y + 20, 40, 20)) is not None
