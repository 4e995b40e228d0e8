"""Telemetry history: a device's or a grid cell's readings aggregated into windows over a time range."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from api.deps import CityDep, DeviceDep, Reader, SettingsDep, TelemetryStoreDep
from domain.epoch import EPOCH
from storage.telemetry.base import SeriesRequest, StoreUnavailable, Window

router = APIRouter(prefix="/api/v1", tags=["telemetry"])

MAX_WINDOWS = 10_000
#: Readings are stamped in epoch milliseconds; the year-9999 end keeps every window start a datetime.
EARLIEST, LATEST = EPOCH, datetime(9999, 1, 1, tzinfo=UTC)
MAX_EVERY_DAYS = 366  # longer windows than a year are not a time series
_DURATION = re.compile(r"(?:\d+[smhd])+")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class WindowOut(BaseModel):
    """One window's aggregates; a quantity is null when no reading in the window had it."""

    start: datetime = Field(description="window start (UTC); the window runs until the next start or `to`")
    readings: int = Field(description="readings in the window")
    rain_mm: float | None = Field(
        None, description="rain total; for a grid cell the mean over its gauges of each gauge's total")
    rain_gauges: int | None = Field(None, description="rain gauges that reported in the window")
    count_mean: float | None = None
    count_max: int | None = None
    water_level_cm_mean: float | None = None
    water_level_cm_max: float | None = None
    tilt_deg_mean: float | None = None
    tilt_deg_max: float | None = None
    cover_open: bool | None = Field(None, description="true if any report in the window had the cover open")
    battery_v_min: float | None = None


class DeviceSeries(BaseModel):
    """A device's telemetry windows."""

    device_id: str
    kind: str
    grid_code: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    every: str = Field(description="the window length, normalised (90m → 1h30m)")
    windows: list[WindowOut]


class GridSeries(BaseModel):
    """A grid cell's telemetry windows, over all of its devices."""

    grid_code: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    every: str = Field(description="the window length, normalised (90m → 1h30m)")
    windows: list[WindowOut]


def _span(
    start: Annotated[datetime | None, Query(
        alias="from", description="range start, RFC 3339 with offset (inclusive); default: one hour before `to`",
    )] = None,
    end: Annotated[datetime | None, Query(
        alias="to", description="range end, RFC 3339 with offset (exclusive); default: now",
    )] = None,
    every: Annotated[str, Query(
        max_length=40,
        description=f"window length from 1s to {MAX_EVERY_DAYS}d: 30s, 5m, 1h, 1d, or combined like 1h30m",
    )] = "1m",
) -> SeriesRequest:
    """The requested range and window length; 422 with the reason when they do not make sense."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"`{name}` needs a UTC offset (RFC 3339), e.g. 2024-06-01T08:00:00+08:00 or ...Z")
        if value is not None and not EARLIEST <= value <= LATEST:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"`{name}` must be between {_iso(EARLIEST)} and {_iso(LATEST)}")
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=1)
    every_ms = parse_duration_ms(every)
    if every_ms is None or not 1000 <= every_ms <= MAX_EVERY_DAYS * _UNIT_MS["d"]:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"`every` must be a duration from 1s to {MAX_EVERY_DAYS}d such as 30s, 5m, 1h or 1d, "
                            f"not {every!r:.40}")
    request = SeriesRequest(_ms(start), _ms(end), every_ms)
    if request.end_ms <= request.start_ms:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "`to` must be after `from`")
    if request.window_count > MAX_WINDOWS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{request.window_count} windows of {every} between `from` and `to`; at most {MAX_WINDOWS} per "
            "request: choose a longer `every` or a shorter range",
        )
    return request


SpanDep = Annotated[SeriesRequest, Depends(_span)]


@router.get("/devices/{device_id}/telemetry")
def device_telemetry(device: DeviceDep, store: TelemetryStoreDep, span: SpanDep) -> DeviceSeries:
    """A device's readings in windows of `every` over [`from`, `to`)."""
    windows = _query(lambda: store.device_series(device.id, span))
    return DeviceSeries(device_id=device.id, kind=device.kind.value, grid_code=device.grid_code,
                        start=_time(span.start_ms), end=_time(span.end_ms), every=format_duration(span.every_ms),
                        windows=windows)


@router.get("/grids/{code}/telemetry")
def grid_telemetry(
    code: str, city: CityDep, caller: Reader, store: TelemetryStoreDep, span: SpanDep
) -> GridSeries:
    """A grid cell's readings, all its devices together, in windows of `every` over [`from`, `to`)."""
    if city.cells.get(code) is None or not caller.covers(code):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown grid cell {code!r:.80}")
    windows = _query(lambda: store.grid_series(code, span))
    return GridSeries(grid_code=code, start=_time(span.start_ms), end=_time(span.end_ms),
                      every=format_duration(span.every_ms), windows=windows)


class RainThresholds(BaseModel):
    """Rolling rain totals that raise a case: 短时强降水 and the CMA rainstorm signals (暴雨预警信号)."""

    short_heavy_1h_mm: float
    blue_12h_mm: float
    yellow_6h_mm: float
    orange_3h_mm: float
    red_3h_mm: float


class ThresholdsOut(BaseModel):
    """The stream worker's alarm levels, as configured: what the console's charts draw their lines at."""

    rain: RainThresholds
    crowd_warning_per_m2: float
    crowd_urgent_per_m2: float
    manhole_water_margin_cm: float = Field(description="alarm when the water is this close below the cover")
    manhole_tilt_deg: float


@router.get("/thresholds")
def thresholds(settings: SettingsDep, _caller: Reader) -> ThresholdsOut:
    """The levels at which readings become cases (`streams.*` settings)."""
    streams = settings.streams
    return ThresholdsOut(
        rain=RainThresholds(short_heavy_1h_mm=streams.rain_short_heavy_1h_mm, blue_12h_mm=streams.rain_blue_12h_mm,
                            yellow_6h_mm=streams.rain_yellow_6h_mm, orange_3h_mm=streams.rain_orange_3h_mm,
                            red_3h_mm=streams.rain_red_3h_mm),
        crowd_warning_per_m2=streams.crowd_warning_per_m2, crowd_urgent_per_m2=streams.crowd_urgent_per_m2,
        manhole_water_margin_cm=streams.manhole_water_margin_cm, manhole_tilt_deg=streams.manhole_tilt_deg)


def parse_duration_ms(text: str) -> int | None:
    """Milliseconds in a duration like 30s, 5m, 1h, 1d or 1h30m; None if it is not one."""
    if not _DURATION.fullmatch(text):
        return None
    return sum(int(n) * _UNIT_MS[unit] for n, unit in _DURATION_PART.findall(text))


def format_duration(ms: int) -> str:
    """A whole-second duration in the form `parse_duration_ms` reads, largest units first (5400000 → 1h30m)."""
    parts = []
    for unit, size in sorted(_UNIT_MS.items(), key=lambda item: -item[1]):
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts)


def _query(run: Callable[[], list[Window]]) -> list[WindowOut]:
    try:
        windows = run()
    except StoreUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"telemetry store unavailable: {exc}") from None
    return [WindowOut(start=_time(w.start_ms), **{k: v for k, v in asdict(w).items() if k != "start_ms"})
            for w in windows]


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _time(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
