"""`gridhub services`: real Kafka, PostgreSQL, InfluxDB 2 and Mosquitto on loopback, for the production profile on
one machine and for the integration tests (gridhub/services.py). Registered on `gridhub.cli.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from gridhub.cli.common import fail

if TYPE_CHECKING:
    from gridhub.services import Services

DEFAULT_DIR = Path(".gridhub/services")
EXIT_FAILED = 1
ALL = "kafka,postgres,influxdb,mosquitto"  # gridhub.services.NAMES, without importing it (and aiokafka) for --help

dir_option = click.option(
    "--dir", "directory", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_DIR, show_default=True,
    help="Where the services keep their data, logs, services.json and gridhub.yaml.")
only_option = click.option(
    "--only", default=ALL, show_default=True, metavar="NAMES", help="Comma-separated services to use.")


@click.group()
def services() -> None:
    """Real Apache Kafka, PostgreSQL, InfluxDB 2 and Mosquitto on loopback, fetched or built once into
    ~/.cache/gridhub/."""


@services.command()
@dir_option
@only_option
def up(directory: Path, only: str) -> None:
    """Start fresh services on free ports and write DIR/gridhub.yaml pointing GridHub at them."""
    from gridhub import services as svc

    try:
        started = svc.start(directory, _names(only))
    except svc.ServiceError as exc:
        fail(str(exc), EXIT_FAILED)
    _print_table(started)
    click.echo(f"\nuse them:  gridhub up --config {started.config_file}")
    if "mosquitto" in started.handles:
        click.echo("Mosquitto reads its password and ACL files only when it starts: once `gridhub up` or "
                   f"`gridhub devices` has written the devices into them, run `gridhub services reload --dir "
                   f"{directory}`")


@services.command()
@dir_option
def down(directory: Path) -> None:
    """Stop the services started from DIR (their data stays until the next `up`)."""
    from gridhub import services as svc

    stopped = svc.stop(directory)
    click.echo(f"stopped {', '.join(stopped)}" if stopped else f"no services running from {directory}")


@services.command()
@dir_option
def status(directory: Path) -> None:
    """Show each service started from DIR: URL, pid, whether it runs, its log."""
    from gridhub import services as svc

    found = svc.status(directory)
    if not found.handles:
        click.echo(f"no services recorded in {directory}")
        return
    _print_table(found)


@services.command()
@dir_option
def reload(directory: Path) -> None:
    """Make Mosquitto read its password and ACL files again (SIGHUP)."""
    from gridhub import services as svc

    try:
        svc.status(directory).mosquitto.reload()
    except (KeyError, svc.ServiceError) as exc:
        fail(f"mosquitto from {directory}: {exc}", EXIT_FAILED)
    click.echo("Mosquitto reloaded its password and ACL files")


@services.command()
@only_option
def build(only: str) -> None:
    """Fetch Kafka's jars and build influxd into ~/.cache/gridhub/ if they are not there yet (CI calls this)."""
    from gridhub import services as svc

    names = _names(only)
    try:
        svc.build(names)
    except svc.ServiceError as exc:
        fail(str(exc), EXIT_FAILED)
    for name in ("kafka", "influxdb"):
        if name in names:
            click.echo(f"{name}: {svc.cached_artefact(name)}")


def _names(only: str) -> list[str]:
    from gridhub import services as svc

    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(svc.NAMES))
    if unknown:
        raise click.BadParameter(f"unknown service(s) {', '.join(unknown)}; choose from {ALL}",
                                 param_hint="--only")
    return names


def _print_table(found: Services) -> None:
    rows = [("service", "URL", "pid", "state", "log")]
    rows += [(handle.name, handle.url, str(handle.pid or "-"), "running" if handle.running() else "stopped",
              str(handle.log_file)) for handle in found.handles.values()]
    # Plain columns, never cut short: the URLs and paths are meant to be copied.
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
