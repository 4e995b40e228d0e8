"""Solid shapes in the world drawn through the pole camera: boxes, poles, mounds, flat patches and shadows.

Everything is drawn with OpenCV polygons at quarter-pixel precision, so that slow movement glides rather than
stepping a whole pixel at a time. A box shows only the faces turned towards the lens; a face is shaded by how
it turns to a fixed key light, so that boxes read as solid at a glance.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from simulators.cameras.second.camera import NEAR_M, Floats, PoleCamera

Image = npt.NDArray[np.uint8]
Colour = tuple[int, int, int]
Light = tuple[float, float, float]  # multiplier per BGR channel
SHIFT = 2
ONE = 1 << SHIFT
KEY_LIGHT = np.array([0.45, -0.35, 0.82])  # a fixed light for face shading, roughly from above and behind
_FACES = ((4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7))  # top, then the four sides


def as_image(array: Any) -> Image:
    """The array as uint8 (itself if it already is): OpenCV's results are loosely typed."""
    return np.asarray(array, np.uint8)


def lit(colour: Colour, light: Light, factor: float = 1.0) -> Colour:
    """A colour under this light, times `factor`, clipped to 0-255."""
    b, g, r = colour
    return (min(int(b * light[0] * factor), 255), min(int(g * light[1] * factor), 255),
            min(int(r * light[2] * factor), 255))


def fixed(points: Floats) -> npt.NDArray[np.int32]:
    """Image points as OpenCV's fixed-point polygon vertices."""
    return np.round(np.asarray(points) * ONE).astype(np.int32)


_UNIT = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0],
                  [-0.5, -0.5, 1], [0.5, -0.5, 1], [0.5, 0.5, 1], [-0.5, 0.5, 1]], dtype=np.float64)
_FACE_INDEX = np.array(_FACES)
_FACE_CENTRES = np.array([[0, 0, 1], [0, -0.5, 0.5], [0.5, 0, 0.5], [0, 0.5, 0.5], [-0.5, 0, 0.5]], dtype=np.float64)
_FACE_NORMALS = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0]], dtype=np.float64)


def box_corners(x: float, y: float, z0: float, yaw: float, length: float, width: float, height: float) -> Floats:
    """The 8 corners of a box standing at (x, y) from height z0, its length along the heading `yaw`."""
    c, s = math.cos(yaw), math.sin(yaw)
    local = _UNIT * (length, width, height)
    return np.column_stack([x + local[:, 0] * c - local[:, 1] * s, y + local[:, 0] * s + local[:, 1] * c,
                            z0 + local[:, 2]])


def draw_box(image: Image, camera: PoleCamera, x: float, y: float, z0: float, yaw: float,
             size: tuple[float, float, float], colour: Colour, light: Light, top: Colour | None = None) -> None:
    """A box (length, width, height) standing at (x, y) from z0, with its length along `yaw`."""
    draw_boxes(image, camera, np.array([[x, y, z0, *size]]), yaw, [colour], light, top)


def draw_boxes(image: Image, camera: PoleCamera, boxes: Floats, yaw: float, colours: list[Colour], light: Light,
               top: Colour | None = None) -> None:
    """Boxes sharing one heading, rows of (x, y, z0, length, width, height), farthest first.

    A stall's goods or crates are dozens of boxes a frame, so they go to the camera together: the shared
    heading is turned into the camera's axes once, and every corner, face centre and normal follows at once."""
    c, s = math.cos(yaw), math.sin(yaw)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    to_camera = camera.rotation @ turn
    offsets = (boxes[:, :3] - camera.position) @ camera.rotation.T  # (n, 3)
    scales = boxes[:, None, 3:6]  # (n, 1, 3)
    corners = (_UNIT[None] * scales) @ to_camera.T + offsets[:, None]  # (n, 8, 3)
    centres = (_FACE_CENTRES[None] * scales) @ to_camera.T + offsets[:, None]  # (n, 5, 3)
    towards = (centres * (_FACE_NORMALS @ to_camera.T)[None]).sum(axis=2) < 0
    shades = 0.62 + 0.38 * np.maximum(_FACE_NORMALS @ (turn.T @ KEY_LIGHT), 0.0)
    safe = np.maximum(corners[..., 2:], NEAR_M)
    points = fixed(camera.focal_px * corners[..., :2] / safe + (camera.width / 2, camera.height / 2))
    near = corners[..., 2].min(axis=1) < NEAR_M
    for box in np.argsort(-offsets[:, 2]):
        if near[box]:
            continue
        for face in np.flatnonzero(towards[box]):
            face_colour = top if (face == 0 and top is not None) else colours[box]
            cv2.fillConvexPoly(image, points[box, _FACE_INDEX[face]], lit(face_colour, light, float(shades[face])),
                               cv2.LINE_AA, SHIFT)


def draw_pole(image: Image, camera: PoleCamera, base: tuple[float, float, float], top: tuple[float, float, float],
              radius_m: float, colour: Colour, light: Light) -> None:
    """A thin cylinder between two world points, as a line as thick as it looks where it stands."""
    xy, depth = camera.project(np.array([base, top]))
    if (depth < NEAR_M).any():
        return
    thickness = max(1, round(2 * radius_m * camera.focal_px / float(depth.mean())))
    cv2.line(image, tuple(fixed(xy[0])), tuple(fixed(xy[1])), lit(colour, light), thickness, cv2.LINE_AA, SHIFT)


def draw_ground_patch(image: Image, camera: PoleCamera, points: Floats, colour: Colour, light: Light) -> None:
    """A flat polygon lying on the ground (world (x, y) vertices in order)."""
    xyz = np.column_stack([points, np.zeros(len(points))])
    xy, depth = camera.project(xyz)
    if (depth < NEAR_M).any():
        return
    cv2.fillPoly(image, [fixed(xy)], lit(colour, light), cv2.LINE_AA, SHIFT)


def draw_mound(image: Image, camera: PoleCamera, x: float, y: float, radius_x: float, radius_y: float,
               height: float, colour: Colour, light: Light) -> None:
    """A pile of sand or gravel: an elliptic base rising to a rounded top, darker on its shaded flank."""
    angles = np.linspace(0, 2 * math.pi, 20, endpoint=False)
    layers = ((1.0, 0.0, 0.8), (0.7, 0.55, 0.95), (0.35, 0.88, 1.08))
    for scale, rise, shade in layers:
        ring = np.column_stack([x + radius_x * scale * np.cos(angles), y + radius_y * scale * np.sin(angles),
                                np.full(angles.size, height * rise)])
        xy, depth = camera.project(ring)
        if (depth < NEAR_M).any():
            return
        hull = cv2.convexHull(fixed(xy))
        cv2.fillConvexPoly(image, hull, lit(colour, light, shade), cv2.LINE_AA, SHIFT)


def shadow_outline(footprint: Floats, height: float, sun: tuple[float, float]) -> Floats:
    """The ground outline (world (x, y)) of the shadow of an upright prism with this footprint."""
    tips = footprint + height * np.asarray(sun)
    points = np.vstack([footprint, tips]).astype(np.float32)
    return cv2.convexHull(points).reshape(-1, 2).astype(np.float64)


def clip_in_front(camera: PoleCamera, points: Floats, near_m: float = 1.0) -> Floats:
    """A ground polygon cut to the part at least `near_m` in front of the lens (Sutherland-Hodgman, one plane)."""
    forward = camera.rotation[2]

    def depth(p: Floats) -> float:
        return float(p[0] * forward[0] + p[1] * forward[1] - camera.mount_m * forward[2]) - near_m

    out: list[Floats] = []
    count = len(points)
    for index in range(count):
        current, following = points[index], points[(index + 1) % count]
        d0, d1 = depth(current), depth(following)
        if d0 >= 0:
            out.append(current)
        if (d0 >= 0) != (d1 >= 0):
            out.append(current + (following - current) * (d0 / (d0 - d1)))
    return np.array(out) if out else np.zeros((0, 2))


def _masked(image: Image, polygon: Floats) -> tuple[Image, npt.NDArray[np.uint8]] | None:
    """The image's bounding box of a polygon (a view) and the polygon's mask in it; None if off the image."""
    if len(polygon) < 3:
        return None
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 1
    height, width = image.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    roi = image[y0:y1, x0:x1]
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(mask, [fixed(polygon - (x0, y0))], 255, cv2.LINE_AA, SHIFT)
    return roi, mask


def darken(image: Image, polygon: Floats, strength: float) -> None:
    """Take `strength` of the light from an image polygon (a shadow), in place."""
    masked = _masked(image, polygon)
    if masked is not None:
        roi, mask = masked
        cv2.copyTo(cv2.convertScaleAbs(roi, alpha=1.0 - strength), mask, roi)


def brighten(image: Image, polygon: Floats, level: int) -> None:
    """Add `level` to every channel inside an image polygon (a beam of light), in place."""
    masked = _masked(image, polygon)
    if masked is not None:
        roi, mask = masked
        cv2.add(roi, (level, level, level, 0), dst=roi, mask=mask)


def ground_to_image(camera: PoleCamera, points: Floats) -> Floats | None:
    """Image vertices of a ground polygon, cut to what lies in front of the lens; None if nothing does."""
    front = clip_in_front(camera, np.asarray(points, dtype=np.float64))
    if len(front) < 3:
        return None
    xy, _ = camera.project(np.column_stack([front, np.zeros(len(front))]))
    return xy
