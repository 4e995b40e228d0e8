"""Manhole covers: open or tilted covers, water within the margin of the cover, and what the water means."""

from __future__ import annotations

import pytest

from streams.rules.manhole import ManholeThresholds, cover_displaced, water_category, water_near_cover

LIMITS = ManholeThresholds(tilt_deg=15.0, water_margin_cm=30.0)


def test_an_open_cover_is_displaced() -> None:
    assert cover_displaced({"cover_open": True, "tilt_deg": 0.0}, LIMITS) == "cover open"


def test_a_closed_level_cover_is_not_displaced() -> None:
    assert cover_displaced({"cover_open": False, "tilt_deg": 2.0}, LIMITS) is None
    assert cover_displaced({}, LIMITS) is None


def test_a_cover_tilted_to_the_threshold_is_displaced() -> None:
    assert cover_displaced({"cover_open": False, "tilt_deg": 15.0}, LIMITS) == "cover tilted 15°"
    assert cover_displaced({"tilt_deg": 22.5}, LIMITS) == "cover tilted 22.5°"


def test_a_cover_tilted_just_under_the_threshold_is_not_displaced() -> None:
    assert cover_displaced({"tilt_deg": 14.9}, LIMITS) is None


def test_cover_open_must_be_the_boolean_true() -> None:
    assert cover_displaced({"cover_open": 1}, LIMITS) is None
    assert cover_displaced({"cover_open": 1.0}, LIMITS) is None


def test_a_boolean_tilt_is_not_a_number() -> None:
    assert cover_displaced({"tilt_deg": True}, LIMITS) is None


@pytest.mark.parametrize(("level_cm", "gap_cm"), [(90.0, 30.0), (100.0, 20.0), (120.0, 0.0), (130.0, -10.0)])
def test_water_within_the_margin_of_the_cover_is_near_it(level_cm: float, gap_cm: float) -> None:
    assert water_near_cover({"water_level_cm": level_cm}, 120.0, LIMITS) == gap_cm


def test_water_just_below_the_margin_is_not_near_the_cover() -> None:
    assert water_near_cover({"water_level_cm": 89.9}, 120.0, LIMITS) is None


def test_water_of_a_well_of_unknown_depth_is_never_near_the_cover() -> None:
    assert water_near_cover({"water_level_cm": 119.0}, None, LIMITS) is None


def test_a_missing_or_boolean_water_level_is_not_a_level() -> None:
    assert water_near_cover({"tilt_deg": 3.0}, 120.0, LIMITS) is None
    assert water_near_cover({"water_level_cm": True}, 1.0, LIMITS) is None


def test_water_near_the_cover_is_waterlogging_with_rain_and_a_blocked_sewer_without() -> None:
    assert water_category(rained_recently=True) == "0406"
    assert water_category(rained_recently=False) == "0404"
