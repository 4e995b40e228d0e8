"""Rainstorm signals per cell: the CMA colours at their thresholds, the mean over reporting gauges, recent rain."""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.rules.rain import (
    RainColour,
    RainfallWindow,
    RainThresholds,
    rain_colour,
    rained_within,
    rainfall_at,
)
from streams.rules.series import Series

HOUR = 3_600_000
NOW = 100 * HOUR
THRESHOLD_NAMES = [f.name for f in fields(RainThresholds)]
DEFAULTS = RainThresholds(short_heavy_1h=20.0, blue_12h=50.0, yellow_6h=50.0, orange_3h=50.0, red_3h=100.0)


def colour_of(*gauges: Series, limits: RainThresholds = DEFAULTS) -> RainColour:
    return rain_colour(rainfall_at(gauges, NOW), limits)


def fell(mm: float, hours_ago: float) -> Series:
    """A gauge that measured `mm` once, `hours_ago` before NOW, and reported nothing else."""
    return Series([(NOW - int(hours_ago * HOUR), mm)])


@pytest.mark.parametrize(("mm", "hours_ago", "colour"), [
    pytest.param(20.0, 0.5, RainColour.SHORT_HEAVY, id="short heavy: 1 h ≥ 20"),
    pytest.param(19.9, 0.5, RainColour.NONE, id="short heavy: just under"),
    pytest.param(50.0, 11.0, RainColour.BLUE, id="blue: 12 h ≥ 50"),
    pytest.param(49.9, 11.0, RainColour.NONE, id="blue: just under"),
    pytest.param(50.0, 5.0, RainColour.YELLOW, id="yellow: 6 h ≥ 50"),
    pytest.param(49.9, 5.0, RainColour.NONE, id="yellow: just under"),
    pytest.param(50.0, 2.0, RainColour.ORANGE, id="orange: 3 h ≥ 50"),
    pytest.param(49.9, 2.0, RainColour.NONE, id="orange: just under"),
    pytest.param(100.0, 2.0, RainColour.RED, id="red: 3 h ≥ 100"),
    pytest.param(99.9, 2.0, RainColour.ORANGE, id="red: just under is orange"),
])
def test_each_colour_starts_at_its_threshold(mm: float, hours_ago: float, colour: RainColour) -> None:
    assert colour_of(fell(mm, hours_ago)) is colour


def test_the_highest_colour_reached_wins() -> None:
    gauge = Series([(NOW - 11 * HOUR, 30.0), (NOW - 5 * HOUR, 30.0), (NOW - HOUR // 2, 25.0)])
    assert colour_of(gauge) is RainColour.YELLOW  # 6 h: 55; 1 h: 25 (short heavy) is lower


def test_rain_at_the_start_of_a_window_is_outside_it() -> None:
    assert colour_of(fell(50.0, 3.0)) is RainColour.YELLOW  # exactly 3 h ago: out of the 3 h window
    assert colour_of(fell(50.0, 12.0)) is RainColour.NONE


def test_each_colour_gives_the_case_severity_of_its_name() -> None:
    assert [c.severity for c in RainColour if c] == ["short_heavy_rain", "blue", "yellow", "orange", "red"]


def test_rainfall_is_the_mean_over_the_gauges() -> None:
    window = rainfall_at([fell(30.0, 0.5), fell(10.0, 0.5)], NOW)
    assert (window.gauges, window.mm_1h, window.mm_12h) == (2, 20.0, 20.0)
    assert rain_colour(window, DEFAULTS) is RainColour.SHORT_HEAVY


def test_a_gauge_silent_for_12_hours_is_not_counted() -> None:
    silent = Series([(NOW - 13 * HOUR, 0.0)])
    window = rainfall_at([fell(20.0, 0.5), silent], NOW)
    assert (window.gauges, window.mm_1h) == (1, 20.0)


def test_a_dry_gauge_that_keeps_reporting_is_counted() -> None:
    dry = Series([(NOW - HOUR // 2, 0.0)])
    window = rainfall_at([fell(20.0, 0.5), dry], NOW)
    assert (window.gauges, window.mm_1h) == (2, 10.0)
    assert rain_colour(window, DEFAULTS) is RainColour.NONE


def test_a_cell_without_reporting_gauges_has_no_rain() -> None:
    assert rainfall_at([], NOW) == RainfallWindow(NOW, 0, 0.0, 0.0, 0.0, 0.0)


def test_rained_within_needs_rain_after_the_start_and_until_the_end() -> None:
    gauges = [Series([(1000, 0.0), (2000, 0.5)]), Series([(3000, 0.0)])]
    assert rained_within(gauges, 1999, 2000)
    assert not rained_within(gauges, 2000, 5000)  # only dry reports after 2000
    assert not rained_within(gauges, 0, 1999)
    assert not rained_within([], 0, 5000)


def test_a_hundred_tips_of_0_2_mm_in_an_hour_are_short_heavy_rain() -> None:
    gauge = Series([(NOW - HOUR + 30_000 * (i + 1), 0.2) for i in range(100)])
    assert colour_of(gauge) is RainColour.SHORT_HEAVY


amounts = st.lists(st.tuples(st.integers(0, 13 * HOUR // 60_000), st.floats(0, 60)), min_size=1, max_size=12)
thresholds = st.tuples(st.floats(1, 200), st.floats(1, 200), st.floats(1, 200), st.floats(1, 200),
                       st.floats(1, 200)).map(lambda t: RainThresholds(*t))


def gauge_of(samples: list[tuple[int, float]]) -> Series:
    return Series([(NOW - minutes_ago * 60_000, mm) for minutes_ago, mm in samples])


@settings(max_examples=200, deadline=None)
@given(samples=amounts, more=st.lists(st.floats(0, 60), min_size=12, max_size=12), limits=thresholds)
def test_more_rain_never_lowers_the_colour(samples: list[tuple[int, float]], more: list[float],
                                           limits: RainThresholds) -> None:
    wetter = [(minutes_ago, mm + extra) for (minutes_ago, mm), extra in zip(samples, more, strict=False)]
    assert colour_of(gauge_of(wetter), Series([(NOW, 0.0)]), limits=limits) >= colour_of(
        gauge_of(samples), Series([(NOW, 0.0)]), limits=limits)


@settings(max_examples=200, deadline=None)
@given(samples=amounts, limits=thresholds, which=st.sampled_from(THRESHOLD_NAMES),
       raise_by=st.floats(0, 100))
def test_raising_a_threshold_never_raises_the_colour(samples: list[tuple[int, float]], limits: RainThresholds,
                                                     which: str, raise_by: float) -> None:
    stricter = RainThresholds(**{name: getattr(limits, name) + (raise_by if name == which else 0.0)
                                 for name in THRESHOLD_NAMES})
    assert colour_of(gauge_of(samples), limits=stricter) <= colour_of(gauge_of(samples), limits=limits)
