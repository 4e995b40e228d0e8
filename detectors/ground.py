"""Sizes in metres where an object stands, from a camera's ground calibration (`ground` in its YAML).

Four points on the ground, marked in the image and measured on a plan, fix the homography between the image and
the ground plane. An object's width on the ground is the distance between the ends of its box's bottom edge
mapped onto the plan: what it spans across the camera's line of sight where it stands.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from domain.registry import Ground


class GroundPlane:
    """The ground homography of one camera, in source pixels."""

    def __init__(self, ground: Ground) -> None:
        image = np.array(ground.image, np.float32)
        self._homography = cv2.getPerspectiveTransform(image, np.array(ground.metres, np.float32))
        # Ground points map with this sign of the homogeneous coordinate, points past the horizon with the other.
        self._side = float(np.sign((self._homography @ np.array([*image[0], 1.0]))[2]))

    def width_m(self, box: tuple[float, float, float, float]) -> float | None:
        """The width in metres on the ground of an object whose box (x, y, w, h in source pixels) stands on its
        bottom edge; None where that edge is not on the ground (at or past the horizon)."""
        x, y, width, height = box
        ends = []
        for px in (x, x + width):
            mapped = self._homography @ np.array([px, y + height, 1.0])
            if mapped[2] * self._side <= 1e-9:
                return None
            ends.append(mapped[:2] / mapped[2])
        return math.dist(ends[0], ends[1])
