"""Dependencies that routes declare: the caller's role, the database, the city, a device, the telemetry store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from api.auth import Role, token_hash
from domain.city import City
from domain.registry import DeviceKind
from storage.devices import devices_table
from storage.telemetry.base import TelemetryStore

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    """What the routes show of a device in the registry of record (the database)."""

    id: str
    kind: DeviceKind
    grid_code: str


def _role(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Role:
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    role: Role | None = request.app.state.token_roles.get(token_hash(credentials.credentials))
    if role is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    return role


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _city(request: Request) -> City:
    city: City = request.app.state.city
    return city


def _telemetry_store(request: Request) -> TelemetryStore:
    store: TelemetryStore = request.app.state.telemetry_store  # opened and closed by the app's lifespan
    return store


def _device(device_id: str, engine: Annotated[Engine, Depends(_engine)]) -> RegisteredDevice:
    """The device named in the path, 404 if the database does not hold it.

    Read from the database on every request (one primary-key lookup), not from a copy loaded at start, so
    that a device added (`gridhub devices add`) or removed while the API runs is known or unknown at once.
    """
    query = select(devices_table.c.kind, devices_table.c.grid_code).where(devices_table.c.id == device_id)
    try:
        with engine.connect() as conn:
            row = conn.execute(query).first()
    except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"device registry unavailable: database: {getattr(exc, 'orig', None) or exc}") from None
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown device {device_id!r:.80}")
    return RegisteredDevice(device_id, DeviceKind(row.kind), row.grid_code)


CurrentRole = Annotated[Role, Depends(_role)]
EngineDep = Annotated[Engine, Depends(_engine)]
CityDep = Annotated[City, Depends(_city)]
DeviceDep = Annotated[RegisteredDevice, Depends(_device)]
TelemetryStoreDep = Annotated[TelemetryStore, Depends(_telemetry_store)]
