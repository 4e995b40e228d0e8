"""Camera zones as the simulator uses them: defaults per scene, and how far a point lies from them."""

from __future__ import annotations

import cv2
import numpy as np

from domain.registry import Zone, ZoneKind
from simulators.cameras.spec import SceneKind

VENDING_KINDS = frozenset({ZoneKind.NO_VENDING, ZoneKind.SHOPFRONT})
DUST_DWELL_S = 30.0  # dust above its baseline for 30 s makes a 0302 case


def default_zones(kind: SceneKind, width: int = 640, height: int = 360) -> tuple[Zone, ...]:
    """Zones for a scene whose camera YAML names none; they leave room outside them for distractors."""

    def poly(*points: tuple[float, float]) -> tuple[tuple[float, float], ...]:
        return tuple((round(x * width), round(y * height)) for x, y in points)

    if kind is SceneKind.STREET:
        return (
            Zone("no-vending", ZoneKind.NO_VENDING, poly((0.03, 0.66), (0.55, 0.66), (0.55, 0.97), (0.03, 0.97)), 60.0),
            Zone("shopfront", ZoneKind.SHOPFRONT, poly((0.6, 0.6), (0.97, 0.6), (0.97, 0.97), (0.6, 0.97)), 60.0),
        )
    return (Zone("site", ZoneKind.CONSTRUCTION, poly((0.2, 0.35), (0.8, 0.35), (0.85, 0.92), (0.15, 0.92)),
                 DUST_DWELL_S),)


def signed_distance(zone: Zone, x: float, y: float) -> float:
    """Distance in pixels from (x, y) to the zone's edge: positive inside, negative outside."""
    contour = np.asarray(zone.polygon, dtype=np.float32).reshape(-1, 1, 2)
    return float(cv2.pointPolygonTest(contour, (float(x), float(y)), True))


def clear_of(zones: tuple[Zone, ...], x: float, y: float, margin_px: float) -> bool:
    """Whether (x, y) lies at least `margin_px` outside every one of these zones."""
    return all(signed_distance(zone, x, y) <= -margin_px for zone in zones)
