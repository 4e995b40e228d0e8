"""`gridhub store`: the telemetry store writer. Registered on `gridhub.cli.cli`, so import that module first."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gridhub.cli.common import EXIT_CONFIG, config_option, fail, load


@click.command()
@config_option
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on this port (when run on its own; `gridhub up` serves them on the API).")
def store(config_file: Path | None, metrics_port: int | None) -> None:
    """Telemetry store writer: consume gridhub.telemetry into SQL or InfluxDB (started by `gridhub up`)."""
    from ingest.store_writer import serve
    from storage.schema import SchemaError

    try:
        code = serve(load(config_file), metrics_port=metrics_port)
    except SchemaError as exc:
        fail(str(exc), EXIT_CONFIG)
    sys.exit(code)
