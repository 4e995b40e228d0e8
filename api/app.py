"""The FastAPI application and `gridhub api`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.auth import load_token_hashes
from api.routes import cases, grids, health, telemetry
from core import __version__
from core.city import load_city
from core.settings import Settings
from storage.db import connect
from storage.schema import init_db
from storage.telemetry import open_store


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    store = open_store(app.state.settings, app.state.engine)
    app.state.telemetry_store = store
    try:
        yield
    finally:
        store.close()


def create_app(settings: Settings) -> FastAPI:
    """Build the app: load the city, open the database, read the token hashes (the telemetry store opens on start)."""
    app = FastAPI(title="GridHub", version=__version__, lifespan=_lifespan,
                  description="Streaming IoT and video-sensor ingestion for urban grid management")
    app.state.settings = settings
    app.state.city = load_city(settings)
    app.state.engine = connect(settings.database_url)
    init_db(app.state.engine)
    tokens_file = settings.api.tokens_file or settings.state_dir / "tokens.json"
    app.state.token_roles = load_token_hashes(tokens_file) if tokens_file.exists() else {}
    app.include_router(health.router)
    app.include_router(grids.router)
    app.include_router(telemetry.router)
    app.include_router(cases.router)
    return app
