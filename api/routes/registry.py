"""The registry as the console's map draws it: devices with their health, cameras with their zones and snapshots."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from api.auth import Principal
from api.deps import CityDep, EngineDep, EvidenceDep, GridFilter, Reader, RegistryAdmin, TelemetryStoreDep
from core.settings import Settings
from domain.epoch import EPOCH
from domain.registry import Camera, DeviceKind, ZoneKind
from storage.broker_files import BrokerAuthError, auth_dir, hub_accounts, write_broker_files
from storage.devices import DeviceError, DeviceRecord, get_device, list_devices, set_enabled
from storage.evidence import DirectoryEvidence, camera_folder
from storage.maintenance import open_maintenance_cases
from storage.telemetry.base import LastHeard, StoreUnavailable, TelemetryStore

router = APIRouter(prefix="/api/v1", tags=["registry"])
log = logging.getLogger("gridhub.api.registry")
T = TypeVar("T")

#: Errors that mean "the database cannot answer now" (down, locked, pool exhausted): 503, not a bug.
_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)


class DeviceOut(BaseModel):
    """A registered device, where it is, and how it is doing."""

    id: str
    kind: DeviceKind
    grid_code: str
    lon: float
    lat: float
    enabled: bool = Field(description="false: disabled in the registry, it may not log in to the broker")
    report_interval_s: int
    battery_floor_v: float | None
    component_id: str | None = Field(description="manhole sensors: the cover (部件) they watch")
    well_depth_cm: float | None = Field(description="manhole sensors: cover to well bottom")
    zone_area_m2: float | None = Field(description="crowd counters: the area they count")
    last_seen: datetime | None = Field(
        description="when GridHub last heard from it: its newest reading's receive time or status; null: never")
    online: bool | None = Field(
        description="false if its newest word was going offline (last will) or it has been silent for more than "
                    "streams.offline_after_intervals report intervals; null: never heard")
    battery_v: float | None = Field(description="the newest battery voltage it reported")
    open_maintenance_cases: list[str] = Field(
        description="ids of open 设备离线 (9902) and 设备低电量 (9903) cases about this device")


class DevicePage(BaseModel):
    """Devices in id order."""

    items: list[DeviceOut]


class EnabledOut(BaseModel):
    """What enabling or disabling a device did."""

    id: str
    enabled: bool
    changed: bool = Field(description="false if the device already was so (nothing was written)")
    broker: str = Field(description="how the change reaches the MQTT broker")


class ZoneOut(BaseModel):
    """A camera zone: a polygon in source pixels and the rule that applies in it."""

    id: str
    kind: ZoneKind
    polygon: list[tuple[float, float]] = Field(description="(x, y) in source pixels of the camera's frame")
    dwell_s: float


class CameraOut(BaseModel):
    """A camera, its frame and zones, and where its newest snapshot is."""

    id: str
    grid_code: str
    fps: float = Field(description="frames analysed per second")
    width: int = Field(description="frame width in source pixels, the zones' coordinate space")
    height: int
    zones: list[ZoneOut]
    latest_snapshot_url: str | None = Field(description="the newest evidence snapshot (JPEG); null: none yet")


class CameraPage(BaseModel):
    """Cameras in id order."""

    items: list[CameraOut]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]


@router.get("/devices")
def devices(
    caller: Reader, city: CityDep, engine: EngineDep, store: TelemetryStoreDep, settings: SettingsDep,
    grid: GridFilter,
    kind: Annotated[DeviceKind | None, Query(description="rain, crowd or manhole")] = None,
    enabled: Annotated[bool | None, Query(description="only enabled (true) or disabled (false) devices")] = None,
) -> DevicePage:
    """Registered devices in the caller's scope, with their last reading, status and open maintenance cases."""
    scoped = caller.narrow(grid)
    if scoped is None:
        return DevicePage(items=[])
    records = _registry(lambda: list_devices(engine, kind=kind, grid_prefix=scoped))
    records = [r for r in records if enabled is None or r.enabled == enabled]
    return DevicePage(items=_with_health(records, caller, engine, store, settings))


@router.get("/devices/{device_id}")
def device(
    device_id: str, caller: Reader, engine: EngineDep, store: TelemetryStoreDep, settings: SettingsDep
) -> DeviceOut:
    """One device with its health; 404 if it is not registered or is outside the caller's scope."""
    (out,) = _with_health([_registered(engine, device_id, caller)], caller, engine, store, settings)
    return out


@router.post("/devices/{device_id}/enable")
def enable(device_id: str, caller: RegistryAdmin, engine: EngineDep, settings: SettingsDep) -> EnabledOut:
    """Let a disabled device log in again with the secret it had."""
    return _set_enabled(device_id, True, caller, engine, settings)


@router.post("/devices/{device_id}/disable")
def disable(device_id: str, caller: RegistryAdmin, engine: EngineDep, settings: SettingsDep) -> EnabledOut:
    """Forbid a device to log in; it keeps its record and secret, and its open sessions are ended."""
    return _set_enabled(device_id, False, caller, engine, settings)


@router.get("/cameras")
def cameras(caller: Reader, city: CityDep, evidence: EvidenceDep, grid: GridFilter) -> CameraPage:
    """The city's cameras in the caller's scope, with their zones and newest snapshot."""
    scoped = caller.narrow(grid)
    if scoped is None:
        return CameraPage(items=[])
    in_scope = sorted((c for c in city.registry.cameras.values() if c.grid_code.startswith(scoped)),
                      key=lambda c: c.id)
    return CameraPage(items=[_camera(camera, evidence) for camera in in_scope])


@router.get("/cameras/{camera_id}/snapshot", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "the newest snapshot"}})
def camera_snapshot(camera_id: str, caller: Reader, city: CityDep, evidence: EvidenceDep) -> Response:
    """The camera's newest evidence snapshot as JPEG; 404 if the camera is unknown, out of scope or has none."""
    camera = city.registry.cameras.get(camera_id)
    if camera is None or not caller.covers(camera.grid_code):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown camera {camera_id!r:.80}")
    # The folder comes from the registry's camera, never from the path: nothing the client sends reaches the disk.
    reference = evidence.latest(camera_folder(camera.id))
    image = evidence.read(reference) if reference else None
    if image is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"camera {camera.id} has no snapshot yet")
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


def is_online(heard: LastHeard | None, report_interval_s: int, offline_after_intervals: float,
              now_ms: int) -> bool | None:
    """Online unless its newest word was going offline or it has been silent too long; None if never heard."""
    if heard is None:
        return None
    if heard.online is False and heard.status_ms is not None and heard.status_ms >= (heard.received_ms or 0):
        return False  # its last will (or an offline status) is its newest word
    return now_ms - _last_seen_ms(heard) <= offline_after_intervals * report_interval_s * 1000


def _with_health(records: list[DeviceRecord], caller: Principal, engine: Engine, store: TelemetryStore,
                 settings: Settings) -> list[DeviceOut]:
    """The devices with what the telemetry store last heard from them and their open maintenance cases."""
    if not records:
        return []
    try:
        heard = store.last_heard([r.device.id for r in records])
    except StoreUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"telemetry store unavailable: {exc}") from None
    try:
        maintenance = open_maintenance_cases(engine, caller.scope)
    except _UNAVAILABLE as exc:
        raise _database_down("case database", exc) from None
    now_ms = int(time.time() * 1000)
    factor = settings.streams.offline_after_intervals
    items = []
    for record in records:
        d, last = record.device, heard.get(record.device.id)
        items.append(DeviceOut(
            id=d.id, kind=d.kind, grid_code=d.grid_code, lon=d.lon, lat=d.lat, enabled=record.enabled,
            report_interval_s=d.report_interval_s, battery_floor_v=d.battery_floor_v,
            component_id=d.component_id.digits if d.component_id else None, well_depth_cm=d.well_depth_cm,
            zone_area_m2=d.zone_area_m2,
            last_seen=EPOCH + timedelta(milliseconds=_last_seen_ms(last)) if last else None,
            online=is_online(last, d.report_interval_s, factor, now_ms),
            battery_v=last.battery_v if last else None,
            open_maintenance_cases=maintenance.get(d.id, []),
        ))
    return items


def _set_enabled(device_id: str, enabled: bool, caller: Principal, engine: Engine, settings: Settings) -> EnabledOut:
    _registered(engine, device_id, caller)
    try:
        changed = set_enabled(engine, device_id, enabled)
    except DeviceError:  # removed since the look-up
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown device {device_id!r:.80}") from None
    except _UNAVAILABLE as exc:
        raise _database_down("device registry", exc) from None
    if not changed:
        return EnabledOut(id=device_id, enabled=enabled, changed=False, broker="unchanged")
    log.info("%s %s device %s", caller.actor, "enabled" if enabled else "disabled", device_id)
    # The broker learns who may log in from its password file, written from the registry; the embedded brokers of
    # `gridhub up` watch it, as they do for `gridhub devices enable|disable`.
    try:
        write_broker_files(engine, auth_dir(settings), hub_accounts(engine, settings), settings.mqtt)
    except (BrokerAuthError, OSError) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"device {device_id} is {'enabled' if enabled else 'disabled'} in the registry, but the broker files "
            f"could not be rewritten: {exc}; run `gridhub devices broker-files`") from None
    if settings.mqtt.host is None:
        broker = "broker files rewritten: a running `gridhub up` applies them within a second"
    else:
        broker = f"broker files rewritten: install them on {settings.mqtt.host} and reload Mosquitto (SIGHUP)"
    return EnabledOut(id=device_id, enabled=enabled, changed=True, broker=broker)


def _registered(engine: Engine, device_id: str, caller: Principal) -> DeviceRecord:
    """The device from the registry of record; 404 if it is not there or outside the caller's scope."""
    record = _registry(lambda: get_device(engine, device_id))
    if record is None or not caller.covers(record.device.grid_code):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown device {device_id!r:.80}")
    return record


def _camera(camera: Camera, evidence: DirectoryEvidence) -> CameraOut:
    has_snapshot = evidence.holds_any(camera_folder(camera.id))
    return CameraOut(
        id=camera.id, grid_code=camera.grid_code, fps=camera.fps, width=camera.width, height=camera.height,
        zones=[ZoneOut(id=z.id, kind=z.kind, polygon=list(z.polygon), dwell_s=z.dwell_s) for z in camera.zones],
        latest_snapshot_url=f"/api/v1/cameras/{quote(camera.id, safe='')}/snapshot" if has_snapshot else None,
    )


def _registry(query: Callable[[], T]) -> T:
    try:
        return query()
    except _UNAVAILABLE as exc:
        raise _database_down("device registry", exc) from None


def _last_seen_ms(heard: LastHeard) -> int:
    return max(ms for ms in (heard.received_ms, heard.status_ms) if ms is not None)


def _database_down(what: str, exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                         f"{what} unavailable: database: {getattr(exc, 'orig', None) or exc}")
