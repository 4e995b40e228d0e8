"""Liveness and readiness, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from api.deps import CityDep, EngineDep
from core import __version__
from core.metrics import exposition
from storage.db import ping

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(engine: EngineDep, city: CityDep, request: Request) -> JSONResponse:
    """200 when the API can reach its database (503 with the reason otherwise), and whether actions can run."""
    try:
        ping(engine)
    except SQLAlchemyError as exc:
        return JSONResponse({"status": "unavailable", "database": str(exc.__cause__ or exc)}, status_code=503)
    bus = request.app.state.bus
    commands = "off (no kafka.bootstrap)" if bus is None else ("ok" if bus.ready.is_set() else "connecting")
    return JSONResponse({"status": "ok", "version": __version__, "database": "ok", "commands": commands,
                         "city": city.summary()})


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus text format, for every GridHub process on this machine under `gridhub up`."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
