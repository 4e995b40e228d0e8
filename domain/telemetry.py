"""Normalised telemetry as it travels on `gridhub.telemetry`: per-cell batches, packed per partition.

Every grid cell has one partition (Kafka's default partitioner on the cell code, `core.kafka.partition_of`).
The gateway packs what the cells of one partition sent within a short window into one Kafka record: one
`TelemetryBatch` per cell. Records carry many readings at high rates however many cells a city has, which is
what lets a stream worker keep up (per-record costs in the consumer and Faust dwarf the rules' per-reading
cost). Stream processors and the telemetry store read the same records. Times are epoch milliseconds (UTC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

from domain import wire
from domain.registry import DeviceKind

FORMAT_VERSION: Final = 2

#: Measured quantities by device kind (units in the names). `battery_v` is optional for all.
MEASUREMENTS: Mapping[DeviceKind, tuple[str, ...]] = {
    DeviceKind.RAIN: ("rain_mm",),
    DeviceKind.CROWD: ("count",),
    DeviceKind.MANHOLE: ("tilt_deg", "cover_open", "water_level_cm"),
}


class TelemetryFormatError(ValueError):
    """A record on the telemetry topic that does not decode to a batch."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated, enriched device report."""

    device_id: str
    kind: DeviceKind
    grid_code: str
    ts_ms: int  # when the device measured it
    received_ms: int  # when the gateway received it
    seq: int
    values: Mapping[str, float | bool]
    late: bool = False  # older than the on-time window (buffered through an outage, say)
    component_id: str | None = None
    well_depth_cm: float | None = None
    zone_area_m2: float | None = None

    @property
    def ts(self) -> datetime:
        """Measurement time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts_ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A device announcing itself online or offline (retained status, or the broker's last will).

    `replayed` marks the broker's copy of a retained status, sent when the gateway subscribes: it says what the
    device last announced, not that it announced anything now, and `ts_ms` is only when the gateway got it.
    """

    device_id: str
    kind: DeviceKind
    grid_code: str
    ts_ms: int
    online: bool
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """Everything one grid cell reported in one short window."""

    grid_code: str
    readings: tuple[Reading, ...] = ()
    statuses: tuple[StatusChange, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.readings) + len(self.statuses)


class _ReadingDoc(msgspec.Struct, frozen=True):
    device_id: str
    kind: DeviceKind
    ts_ms: int
    received_ms: int
    seq: int
    values: dict[str, bool | int | float]
    late: bool
    component_id: str | None
    well_depth_cm: float | None
    zone_area_m2: float | None


class _StatusDoc(msgspec.Struct, frozen=True):
    device_id: str
    kind: DeviceKind
    ts_ms: int
    online: bool
    replayed: bool = False  # records written before `replayed` existed have none


class _CellDoc(msgspec.Struct, frozen=True):
    grid_code: str  # once per cell: the readings and statuses in it leave it out
    readings: list[_ReadingDoc]
    statuses: list[_StatusDoc]


class _Record(msgspec.Struct, frozen=True):
    v: Literal[2]
    cells: list[_CellDoc]


_DECODER = msgspec.json.Decoder(_Record)


def encode_record(batches: Sequence[TelemetryBatch]) -> bytes:
    """One record's worth of cell batches as compact JSON bytes."""
    return msgspec.json.encode(_Record(FORMAT_VERSION, [_cell_doc(batch) for batch in batches]))


def decode_record(data: bytes) -> tuple[TelemetryBatch, ...]:
    """Parse a record written by `encode_record`; raise TelemetryFormatError on anything else."""
    record = wire.decode(_DECODER, data, TelemetryFormatError, "telemetry", FORMAT_VERSION)
    return tuple(_batch(cell) for cell in record.cells)


def _cell_doc(batch: TelemetryBatch) -> _CellDoc:
    return _CellDoc(
        batch.grid_code,
        [_ReadingDoc(r.device_id, r.kind, r.ts_ms, r.received_ms, r.seq, dict(r.values), r.late, r.component_id,
                     r.well_depth_cm, r.zone_area_m2) for r in batch.readings],
        [_StatusDoc(s.device_id, s.kind, s.ts_ms, s.online, s.replayed) for s in batch.statuses],
    )


def _batch(cell: _CellDoc) -> TelemetryBatch:
    code = cell.grid_code
    readings = tuple(  # positional arguments: this runs once per reading on every consumer's hot path
        Reading(r.device_id, r.kind, code, r.ts_ms, r.received_ms, r.seq, r.values, r.late, r.component_id,
                r.well_depth_cm, r.zone_area_m2)
        for r in cell.readings
    )
    statuses = tuple(StatusChange(s.device_id, s.kind, code, s.ts_ms, s.online, s.replayed) for s in cell.statuses)
    return TelemetryBatch(code, readings, statuses)
