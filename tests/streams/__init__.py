"""Builders shared by the stream tests: the demo city's engine, readings of its devices, fixed moments.

Most scenarios play in cell 310104003001007 of the demo city, which holds a rain gauge (rain-0004, every
60 s), a crowd counter (crowd-0029, 150 m², every 30 s) and two manhole sensors: manhole-0007 on the
rain-water cover 3101040103000007 (0103, well 120 cm deep, every 120 s, battery floor 3.3 V) and
manhole-0080 on the fresh-water cover 3101040101000080 (0101).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.city import load_city
from core.settings import Settings
from domain.cases import Case
from domain.detections import Detection, DetectionKind, Phase
from domain.registry import ZoneKind
from domain.telemetry import Reading, StatusChange, TelemetryBatch
from streams.engine import CaseEngine, Change, limits_from

SETTINGS = Settings()
CITY = load_city(SETTINGS)
SHANGHAI = ZoneInfo("Asia/Shanghai")

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

CELL = "310104003001007"
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SHANGHAI)  # a Tuesday, an ordinary working day, in working hours


def ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)


T0_MS = ms(T0)


def new_engine(load_cell: Callable[[str], dict[str, Any] | None] = lambda _code: None,
               load_case: Callable[[str], Case | None] = lambda _id: None, **streams: Any) -> CaseEngine:
    """An engine built the way the worker builds it, from the demo city and the (overridden) streams settings."""
    settings = SETTINGS.streams.model_copy(update=streams)
    return CaseEngine(limits=limits_from(settings), routing=CITY.routing, calendar=CITY.calendar,
                      devices=CITY.registry.devices, load_cell=load_cell, load_case=load_case)


def reading(device_id: str, ts_ms: int, received_ms: int | None = None, **values: float | bool) -> Reading:
    """A reading of a registered device, enriched from the registry as the gateway does."""
    device = CITY.registry.devices[device_id]
    return Reading(device_id, device.kind, device.grid_code, ts_ms, ts_ms if received_ms is None else received_ms,
                   seq=0, values=values, component_id=str(device.component_id) if device.component_id else None,
                   well_depth_cm=device.well_depth_cm, zone_area_m2=device.zone_area_m2)


def rain(ts_ms: int, mm: float, *, received_ms: int | None = None, device_id: str = "rain-0004") -> Reading:
    """A rain gauge's millimetres since its previous report."""
    return reading(device_id, ts_ms, received_ms, rain_mm=mm)


def crowd(ts_ms: int, count: float, *, received_ms: int | None = None) -> Reading:
    """A count of crowd-0029 (150 m²: 300 people are 2 persons/m², 600 are 4)."""
    return reading("crowd-0029", ts_ms, received_ms, count=count)


def manhole(ts_ms: int, *, received_ms: int | None = None, device_id: str = "manhole-0007",
            **values: float | bool) -> Reading:
    """A manhole sensor's report (manhole-0007: cover 0103, well 120 cm deep)."""
    return reading(device_id, ts_ms, received_ms, **values)


def last_will(device_id: str, ts_ms: int) -> StatusChange:
    """The broker announcing a device offline (its MQTT last will)."""
    device = CITY.registry.devices[device_id]
    return StatusChange(device_id, device.kind, device.grid_code, ts_ms, online=False)


def feed(engine: CaseEngine, *readings: Reading, statuses: tuple[StatusChange, ...] = ()) -> list[Change]:
    """Deliver readings (and statuses) of cell CELL as one batch."""
    return engine.apply_telemetry(TelemetryBatch(CELL, tuple(readings), statuses))


def feed_each(engine: CaseEngine, readings: list[Reading]) -> list[Change]:
    """Deliver each reading in a batch of its own, in the given order."""
    return [change for r in readings for change in engine.apply_telemetry(TelemetryBatch(r.grid_code, (r,)))]


def steps(changes: list[Change]) -> list[tuple[str, str]]:
    """(case id, action) of each change, in order."""
    return [(change.case.id, change.event.action.value) for change in changes]


def actions(changes: list[Change]) -> list[str]:
    """The action of each change, in order."""
    return [change.event.action.value for change in changes]


def open_cases(engine: CaseEngine, grid_code: str = CELL) -> list[Case]:
    """The open cases of a cell, by correlation key."""
    return [case for _key, case in sorted(engine.cells[grid_code].cases.items())] if grid_code in engine.cells else []


STALL_CAMERA = ("cam-tianping-01", "sidewalk-north", ZoneKind.NO_VENDING, "310104003001002")
SHOPFRONT_CAMERA = ("cam-hunan-02", "shopfront-east", ZoneKind.SHOPFRONT, "310104004001007")
DUST_CAMERA = ("cam-xujiahui-site-03", "site-a", ZoneKind.CONSTRUCTION, "310104014001005")


def detection(phase: Phase, at_ms: int, confidence: float, *, camera: tuple[str, str, ZoneKind, str] = STALL_CAMERA,
              event_id: str = "evt-1", start_ms: int | None = None) -> Detection:
    """One phase of a camera detection in one of the demo city's camera zones."""
    camera_id, zone_id, zone_kind, grid_code = camera
    kind = DetectionKind.DUST if zone_kind is ZoneKind.CONSTRUCTION else DetectionKind.STALL
    return Detection(event_id, phase, camera_id, zone_id, zone_kind, kind, grid_code,
                     at_ms if start_ms is None else start_ms, at_ms, confidence, (10, 20, 30, 40),
                     f"evidence/{camera_id}/{event_id}-{phase.value}.jpg")
