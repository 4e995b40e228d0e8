"""Manhole covers (井盖): open or tilted covers, and water rising towards the cover."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from domain.taxonomy import SEWER_BLOCKED, WATERLOGGING


@dataclass(frozen=True, slots=True)
class ManholeThresholds:
    """When a cover counts as displaced, and how close water may come (defaults in `StreamsSettings`)."""

    tilt_deg: float
    water_margin_cm: float


def cover_displaced(values: Mapping[str, float | bool], limits: ManholeThresholds) -> str | None:
    """'cover open' or 'cover tilted N°' when the reading says so, else None."""
    if values.get("cover_open") is True:
        return "cover open"
    tilt = values.get("tilt_deg")
    if isinstance(tilt, int | float) and not isinstance(tilt, bool) and tilt >= limits.tilt_deg:
        return f"cover tilted {tilt:g}°"
    return None


def water_near_cover(values: Mapping[str, float | bool], well_depth_cm: float | None,
                     limits: ManholeThresholds) -> float | None:
    """Centimetres between the water and the cover when within the margin, else None."""
    level = values.get("water_level_cm")
    if well_depth_cm is None or not isinstance(level, int | float) or isinstance(level, bool):
        return None
    gap = well_depth_cm - level
    return gap if gap <= limits.water_margin_cm else None


def water_category(rained_recently: bool) -> str:
    """Water near a cover is waterlogging while it rains, and a blocked sewer when it does not."""
    return WATERLOGGING if rained_recently else SEWER_BLOCKED
