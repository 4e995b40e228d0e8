"""The camera's view of a flat ground plane: projection, pixels per metre, and the street's frame of reference.

Coordinates: world X to the camera's right and Z straight ahead along the ground, in metres, Y up; the
camera stands at height `camera_height_m` above X = Z = 0. The lens is shifted rather than tilted, so
verticals stay vertical and anything standing on image row y measures `(y - horizon_y) / camera_height_m`
pixels per metre — objects shrink towards the horizon exactly as they do on a real camera.
The street runs along the unit vector `axis` (the yaw away from Z); `s` is the distance along it and `q`
the distance across it, so façades are the planes q = const.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class View:
    """A pinhole camera over a flat ground plane, with the street's axis."""

    width: int
    height: int
    horizon_y: float
    focal_px: float
    camera_height_m: float
    yaw_deg: float

    @classmethod
    def build(cls, width: int, height: int, horizon: float, fov_deg: float, camera_height_m: float,
              yaw_deg: float) -> View:
        """A view from the scene parameters (horizon as a share of the height, horizontal field of view)."""
        focal = width / 2 / math.tan(math.radians(fov_deg) / 2)
        return cls(width, height, horizon * height, focal, camera_height_m, yaw_deg)

    @property
    def axis(self) -> tuple[float, float]:
        """The street's direction on the ground, as (X, Z)."""
        yaw = math.radians(self.yaw_deg)
        return math.sin(yaw), math.cos(yaw)

    @property
    def across(self) -> tuple[float, float]:
        """The direction across the street, as (X, Z)."""
        yaw = math.radians(self.yaw_deg)
        return math.cos(yaw), -math.sin(yaw)

    def ppm(self, y: float) -> float:
        """Pixels per metre for an object standing on image row y."""
        return max(y - self.horizon_y, 0.0) / self.camera_height_m

    def to_image(self, x_m: float, z_m: float, up_m: float = 0.0) -> tuple[float, float]:
        """The image position of the world point (X, Z) at height `up_m`."""
        z = max(z_m, 1e-3)
        return self.width / 2 + self.focal_px * x_m / z, self.horizon_y + self.focal_px * (
            self.camera_height_m - up_m) / z

    def to_ground(self, x: float, y: float) -> tuple[float, float]:
        """The ground point (X, Z) seen at image position (x, y); y must lie below the horizon."""
        z = self.focal_px * self.camera_height_m / max(y - self.horizon_y, 1e-6)
        return (x - self.width / 2) * z / self.focal_px, z

    def ground_grid(self) -> tuple[FloatArray, FloatArray]:
        """Per-pixel ray slopes (u, v): the ray through a pixel is (u, -v, 1) from the camera."""
        xs = (np.arange(self.width, dtype=np.float64) + 0.5 - self.width / 2) / self.focal_px
        ys = (np.arange(self.height, dtype=np.float64) + 0.5 - self.horizon_y) / self.focal_px
        u, v = np.meshgrid(xs, ys)
        return u, v

    def street_coords(self, x_m: float, z_m: float) -> tuple[float, float]:
        """(s, q): along and across the street."""
        ax, az = self.axis
        nx, nz = self.across
        return ax * x_m + az * z_m, nx * x_m + nz * z_m

    def box_on_screen(self, x: float, y: float, half_width_m: float, height_m: float) -> bool:
        """Whether an object of this size standing at image point (x, y) shows any part in the frame."""
        p = self.ppm(y)
        if p <= 0:
            return False
        return (x + half_width_m * p > 0 and x - half_width_m * p < self.width
                and y - height_m * p < self.height and y > 0)
