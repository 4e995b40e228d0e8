"""Crowd gathering (人群聚集): density over a threshold, sustained, from one counter's samples."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from streams.rules.series import Series


@dataclass(frozen=True, slots=True)
class CrowdThresholds:
    """Densities in persons/m² and how long they must last (defaults in `StreamsSettings`)."""

    warning_per_m2: float
    urgent_per_m2: float
    sustain_ms: int


def density(count: float, zone_area_m2: float) -> float:
    """Persons per square metre of the counter's zone."""
    return count / zone_area_m2


def sustained_from(series: Series, at_ms: int, threshold: float, max_gap_ms: int, sustain_ms: int) -> int | None:
    """When the run of samples at or over `threshold` containing the sample at `at_ms` had lasted `sustain_ms`.

    A run is broken by a sample under the threshold or by a gap longer than `max_gap_ms` (the counter
    was silent, so nobody knows). Returns the time of the first sample of the run at which it had lasted
    `sustain_ms`, or None when the run is shorter or the sample at `at_ms` is under the threshold.
    """
    ts, values = series.ts, series.values
    k = bisect_left(ts, at_ms)
    if k == len(ts) or ts[k] != at_ms or values[k] < threshold:
        return None
    start = k
    while start > 0 and values[start - 1] >= threshold and ts[start] - ts[start - 1] <= max_gap_ms:
        start -= 1
    end = k
    while end + 1 < len(ts) and values[end + 1] >= threshold and ts[end + 1] - ts[end] <= max_gap_ms:
        end += 1
    if ts[end] - ts[start] < sustain_ms:
        return None
    return ts[bisect_left(ts, ts[start] + sustain_ms, start, end + 1)]
