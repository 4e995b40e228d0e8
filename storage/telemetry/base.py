"""What the telemetry store keeps, how it is asked for series, and the interface its backends implement."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from domain.registry import DeviceKind
from domain.telemetry import Reading, StatusChange, TelemetryFormatError

MAX_ID_LENGTH = 64
MAX_GRID_CODE_LENGTH = 32
_INT64_LIMIT = 2**63


class StoreUnavailable(Exception):
    """The store could not take a write or answer a query just now (down, locked, refusing); retry later."""


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """One reading as stored: its identity (device, time, seq), where it came from, and typed values."""

    device_id: str
    ts_ms: int
    seq: int
    grid_code: str
    kind: DeviceKind
    received_ms: int
    late: bool
    rain_mm: float | None = None
    count: int | None = None
    tilt_deg: float | None = None
    cover_open: bool | None = None
    water_level_cm: float | None = None
    battery_v: float | None = None


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One device status change (online / offline) as stored."""

    device_id: str
    ts_ms: int
    online: bool
    grid_code: str
    kind: DeviceKind


@dataclass(frozen=True, slots=True)
class LastHeard:
    """What the store last heard from a device: its newest reading and its newest status change."""

    received_ms: int | None  # when the gateway received the newest reading (by measurement time); None: no reading
    battery_v: float | None  # of the newest reading that reported one
    status_ms: int | None  # time of the newest status change; None: no status
    online: bool | None  # what the newest status change said


@dataclass(frozen=True, slots=True)
class Position:
    """How far the store has written a partition: the next offset, and a fingerprint of the record before it."""

    next_offset: int
    last_record: str


@dataclass
class StoreBatch:
    """Rows to write together with the partition positions they take the consumer group to."""

    group: str
    topic: str
    readings: list[ReadingRow] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    positions: dict[int, Position] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SeriesRequest:
    """A time range [start, end) cut into windows of `every`, all in epoch milliseconds."""

    start_ms: int
    end_ms: int
    every_ms: int

    @property
    def window_count(self) -> int:
        """How many windows the range holds (the last one may be cut short by `end`)."""
        return -(-(self.end_ms - self.start_ms) // self.every_ms)


@dataclass(frozen=True, slots=True)
class Window:
    """Aggregated telemetry of one window. For a grid cell, `rain_mm` is the mean over the cell's gauges of
    each gauge's total in the window (as the rain rule computes it), and `rain_gauges` says how many gauges reported."""

    start_ms: int
    readings: int
    rain_mm: float | None = None
    rain_gauges: int | None = None
    count_mean: float | None = None
    count_max: int | None = None
    water_level_cm_mean: float | None = None
    water_level_cm_max: float | None = None
    tilt_deg_mean: float | None = None
    tilt_deg_max: float | None = None
    cover_open: bool | None = None  # any report in the window said open
    battery_v_min: float | None = None


class TelemetryStore(Protocol):
    """A telemetry store backend. `write` is all or nothing; transient failures raise StoreUnavailable."""

    #: True when the backend keeps partition positions with the rows (then they are authoritative).
    keeps_positions: bool

    def write(self, batch: StoreBatch) -> None:
        """Write the rows (idempotently: rows already there stay as they are) and, if kept, the positions."""

    def positions(self, group: str, topic: str) -> dict[int, Position]:
        """Partition → position stored for the group and topic; empty if the backend keeps none."""

    def latest_statuses(self, device_ids: Collection[str]) -> dict[str, bool]:
        """Device → whether its latest stored status is online; devices with none stored are left out."""

    def last_heard(self, device_ids: Collection[str]) -> dict[str, LastHeard]:
        """Device → its newest reading and status; devices with neither stored are left out."""

    def device_series(self, device_id: str, request: SeriesRequest) -> list[Window]:
        """The device's windows that hold at least one reading, in time order."""

    def grid_series(self, grid_code: str, request: SeriesRequest) -> list[Window]:
        """The grid cell's windows that hold at least one reading, in time order."""

    def close(self) -> None:
        """Release connections."""


def reading_row(reading: Reading) -> ReadingRow:
    """The row for a decoded reading; raise TelemetryFormatError if a field cannot be stored as it is."""
    values = reading.values
    if not isinstance(values, Mapping):
        raise TelemetryFormatError(f"values of {reading.device_id!r} are not a mapping")
    cover_open = values.get("cover_open")
    if cover_open is not None and not isinstance(cover_open, bool):
        raise TelemetryFormatError(f"cover_open of {reading.device_id!r} is not true or false: {cover_open!r}")
    count = _number(values, "count", reading.device_id)
    if count is not None and not count.is_integer():
        raise TelemetryFormatError(f"count of {reading.device_id!r} is not a whole number: {count}")
    return ReadingRow(
        device_id=_text(reading.device_id, "device_id", MAX_ID_LENGTH),
        ts_ms=_int64(reading.ts_ms, "ts_ms"),
        seq=_int64(reading.seq, "seq"),
        grid_code=_text(reading.grid_code, "grid_code", MAX_GRID_CODE_LENGTH),
        kind=reading.kind,
        received_ms=_int64(reading.received_ms, "received_ms"),
        late=reading.late,
        rain_mm=_number(values, "rain_mm", reading.device_id),
        count=None if count is None else int(count),
        tilt_deg=_number(values, "tilt_deg", reading.device_id),
        cover_open=cover_open,
        water_level_cm=_number(values, "water_level_cm", reading.device_id),
        battery_v=_number(values, "battery_v", reading.device_id),
    )


def status_row(status: StatusChange) -> StatusRow:
    """The row for a decoded status change; raise TelemetryFormatError if a field cannot be stored."""
    return StatusRow(
        device_id=_text(status.device_id, "device_id", MAX_ID_LENGTH),
        ts_ms=_int64(status.ts_ms, "ts_ms"),
        online=status.online,
        grid_code=_text(status.grid_code, "grid_code", MAX_GRID_CODE_LENGTH),
        kind=status.kind,
    )


def _text(value: object, name: str, max_length: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise TelemetryFormatError(f"{name} must be a string of 1-{max_length} characters, not {value!r:.80}")
    return value


def _int64(value: int, name: str) -> int:
    if not 0 <= value < _INT64_LIMIT:
        raise TelemetryFormatError(f"{name} {value} is out of range")
    return value


def _number(values: Mapping[str, object], name: str, device_id: str) -> float | None:
    """A quantity as a float (so that InfluxDB sees one field type), None when absent."""
    value = values.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TelemetryFormatError(f"{name} of {device_id!r} is not a finite number: {value!r:.80}")
    return float(value)
