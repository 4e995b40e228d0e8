"""Decoded telemetry becomes store rows, or is refused with a reason instead of failing inside the database."""

from __future__ import annotations

from typing import Any

import pytest

from domain.registry import DeviceKind
from domain.telemetry import Reading, StatusChange, TelemetryFormatError
from storage.telemetry.base import SeriesRequest, reading_row, status_row

GRID = "310104003001001"


def reading(**changes: Any) -> Reading:
    fields: dict[str, Any] = {
        "device_id": "manhole-0001", "kind": DeviceKind.MANHOLE, "grid_code": GRID, "ts_ms": 1_717_200_000_000,
        "received_ms": 1_717_200_000_040, "seq": 12,
        "values": {"tilt_deg": 3, "cover_open": False, "water_level_cm": 41.5, "battery_v": 3.6},
    }
    return Reading(**{**fields, **changes})


def test_quantities_become_typed_columns_with_floats_for_measurements() -> None:
    row = reading_row(reading(values={"tilt_deg": 3, "cover_open": True, "water_level_cm": 41.5, "unknown": 1}))
    assert (row.tilt_deg, row.cover_open, row.water_level_cm, row.rain_mm) == (3.0, True, 41.5, None)
    assert isinstance(row.tilt_deg, float)  # one field type per quantity, whatever the JSON number looked like


def test_a_whole_number_count_is_kept_as_an_integer() -> None:
    assert reading_row(reading(kind=DeviceKind.CROWD, values={"count": 12.0})).count == 12


@pytest.mark.parametrize(("changes", "reason"), [
    ({"values": {"rain_mm": "lots"}}, "rain_mm .* not a finite number"),
    ({"values": {"count": True}}, "count .* not a finite number"),
    ({"values": {"count": 2.5}}, "count .* not a whole number"),
    ({"values": {"tilt_deg": float("inf")}}, "tilt_deg .* not a finite number"),
    ({"values": {"cover_open": 1}}, "cover_open .* not true or false"),
    ({"values": ["rain_mm", 1]}, "not a mapping"),
    ({"device_id": "x" * 65}, "device_id must be a string of 1-64"),
    ({"device_id": 7}, "device_id must be a string"),
    ({"ts_ms": 2**63}, "ts_ms .* out of range"),
    ({"seq": -1}, "seq -1 is out of range"),
])
def test_unstorable_readings_are_refused_with_the_reason(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(TelemetryFormatError, match=reason):
        reading_row(reading(**changes))


def test_status_changes_are_checked_too() -> None:
    assert status_row(StatusChange("rain-0001", DeviceKind.RAIN, GRID, 5, False)).online is False
    with pytest.raises(TelemetryFormatError, match="grid_code"):
        status_row(StatusChange("rain-0001", DeviceKind.RAIN, "", 5, False))


@pytest.mark.parametrize(("span_ms", "every_ms", "windows"), [(60_000, 60_000, 1), (60_001, 60_000, 2),
                                                              (3_600_000, 300_000, 12)])
def test_window_count_includes_a_last_partial_window(span_ms: int, every_ms: int, windows: int) -> None:
    assert SeriesRequest(1000, 1000 + span_ms, every_ms).window_count == windows
