"""Camera zones in both coordinate systems: source pixels (the YAML, the boxes) and working pixels (the masks)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from domain.registry import Zone, ZoneKind

STALL_ZONES = frozenset({ZoneKind.NO_VENDING, ZoneKind.SHOPFRONT})


@dataclass(frozen=True)
class ZoneArea:
    """A zone with its polygon in source pixels and its mask at the working resolution."""

    zone: Zone
    polygon: npt.NDArray[np.float32]  # source pixels, for the bottom-centre test
    mask: npt.NDArray[np.bool_]  # working pixels

    @classmethod
    def of(cls, zone: Zone, work_shape: tuple[int, int], scale: float) -> ZoneArea:
        """The zone on a working image of `work_shape` (rows, columns) that is `scale` × the source."""
        polygon = np.array(zone.polygon, np.float32)
        mask = np.zeros(work_shape, np.uint8)
        cv2.fillPoly(mask, [np.round(polygon * scale).astype(np.int32)], 1)
        return cls(zone, polygon, mask.view(np.bool_))

    def contains(self, x: float, y: float) -> bool:
        """Whether a point in source pixels lies in the zone (its edge included)."""
        return cv2.pointPolygonTest(self.polygon, (float(x), float(y)), False) >= 0
