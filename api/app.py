"""The FastAPI application and `gridhub api`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.auth import Right
from api.commands import CommandBus
from api.deps import authenticate
from api.limits import DoorMiddleware, RateLimiter
from api.live import close_feed, open_feed
from api.routes import cases, detections, evidence, grids, health, kpis, live, open311, registry, telemetry
from core import __version__
from core.city import load_city
from core.settings import Settings
from storage.db import connect
from storage.schema import init_db
from storage.telemetry import open_store

CONSOLE_DIR = Path(__file__).with_name("console")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    store = open_store(app.state.settings, app.state.engine)
    app.state.telemetry_store = store
    app.state.live_feed = open_feed(app.state.settings.kafka.bootstrap)  # None without Kafka
    settings: Settings = app.state.settings
    bus = None
    if settings.kafka.bootstrap:  # without Kafka the API serves reads; actions answer 503
        bus = CommandBus(settings.kafka.bootstrap, settings.kafka.partitions, settings.api.command_timeout_s,
                         settings.kafka.replication_factor)
        bus.start()
    app.state.bus = bus
    try:
        yield
    finally:
        store.close()
        await close_feed(app.state.live_feed)
        if bus is not None:
            await bus.stop()


def create_app(settings: Settings) -> FastAPI:
    """Build the app: load the city, open the database (the telemetry store and Kafka open on start)."""
    app = FastAPI(title="GridHub", version=__version__, lifespan=_lifespan,
                  description="Streaming IoT and video-sensor ingestion for urban grid management")
    app.state.settings = settings
    app.state.city = load_city(settings)
    app.state.engine = connect(settings.database_url)
    init_db(app.state.engine)
    conf = settings.api
    app.state.last_decisions = {}  # reviewer's token id → (case id, grid code, version after, lesson), for undo
    app.state.write_limiter = RateLimiter(conf.write_rate_per_s, conf.write_burst)
    app.state.citizen_limiter = RateLimiter(conf.citizen_rate_per_min / 60, max(1, round(conf.citizen_rate_per_min)))

    def ops_check(authorization: str | None) -> tuple[int, str] | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return 401, "operations pages answer other machines only with a bearer token (or api.public_*)"
        try:
            caller = authenticate(app.state.engine, authorization[7:].strip())
        except HTTPException as exc:
            return exc.status_code, str(exc.detail)
        return None if caller.may(Right.OPS) else (403, f"role {caller.role.value} may not read operations pages")

    app.add_middleware(DoorMiddleware, settings=conf, ops_check=ops_check)
    app.mount("/console", StaticFiles(directory=CONSOLE_DIR), name="console")

    @app.get("/", include_in_schema=False)
    def console() -> FileResponse:
        """The web console (plain ES modules in api/console/, served as they are: no build step)."""
        return FileResponse(CONSOLE_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.include_router(health.router)
    app.include_router(grids.router)
    app.include_router(telemetry.router)
    app.include_router(cases.router)
    app.include_router(detections.router)
    app.include_router(registry.router)
    app.include_router(kpis.router)
    app.include_router(live.router)
    app.include_router(evidence.router)
    app.include_router(open311.router)
    return app
