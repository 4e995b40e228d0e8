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
from typing import Any

import orjson

from domain.registry import DeviceKind

FORMAT_VERSION = 2

#: Measured quantities by device kind, with their units (DESIGN.md §4). `battery_v` is optional for all.
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


def encode_record(batches: Sequence[TelemetryBatch]) -> bytes:
    """One record's worth of cell batches as compact JSON bytes."""
    return orjson.dumps({"v": FORMAT_VERSION, "cells": [_batch_doc(batch) for batch in batches]})


def decode_record(data: bytes) -> tuple[TelemetryBatch, ...]:
    """Parse a record written by `encode_record`; raise TelemetryFormatError on anything else."""
    try:
        doc: Any = orjson.loads(data)
        if doc.get("v") != FORMAT_VERSION:
            raise TelemetryFormatError(f"unsupported telemetry format version {doc.get('v')!r}")
        return tuple(_batch(cell) for cell in doc["cells"])
    except TelemetryFormatError:
        raise
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise TelemetryFormatError(f"not a telemetry record: {exc!r}") from None


def _batch_doc(batch: TelemetryBatch) -> dict[str, Any]:
    return {
        "grid_code": batch.grid_code,
        "readings": [
            {
                "device_id": r.device_id, "kind": r.kind.value, "ts_ms": r.ts_ms, "received_ms": r.received_ms,
                "seq": r.seq, "values": dict(r.values), "late": r.late, "component_id": r.component_id,
                "well_depth_cm": r.well_depth_cm, "zone_area_m2": r.zone_area_m2,
            }
            for r in batch.readings
        ],
        "statuses": [
            {"device_id": s.device_id, "kind": s.kind.value, "ts_ms": s.ts_ms, "online": s.online,
             "replayed": s.replayed}
            for s in batch.statuses
        ],
    }


def _batch(doc: Any) -> TelemetryBatch:
    grid_code = str(doc["grid_code"])
    readings = tuple(  # positional arguments: this runs once per reading on every consumer's hot path
        Reading(r["device_id"], DeviceKind(r["kind"]), grid_code, int(r["ts_ms"]), int(r["received_ms"]),
                int(r["seq"]), r["values"], bool(r["late"]), r["component_id"], r["well_depth_cm"],
                r["zone_area_m2"])
        for r in doc["readings"]
    )
    statuses = tuple(
        StatusChange(s["device_id"], DeviceKind(s["kind"]), grid_code, int(s["ts_ms"]), bool(s["online"]),
                     bool(s.get("replayed", False)))  # records written before `replayed` existed have none
        for s in doc["statuses"]
    )
    return TelemetryBatch(grid_code, readings, statuses)
