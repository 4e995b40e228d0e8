"""The device registry of record, in the database: devices, where they are, and their hashed MQTT secrets.

The city's devices.csv seeds it; `gridhub devices add`, `rotate-secret`, `disable`, `enable` and `remove`
change it. A disabled device keeps its record and secret but may not log in. A secret is shown
once and stored only as a Mosquitto `$7$` hash, so neither broker nor database can give it back. The demo
city is the exception by design: its seeded devices use `demo_secret(device_id)`, derived from a public
key, so that simulators and `mosquitto_pub` can log in without provisioning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    RowMapping,
    String,
    Table,
    select,
    true,
)
from sqlalchemy.exc import IntegrityError

from core.city import DEMO_CITY_DIR
from core.credentials import check_password, demo_secret, new_secret, password_hash
from core.settings import Settings
from domain.city import City
from domain.components import parse_component_id
from domain.registry import Device, DeviceKind, Registry, device_from_row
from storage.metadata import meta_table, metadata

devices_table = Table(
    "devices",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("grid_code", String(15), nullable=False, index=True),
    Column("lon", Float, nullable=False),
    Column("lat", Float, nullable=False),
    Column("report_interval_s", Integer, nullable=False),
    Column("battery_floor_v", Float),
    Column("component_id", String(16)),
    Column("well_depth_cm", Float),
    Column("zone_area_m2", Float),
    Column("secret_hash", String(256)),  # None: the device cannot connect until `rotate-secret`
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("secret_set_at", DateTime(timezone=True)),
    Column("enabled", Boolean, nullable=False, server_default=true()),
)

#: Devices removed with `gridhub devices remove`, so that seeding from the city's devices.csv does not bring
#: them back; `gridhub devices add` with the same id registers it again.
removed_devices_table = Table(
    "removed_devices",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("removed_at", DateTime(timezone=True), nullable=False),
)


#: gridhub_meta key recording whether this database's registry is the demo city's (public secrets) or not.
REGISTRY_KEY = "device_registry"


class DeviceError(ValueError):
    """A device that is unknown, already registered, or whose secret cannot be given out."""


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A registered device with what the registry knows about its credentials."""

    device: Device
    has_secret: bool
    created_at: datetime
    secret_set_at: datetime | None
    enabled: bool


def is_demo_city(settings: Settings) -> bool:
    """True when the configured city is the demo city shipped with GridHub."""
    return settings.city.dir is None or settings.city.dir.resolve() == DEMO_CITY_DIR.resolve()


def seed_devices(engine: Engine, city: City, *, demo: bool) -> list[str]:
    """Insert the city's devices that the database does not have yet; return their ids.

    Devices already registered are left as they are: the database, not devices.csv, is the record, so
    rotated secrets, disabled devices and devices added by hand survive a restart, and removed ones stay
    removed. Demo-city devices get their demo secret;
    other cities' devices get none and cannot connect until `gridhub devices rotate-secret`. A database
    seeded for the demo city refuses another city, and the other way round, so that devices with public
    demo secrets never end up in a real city's registry.
    """
    try:
        return _insert_missing(engine, city, demo)
    except IntegrityError:  # another process (`gridhub up`, a CLI command) seeded them meanwhile
        return _insert_missing(engine, city, demo)


def load_registry(engine: Engine, city: City) -> Registry:
    """The registered devices from the database, with the city's cameras."""
    with engine.connect() as conn:
        rows = conn.execute(select(devices_table).order_by(devices_table.c.id)).mappings().all()
    return Registry((_device(row) for row in rows), city.registry.cameras.values())


def new_device(city: City, fields: Mapping[str, str]) -> Device:
    """Validate fields named like a devices.csv row; an empty grid_code means the cell containing lon/lat."""
    device = device_from_row(fields)
    if not device.grid_code:
        cell = city.cells.locate(device.lon, device.lat)
        if cell is None:
            raise DeviceError(
                f"device {device.id}: position ({device.lon}, {device.lat}) is outside every grid cell of {city.name}"
            )
        device = replace(device, grid_code=cell.code.digits)
    Registry([device]).check_against(city.cells)
    return device


def add_device(engine: Engine, device: Device) -> str:
    """Register a new device with a fresh secret and return the secret, which is stored only hashed."""
    secret = new_secret()
    try:
        with engine.begin() as conn:
            if conn.execute(select(devices_table.c.id).where(devices_table.c.id == device.id)).first():
                raise DeviceError(f"device {device.id} already exists")
            conn.execute(devices_table.insert().values(_row(device, password_hash(secret), _now())))
            conn.execute(removed_devices_table.delete().where(removed_devices_table.c.id == device.id))
    except IntegrityError:
        raise DeviceError(f"device {device.id} already exists") from None
    return secret


def rotate_secret(engine: Engine, device_id: str) -> str:
    """Give a device a fresh secret, which replaces the old one at once; return it."""
    secret = new_secret()
    with engine.begin() as conn:
        updated = conn.execute(
            devices_table.update()
            .where(devices_table.c.id == device_id)
            .values(secret_hash=password_hash(secret), secret_set_at=_now())
        )
    if updated.rowcount == 0:
        raise DeviceError(f"unknown device {device_id}")
    return secret


def set_enabled(engine: Engine, device_id: str, enabled: bool) -> bool:
    """Allow or forbid a device to log in; False if it already was so."""
    with engine.begin() as conn:
        current = conn.execute(select(devices_table.c.enabled).where(devices_table.c.id == device_id)).scalar()
        if current is None:
            raise DeviceError(f"unknown device {device_id}")
        if current == enabled:
            return False
        conn.execute(devices_table.update().where(devices_table.c.id == device_id).values(enabled=enabled))
    return True


def remove_device(engine: Engine, device_id: str) -> None:
    """Forget a device and its secret, for good: seeding from the city files does not bring it back.

    Its telemetry history stays.
    """
    with engine.begin() as conn:
        deleted = conn.execute(devices_table.delete().where(devices_table.c.id == device_id))
        if deleted.rowcount == 0:
            raise DeviceError(f"unknown device {device_id}")
        conn.execute(removed_devices_table.insert().values(id=device_id, removed_at=_now()))


def demo_credentials(engine: Engine, device_id: str) -> str:
    """A demo-city device's secret, as long as it has not been rotated away from the demo secret."""
    with engine.connect() as conn:
        row = conn.execute(select(devices_table.c.secret_hash).where(devices_table.c.id == device_id)).first()
    if row is None:
        raise DeviceError(f"unknown device {device_id}")
    secret = demo_secret(device_id)
    if row.secret_hash is None or not check_password(secret, row.secret_hash):
        raise DeviceError(
            f"device {device_id} no longer uses its demo secret (it was rotated or added by hand); "
            f"run `gridhub devices rotate-secret {device_id}` for a new one"
        )
    return secret


def list_devices(
    engine: Engine, *, kind: DeviceKind | None = None, grid_prefix: str | None = None
) -> list[DeviceRecord]:
    """Registered devices in id order, optionally of one kind and under a grid-code prefix."""
    query = select(devices_table).order_by(devices_table.c.id)
    if kind is not None:
        query = query.where(devices_table.c.kind == kind.value)
    if grid_prefix:
        query = query.where(devices_table.c.grid_code.startswith(grid_prefix, autoescape=True))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        DeviceRecord(_device(row), row["secret_hash"] is not None, _utc(row["created_at"]),
                     _utc(row["secret_set_at"]) if row["secret_set_at"] else None, row["enabled"])
        for row in rows
    ]


def device_ids(engine: Engine) -> set[str]:
    """Ids of every registered device, with or without a secret."""
    with engine.connect() as conn:
        return set(conn.execute(select(devices_table.c.id)).scalars())


def secret_hashes(engine: Engine) -> dict[str, str]:
    """Device id → `$7$` hash, for the enabled devices that have a secret: those that may log in."""
    query = select(devices_table.c.id, devices_table.c.secret_hash).where(
        devices_table.c.secret_hash.is_not(None), devices_table.c.enabled)
    with engine.connect() as conn:
        return {row.id: row.secret_hash for row in conn.execute(query)}


def _insert_missing(engine: Engine, city: City, demo: bool) -> list[str]:
    wanted = "demo" if demo else "city"
    with engine.begin() as conn:
        recorded = conn.execute(select(meta_table.c.value).where(meta_table.c.key == REGISTRY_KEY)).scalar()
        if recorded is None:
            conn.execute(meta_table.insert().values(key=REGISTRY_KEY, value=wanted))
        elif recorded != wanted:
            held = "the demo city's devices, whose secrets are public" if recorded == "demo" else "a city's devices"
            raise DeviceError(f"this database holds {held}; give this city its own (state_dir or database.url)")
        known = set(conn.execute(select(devices_table.c.id)).scalars())
        known |= set(conn.execute(select(removed_devices_table.c.id)).scalars())
        new = [device for device in city.registry if device.id not in known]
        now = _now()
        rows = [_row(device, password_hash(demo_secret(device.id)) if demo else None, now) for device in new]
        if rows:
            conn.execute(devices_table.insert(), rows)
    return [device.id for device in new]


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every one stored here was UTC
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _row(device: Device, secret_hash: str | None, now: datetime) -> dict[str, Any]:
    return {
        "id": device.id,
        "kind": device.kind.value,
        "grid_code": device.grid_code,
        "lon": device.lon,
        "lat": device.lat,
        "report_interval_s": device.report_interval_s,
        "battery_floor_v": device.battery_floor_v,
        "component_id": device.component_id.digits if device.component_id else None,
        "well_depth_cm": device.well_depth_cm,
        "zone_area_m2": device.zone_area_m2,
        "secret_hash": secret_hash,
        "created_at": now,
        "secret_set_at": now if secret_hash is not None else None,
    }


def _device(row: RowMapping) -> Device:
    return Device(
        id=row["id"],
        kind=DeviceKind(row["kind"]),
        grid_code=row["grid_code"],
        lon=row["lon"],
        lat=row["lat"],
        report_interval_s=row["report_interval_s"],
        battery_floor_v=row["battery_floor_v"],
        component_id=parse_component_id(row["component_id"]) if row["component_id"] else None,
        well_depth_cm=row["well_depth_cm"],
        zone_area_m2=row["zone_area_m2"],
    )


def get_device(engine: Engine, device_id: str) -> DeviceRecord | None:
    """One registered device, or None if the registry does not hold it."""
    with engine.connect() as conn:
        row = conn.execute(select(devices_table).where(devices_table.c.id == device_id)).mappings().first()
    if row is None:
        return None
    return DeviceRecord(_device(row), row["secret_hash"] is not None, _utc(row["created_at"]),
                        _utc(row["secret_set_at"]) if row["secret_set_at"] else None, row["enabled"])
