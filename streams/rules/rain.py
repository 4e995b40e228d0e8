"""Rainstorm signals per grid cell (暴雨预警信号, China Meteorological Administration) from its gauges.

A cell's rainfall over a window is the mean, over the gauges that reported in the last 12 h, of each
gauge's total in the window: a gauge that went silent does not drag the mean to zero, and a dry gauge
that keeps reporting does count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from domain.cases import Severity
from streams.rules.series import Series

HOUR_MS = 3_600_000
LONGEST_WINDOW_MS = 12 * HOUR_MS


class RainColour(IntEnum):
    """Rain signals in rising order; a case's severity follows the highest one reached."""

    NONE = 0
    SHORT_HEAVY = 1  # 短时强降水
    BLUE = 2
    YELLOW = 3
    ORANGE = 4
    RED = 5

    @property
    def severity(self) -> Severity:
        """The severity a case carries."""
        return Severity.SHORT_HEAVY_RAIN if self is RainColour.SHORT_HEAVY else Severity(self.name.lower())


@dataclass(frozen=True, slots=True)
class RainThresholds:
    """Amounts in mm that raise each signal (defaults in `StreamsSettings`)."""

    short_heavy_1h: float
    blue_12h: float
    yellow_6h: float
    orange_3h: float
    red_3h: float


@dataclass(frozen=True, slots=True)
class RainfallWindow:
    """A cell's mean rainfall over the windows ending at `at_ms`."""

    at_ms: int
    gauges: int
    mm_1h: float
    mm_3h: float
    mm_6h: float
    mm_12h: float


def rainfall_at(gauges: Iterable[Series], at_ms: int) -> RainfallWindow:
    """Mean rainfall of the cell's reporting gauges over 1, 3, 6 and 12 h ending at `at_ms`."""
    reporting = [g for g in gauges if g.any_within(at_ms - LONGEST_WINDOW_MS, at_ms)]
    if not reporting:
        return RainfallWindow(at_ms, 0, 0.0, 0.0, 0.0, 0.0)
    n = len(reporting)

    def mean(hours: int) -> float:
        return sum(g.total(at_ms - hours * HOUR_MS, at_ms) for g in reporting) / n

    return RainfallWindow(at_ms, n, mean(1), mean(3), mean(6), mean(12))


def rain_colour(window: RainfallWindow, limits: RainThresholds) -> RainColour:
    """The highest signal the windows reach."""
    if window.mm_3h >= limits.red_3h:
        return RainColour.RED
    if window.mm_3h >= limits.orange_3h:
        return RainColour.ORANGE
    if window.mm_6h >= limits.yellow_6h:
        return RainColour.YELLOW
    if window.mm_12h >= limits.blue_12h:
        return RainColour.BLUE
    if window.mm_1h >= limits.short_heavy_1h:
        return RainColour.SHORT_HEAVY
    return RainColour.NONE


def rained_within(gauges: Iterable[Series], after: int, until: int) -> bool:
    """True when any gauge measured rain (> 0 mm) with `after` < ts ≤ `until`."""
    return any(g.total(after, until) > 0 for g in gauges)
