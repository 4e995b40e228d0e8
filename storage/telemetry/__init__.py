"""The telemetry store: readings and device status changes kept for queries (SQL or InfluxDB 2).

`writer` consumes `gridhub.telemetry` into a backend; the API asks the same backend for series.
"""

from __future__ import annotations

from sqlalchemy import Engine

from core.settings import Settings
from storage.db import connect
from storage.telemetry.base import TelemetryStore
from storage.telemetry.sql import SqlTelemetryStore


def open_store(settings: Settings, engine: Engine | None = None) -> TelemetryStore:
    """The configured backend; the SQL backend uses `engine` if given, else connects to the database."""
    config = settings.telemetry_store
    if config.backend == "influxdb":
        from storage.telemetry.influx import InfluxTelemetryStore  # influxdb-client is needed only when configured

        return InfluxTelemetryStore(config.influx_url, config.token(), config.influx_org, config.influx_bucket)
    return SqlTelemetryStore(engine or connect(settings.database_url))
