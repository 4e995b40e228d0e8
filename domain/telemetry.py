"""Normalised telemetry as it travels on `gridhub.telemetry`: one record per grid cell batch.

The gateway packs the readings and status changes of one grid cell that arrive within a short window
into one Kafka record keyed by the cell code. Stream processors and the telemetry store read the
same records; a batch of one is the common case at low rates. Times are epoch milliseconds (UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from domain.registry import DeviceKind

FORMAT_VERSION = 1

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
    """A device announcing itself online or offline (retained status, or the broker's last will)."""

    device_id: str
    kind: DeviceKind
    grid_code: str
    ts_ms: int
    online: bool


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """Everything one grid cell reported in one short window."""

    grid_code: str
    readings: tuple[Reading, ...] = ()
    statuses: tuple[StatusChange, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.readings) + len(self.statuses)


def encode_batch(batch: TelemetryBatch) -> bytes:
    """The batch as compact JSON bytes."""
    return orjson.dumps({
        "v": FORMAT_VERSION,
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
            {"device_id": s.device_id, "kind": s.kind.value, "ts_ms": s.ts_ms, "online": s.online}
            for s in batch.statuses
        ],
    })


def decode_batch(data: bytes) -> TelemetryBatch:
    """Parse a record written by `encode_batch`; raise TelemetryFormatError on anything else."""
    try:
        doc: Any = orjson.loads(data)
        if doc.get("v") != FORMAT_VERSION:
            raise TelemetryFormatError(f"unsupported telemetry format version {doc.get('v')!r}")
        grid_code = str(doc["grid_code"])
        readings = tuple(
            Reading(
                device_id=r["device_id"], kind=DeviceKind(r["kind"]), grid_code=grid_code, ts_ms=int(r["ts_ms"]),
                received_ms=int(r["received_ms"]), seq=int(r["seq"]), values=r["values"], late=bool(r["late"]),
                component_id=r["component_id"], well_depth_cm=r["well_depth_cm"], zone_area_m2=r["zone_area_m2"],
            )
            for r in doc["readings"]
        )
        statuses = tuple(
            StatusChange(s["device_id"], DeviceKind(s["kind"]), grid_code, int(s["ts_ms"]), bool(s["online"]))
            for s in doc["statuses"]
        )
    except TelemetryFormatError:
        raise
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise TelemetryFormatError(f"not a telemetry batch: {exc!r}") from None
    return TelemetryBatch(grid_code, readings, statuses)
