"""A pole camera: a pinhole tilted down at the ground, so verticals lean towards the nadir as on a real mast.

World coordinates in metres: X to the right of the camera, Y straight ahead along the ground, Z up; the lens
stands at (0, 0, height). The camera pitches down by `pitch` and rolls slightly about its axis. Everything on
screen follows from the focal length, which is set by the horizontal field of view and the frame width, so
a scene keeps its look at any frame size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
NEAR_M = 0.3  # points closer to the lens plane than this are not drawn


@dataclass(frozen=True)
class PoleCamera:
    """Projection between the ground-plane world and the image."""

    width: int
    height: int
    focal_px: float
    mount_m: float
    rotation: Floats  # rows: the camera's right, down and forward axes in world coordinates

    @classmethod
    def build(cls, width: int, height: int, mount_m: float, pitch_deg: float, fov_deg: float,
              roll_deg: float) -> PoleCamera:
        """A camera `mount_m` up, pitched down by `pitch_deg`, with this horizontal field of view."""
        pitch, roll = math.radians(pitch_deg), math.radians(roll_deg)
        forward = np.array([0.0, math.cos(pitch), -math.sin(pitch)])
        right = np.array([1.0, 0.0, 0.0])
        down = np.cross(forward, right)
        rolled_right = math.cos(roll) * right + math.sin(roll) * down
        rolled_down = -math.sin(roll) * right + math.cos(roll) * down
        focal = width / 2 / math.tan(math.radians(fov_deg) / 2)
        return cls(width, height, focal, mount_m, np.stack([rolled_right, rolled_down, forward]))

    @property
    def position(self) -> Floats:
        """The lens, in world coordinates."""
        return np.array([0.0, 0.0, self.mount_m])

    def to_camera(self, points: Floats) -> Floats:
        """World points (N, 3) in camera coordinates (right, down, depth)."""
        return (np.asarray(points, dtype=np.float64) - self.position) @ self.rotation.T

    def project(self, points: Floats) -> tuple[Floats, Floats]:
        """Image positions (N, 2) of world points (N, 3), and their depths (metres along the view)."""
        cam = self.to_camera(points)
        depth = cam[:, 2]
        safe = np.maximum(depth, NEAR_M)
        xy = np.stack([self.width / 2 + self.focal_px * cam[:, 0] / safe,
                       self.height / 2 + self.focal_px * cam[:, 1] / safe], axis=1)
        return xy, depth

    def point(self, x: float, y: float, z: float = 0.0) -> tuple[float, float]:
        """The image position of one world point."""
        xy, _ = self.project(np.array([[x, y, z]]))
        return float(xy[0, 0]), float(xy[0, 1])

    def scale(self, x: float, y: float, z: float = 0.0) -> float:
        """Pixels per metre at a world point, across the line of sight."""
        depth = float(self.to_camera(np.array([[x, y, z]]))[0, 2])
        return self.focal_px / max(depth, NEAR_M)

    def rays(self, step: int = 1) -> Floats:
        """World directions (rows, cols, 3) of the rays through every `step`-th pixel centre."""
        xs = (np.arange(0, self.width, step, dtype=np.float64) + 0.5 * step - self.width / 2) / self.focal_px
        ys = (np.arange(0, self.height, step, dtype=np.float64) + 0.5 * step - self.height / 2) / self.focal_px
        u, v = np.meshgrid(xs, ys)
        local = np.stack([u, v, np.ones_like(u)], axis=-1)
        return local @ self.rotation

    def to_ground(self, x: float, y: float) -> tuple[float, float] | None:
        """The ground point seen at image position (x, y), or None if that ray does not reach the ground."""
        local = np.array([(x - self.width / 2) / self.focal_px, (y - self.height / 2) / self.focal_px, 1.0])
        ray = local @ self.rotation
        if ray[2] >= -1e-6:
            return None
        t = self.mount_m / -ray[2]
        return float(ray[0] * t), float(ray[1] * t)

    def in_view(self, x: float, y: float, z: float = 0.0, margin: float = 0.0) -> bool:
        """Whether a world point lands inside the frame, at least `margin` pixels from its edges."""
        xy, depth = self.project(np.array([[x, y, z]]))
        px, py = xy[0]
        return bool(depth[0] > NEAR_M and margin <= px <= self.width - margin and margin <= py <= self.height - margin)
