"""Validation of device messages: topic, size, encoding, one pydantic model per kind, time windows.

`Validator.check()` turns any bytes on any topic into exactly one outcome: a `Reading`, a
`StatusChange`, or a `Rejection` with a reason code. It never raises and does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError

from core.settings import GatewaySettings
from domain.registry import Device, DeviceKind, Registry
from domain.telemetry import MEASUREMENTS, Reading, StatusChange

TOPIC_ROOT = ("gridhub", "v1")
TELEMETRY, STATUS = "telemetry", "status"


class Reason(StrEnum):
    """Why a message was dead-lettered."""

    TOO_LARGE = "too_large"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_DEVICE = "unknown_device"
    KIND_MISMATCH = "kind_mismatch"  # topic kind differs from the registry's
    DEVICE_MISMATCH = "device_mismatch"  # payload names another device than the topic
    BAD_UTF8 = "bad_utf8"
    BAD_JSON = "bad_json"
    INVALID = "invalid"  # missing fields, wrong types, unknown fields
    OUT_OF_RANGE = "out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE = "future"  # more than the tolerance ahead of the gateway's clock
    TOO_OLD = "too_old"  # older than the lateness window
    BAD_STATUS = "bad_status"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"  # a (device, seq) seen before with another reading


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that will go to the dead-letter topic."""

    reason: Reason
    detail: str
    device_id: str | None = None


# Strict: a JSON number only. Lax floats take `true` as 1.0 and "1.5" as 1.5, which no device means.
Voltage = Annotated[StrictFloat, Field(ge=0, le=24)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ts: datetime | Annotated[StrictFloat, Field(ge=0)]
    seq: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
    battery_v: Voltage | None = None
    device_id: str | None = None


class RainPayload(_Payload):
    """A rain gauge report: rainfall since the previous report."""

    rain_mm: Annotated[StrictFloat, Field(ge=0, le=200)]


class CrowdPayload(_Payload):
    """A crowd counter report: people in the counter's zone."""

    count: Annotated[StrictInt, Field(ge=0, le=1_000_000)]


class ManholePayload(_Payload):
    """A manhole-cover sensor report: cover state and water level above the well bottom."""

    tilt_deg: Annotated[StrictFloat, Field(ge=0, le=180)]
    cover_open: StrictBool
    water_level_cm: Annotated[StrictFloat, Field(ge=0, le=5000)]


MODELS: dict[DeviceKind, type[_Payload]] = {
    DeviceKind.RAIN: RainPayload,
    DeviceKind.CROWD: CrowdPayload,
    DeviceKind.MANHOLE: ManholePayload,
}
_RANGE_ERRORS = frozenset({"greater_than_equal", "less_than_equal", "greater_than", "less_than", "finite_number"})
_NUMBER_ERRORS = frozenset({"float_type", "int_type", "datetime_type"})
#: Street flooding can put water above a cover, but not metres above it.
WATER_ABOVE_COVER_MAX_CM = 100
_STATUS_WORDS = {b"online": True, b"offline": False, b'"online"': True, b'"offline"': False}


@dataclass(frozen=True, slots=True)
class Limits:
    """The gateway's acceptance windows, in the milliseconds the checks compare."""

    max_payload_bytes: int
    future_tolerance_ms: int
    late_after_ms: int
    max_lateness_ms: int

    @classmethod
    def of(cls, gateway: GatewaySettings) -> Limits:
        """The limits the gateway's settings give."""
        return cls(max_payload_bytes=gateway.max_payload_bytes, future_tolerance_ms=gateway.future_tolerance_s * 1000,
                   late_after_ms=gateway.late_after_s * 1000, max_lateness_ms=gateway.max_lateness_s * 1000)


class Validator:
    """Checks messages against the registry and the acceptance windows."""

    def __init__(self, registry: Registry, limits: Limits) -> None:
        self.registry = registry
        self.limits = limits

    def check(self, topic: str, payload: bytes | bytearray, now_ms: int) -> Reading | StatusChange | Rejection:
        """Classify one message; `now_ms` is the gateway's receipt time."""
        parts = topic.split("/")
        if len(parts) != 5 or (parts[0], parts[1]) != TOPIC_ROOT or parts[4] not in (TELEMETRY, STATUS):
            return Rejection(Reason.BAD_TOPIC, f"topic {topic[:200]!r} is not gridhub/v1/KIND/DEVICE/telemetry|status")
        kind_name, device_id = parts[2], parts[3]
        device = self.registry.devices.get(device_id)
        if device is None:
            return Rejection(Reason.UNKNOWN_DEVICE, f"device {device_id[:64]!r} is not registered")
        if kind_name != device.kind.value:
            return Rejection(Reason.KIND_MISMATCH,
                             f"topic kind {kind_name[:32]!r} but {device_id} is a {device.kind.value} device",
                             device_id)
        if len(payload) > self.limits.max_payload_bytes:
            return Rejection(Reason.TOO_LARGE,
                             f"{len(payload)} bytes exceeds the limit of {self.limits.max_payload_bytes}", device_id)
        if parts[4] == STATUS:
            return self._status(device, payload, now_ms)
        return self._reading(device, payload, now_ms)

    def _status(self, device: Device, payload: bytes | bytearray, now_ms: int) -> StatusChange | Rejection:
        online = _STATUS_WORDS.get(bytes(payload).strip().lower())
        if online is None:
            return Rejection(Reason.BAD_STATUS, "status payload must be 'online' or 'offline'", device.id)
        return StatusChange(device.id, device.kind, device.grid_code, now_ms, online)

    def _reading(self, device: Device, payload: bytes | bytearray, now_ms: int) -> Reading | Rejection:
        model = MODELS[device.kind]
        try:
            report = model.model_validate_json(payload)
        except ValidationError as exc:
            return _rejection_from(exc, payload, device.id)
        if report.device_id is not None and report.device_id != device.id:
            return Rejection(Reason.DEVICE_MISMATCH,
                             f"payload device_id {report.device_id[:64]!r} on {device.id}'s topic", device.id)
        if isinstance(report.ts, datetime):
            if report.ts.tzinfo is None:
                return Rejection(Reason.BAD_TIMESTAMP, "ts has no UTC offset (RFC 3339 needs one)", device.id)
            ts_ms = int(report.ts.timestamp() * 1000)
        else:
            ts_ms = int(report.ts * 1000)
        age_ms = now_ms - ts_ms
        if age_ms < -self.limits.future_tolerance_ms:
            return Rejection(Reason.FUTURE, f"ts is {-age_ms / 1000:.0f} s in the future", device.id)
        if age_ms > self.limits.max_lateness_ms:
            return Rejection(Reason.TOO_OLD, f"ts is {age_ms / 1000:.0f} s old, beyond the lateness window",
                             device.id)
        if isinstance(report, ManholePayload) and device.well_depth_cm is not None \
                and report.water_level_cm > device.well_depth_cm + WATER_ABOVE_COVER_MAX_CM:
            return Rejection(Reason.OUT_OF_RANGE, f"water_level_cm {report.water_level_cm} is implausible for a "
                             f"{device.well_depth_cm:.0f} cm well", device.id)
        values: dict[str, float | bool] = {name: getattr(report, name) for name in MEASUREMENTS[device.kind]}
        if report.battery_v is not None:
            values["battery_v"] = report.battery_v
        return Reading(
            device_id=device.id, kind=device.kind, grid_code=device.grid_code, ts_ms=ts_ms, received_ms=now_ms,
            seq=report.seq, values=values, late=age_ms > self.limits.late_after_ms,
            component_id=device.component_id.digits if device.component_id else None,
            well_depth_cm=device.well_depth_cm, zone_area_m2=device.zone_area_m2,
        )


def _rejection_from(exc: ValidationError, payload: bytes | bytearray, device_id: str) -> Rejection:
    error: Any = exc.errors(include_url=False)[0]
    kind = error["type"]
    where = ".".join(str(p) for p in error["loc"])
    if kind in _NUMBER_ERRORS and isinstance(error.get("input"), bool):
        field = str(error["loc"][0])
        return Rejection(Reason.INVALID, f"{field}: {str(error['input']).lower()} is a boolean, not a number",
                         device_id)
    if kind == "json_invalid":
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return Rejection(Reason.BAD_UTF8, "payload is not UTF-8", device_id)
        return Rejection(Reason.BAD_JSON, f"payload is not JSON: {error['msg']}", device_id)
    if kind == "model_type":
        return Rejection(Reason.BAD_JSON, "payload must be a JSON object", device_id)
    if kind in _RANGE_ERRORS:
        return Rejection(Reason.OUT_OF_RANGE, f"{where}: {error['msg']}", device_id)
    if where.startswith("ts"):
        return Rejection(Reason.BAD_TIMESTAMP, f"ts: {error['msg']}", device_id)
    return Rejection(Reason.INVALID, f"{where}: {error['msg']}", device_id)
