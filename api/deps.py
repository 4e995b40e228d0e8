"""Dependencies that routes declare: the caller and its rights, the database, the city, a device, telemetry.

The ones that do no I/O are coroutines: FastAPI runs a plain function in its thread pool, and a request that
hopped threads once per dependency spent more time hopping than querying.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from api.auth import Principal, Right, Role
from api.commands import CommandBus
from core.settings import Settings
from domain.city import City
from domain.registry import DeviceKind
from storage.devices import devices_table
from storage.evidence import DirectoryEvidence
from storage.telemetry.base import TelemetryStore
from storage.tokens import find_token

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    """What the routes show of a device in the registry of record (the database)."""

    id: str
    kind: DeviceKind
    grid_code: str


def _unauthorized(why: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, why, headers={"WWW-Authenticate": "Bearer"})


def _unavailable(what: str, exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                         f"{what} unavailable: database: {getattr(exc, 'orig', None) or exc}")


def authenticate(engine: Engine, token: str, now: datetime | None = None) -> Principal:
    """The caller behind a bearer token; 401 naming why it is refused (unknown, expired or revoked)."""
    try:
        record = find_token(engine, token)
    except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
        raise _unavailable("token store", exc) from None
    if record is None:
        raise _unauthorized("unknown bearer token")
    now = now or datetime.now(UTC)
    if record.revoked_at is not None:
        raise _unauthorized(f"token {record.id} was revoked at {record.revoked_at.isoformat()}")
    if record.expires_at is not None and now >= record.expires_at:
        raise _unauthorized(f"token {record.id} expired at {record.expires_at.isoformat()}")
    return Principal(record.id, record.name, Role(record.role), record.scope)


def _caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise _unauthorized("missing bearer token")
    principal = authenticate(request.app.state.engine, credentials.credentials)
    return principal


#: Rights whose routes change something, and so count against the caller's write rate.
WRITES = frozenset({Right.REVIEW, Right.ACT, Right.REGISTRY})


def require(right: Right) -> Callable[[Request, Principal], Awaitable[Principal]]:
    """A dependency: the caller, if its role grants `right`; 403 naming the right otherwise."""

    async def check(request: Request, caller: Annotated[Principal, Depends(_caller)]) -> Principal:
        if not caller.may(right):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"role {caller.role.value} may not do this (needs the {right.value!r} right)")
        if right in WRITES:
            request.app.state.write_limiter.check(caller.token_id, "writes for this token")
        return caller

    return check


async def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def _city(request: Request) -> City:
    city: City = request.app.state.city
    return city


async def _grid(
    city: Annotated[City, Depends(_city)],
    grid: Annotated[str | None, Query(
        description="grid code prefix: a district (6 digits), street (9), community (12) or cell")] = None,
) -> str | None:
    """The `grid` filter, if it is a grid code prefix; 422 naming the mistake otherwise."""
    code_length = city.cells.code_length
    if grid is not None and not (grid.isascii() and grid.isdigit() and len(grid) <= code_length):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"`grid` must be a grid code prefix of up to {code_length} digits (e.g. 310104 for a "
                            f"district), not {grid!r:.40}")
    return grid


async def _category(
    city: Annotated[City, Depends(_city)],
    category: Annotated[str | None, Query(description="taxonomy code, e.g. 0406")] = None,
) -> str | None:
    """The `category` filter, if it is a code of the city's taxonomy; 422 listing the known ones otherwise."""
    if category is not None and category not in city.taxonomy:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"`category` {category!r:.40} is not a taxonomy code; known: "
                            f"{', '.join(c.code for c in city.taxonomy)}")
    return category


async def _bus(request: Request) -> CommandBus:
    bus: CommandBus | None = request.app.state.bus
    if bus is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "case commands need Kafka: this API runs without `kafka.bootstrap`")
    return bus


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _evidence(request: Request) -> DirectoryEvidence:
    return DirectoryEvidence(request.app.state.settings.evidence_dir)


async def _telemetry_store(request: Request) -> TelemetryStore:
    store: TelemetryStore = request.app.state.telemetry_store  # opened and closed by the app's lifespan
    return store


def _device(device_id: str, engine: Annotated[Engine, Depends(_engine)],
            caller: Annotated[Principal, Depends(require(Right.READ))]) -> RegisteredDevice:
    """The device named in the path, 404 if the database does not hold it or it is outside the caller's scope.

    Read from the database on every request (one primary-key lookup), not from a copy loaded at start, so
    that a device added (`gridhub devices add`) or removed while the API runs is known or unknown at once.
    """
    query = select(devices_table.c.kind, devices_table.c.grid_code).where(devices_table.c.id == device_id)
    try:
        with engine.connect() as conn:
            row = conn.execute(query).first()
    except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
        raise _unavailable("device registry", exc) from None
    if row is None or not caller.covers(row.grid_code):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown device {device_id!r:.80}")
    return RegisteredDevice(device_id, DeviceKind(row.kind), row.grid_code)


Caller = Annotated[Principal, Depends(_caller)]
Reader = Annotated[Principal, Depends(require(Right.READ))]
Reviewer = Annotated[Principal, Depends(require(Right.REVIEW))]
Commander = Annotated[Principal, Depends(require(Right.ACT))]
RegistryAdmin = Annotated[Principal, Depends(require(Right.REGISTRY))]
EngineDep = Annotated[Engine, Depends(_engine)]
CityDep = Annotated[City, Depends(_city)]
DeviceDep = Annotated[RegisteredDevice, Depends(_device)]
GridFilter = Annotated[str | None, Depends(_grid)]
CategoryFilter = Annotated[str | None, Depends(_category)]
BusDep = Annotated[CommandBus, Depends(_bus)]
EvidenceDep = Annotated[DirectoryEvidence, Depends(_evidence)]
TelemetryStoreDep = Annotated[TelemetryStore, Depends(_telemetry_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
