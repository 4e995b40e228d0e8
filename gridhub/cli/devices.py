"""`gridhub devices`: the device registry and the devices' MQTT credentials.

gridhub.cli registers this group at its end and this module reuses its `--config` option, so the group
is defined before that import, which then works whichever of the two modules is imported first. The
database modules are imported inside the commands, like the other commands' heavy imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from core.city import CityError, load_city
from core.settings import Settings
from domain.city import City
from domain.gridcode import GridCodeError, parse_prefix
from domain.registry import DeviceKind, RegistryError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from storage.devices import DeviceRecord

EXIT_FAILED = 1


@click.group()
def devices() -> None:
    """Device registry and MQTT credentials: add, list, rotate secrets, disable, enable, remove."""


from gridhub.cli.common import EXIT_CONFIG, config_option, fail, load  # noqa: E402


@devices.command("add")
@config_option
@click.option("--id", "device_id", required=True, help="Device id, also its MQTT username: [A-Za-z0-9_-], ≤ 64.")
@click.option("--kind", required=True, help="rain, crowd or manhole.")
@click.option("--lon", required=True, help="Longitude (WGS84).")
@click.option("--lat", required=True, help="Latitude (WGS84).")
@click.option("--grid-code", default="", help="Grid cell; must contain the point (default: the cell that does).")
@click.option("--report-interval", default="60", show_default=True, help="Seconds between reports.")
@click.option("--component-id", default="", help="manhole: the 16-digit id of the cover it watches.")
@click.option("--well-depth-cm", default="", help="manhole: cover to well bottom, in cm.")
@click.option("--zone-area-m2", default="", help="crowd: the area it counts, in m².")
@click.option("--battery-floor-v", default="", help="Battery voltage below which it needs maintenance.")
def add(config_file: Path | None, device_id: str, kind: str, lon: str, lat: str, grid_code: str,
        report_interval: str, component_id: str, well_depth_cm: str, zone_area_m2: str,
        battery_floor_v: str) -> None:
    """Register a device and print its new secret, once."""
    from storage.devices import DeviceError, add_device, new_device

    settings, city, engine = _open(config_file)
    accounts = {*_service_accounts(settings, engine), settings.mqtt.username}
    if any(device_id.startswith(account) for account in accounts):
        fail(f"device {device_id}: names beginning with a service account's ({', '.join(sorted(accounts))}) "
              "are reserved for its gateways' client ids", EXIT_FAILED)
    try:
        device = new_device(city, {
            "id": device_id, "kind": kind, "lon": lon, "lat": lat, "grid_code": grid_code,
            "report_interval_s": report_interval, "component_id": component_id, "well_depth_cm": well_depth_cm,
            "zone_area_m2": zone_area_m2, "battery_floor_v": battery_floor_v,
        })
        secret = add_device(engine, device)
    except (DeviceError, RegistryError) as exc:
        fail(str(exc), EXIT_FAILED)
    click.echo(f"added {device.id} ({device.kind}) in grid cell {device.grid_code}")
    _show_secret(device.id, secret)
    _update_broker(settings, engine)


@devices.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.option("--kind", default=None, help="Only devices of this kind (rain, crowd, manhole).")
@click.option("--grid-prefix", default=None, help="Only devices under this district, street, community or cell.")
def list_(config_file: Path | None, as_json: bool, kind: str | None, grid_prefix: str | None) -> None:
    """List registered devices."""
    from storage.devices import list_devices

    _, city, engine = _open(config_file)
    try:
        wanted_kind = DeviceKind(kind) if kind is not None else None
    except ValueError:
        fail(f"kind {kind!r} must be rain, crowd or manhole", EXIT_FAILED)
    if grid_prefix is not None:
        try:
            parse_prefix(grid_prefix, city.cells.code_length)
        except GridCodeError as exc:
            fail(str(exc), EXIT_FAILED)
    records = list_devices(engine, kind=wanted_kind, grid_prefix=grid_prefix)
    if as_json:
        click.echo(orjson.dumps([_as_json(record) for record in records]).decode())
        return
    click.echo(f"{'id':<20} {'kind':<8} {'grid_code':<16} {'lon':>11} {'lat':>10} {'every_s':>7}  secret  enabled")
    for record in records:
        d = record.device
        click.echo(f"{d.id:<20} {d.kind:<8} {d.grid_code:<16} {d.lon:>11.6f} {d.lat:>10.6f} "
                   f"{d.report_interval_s:>7}  {'yes' if record.has_secret else 'no':<6}  "
                   f"{'yes' if record.enabled else 'no'}")
    click.echo(f"{len(records)} device(s)")


@devices.command("rotate-secret")
@config_option
@click.argument("device_id")
def rotate_secret_(config_file: Path | None, device_id: str) -> None:
    """Give a device a new secret and print it, once; the old one stops working."""
    from storage.devices import DeviceError, rotate_secret

    settings, _, engine = _open(config_file)
    try:
        secret = rotate_secret(engine, device_id)
    except DeviceError as exc:
        fail(str(exc), EXIT_FAILED)
    _show_secret(device_id, secret)
    _update_broker(settings, engine)


@devices.command("disable")
@config_option
@click.argument("device_id")
def disable(config_file: Path | None, device_id: str) -> None:
    """Stop a device from logging in, keeping its record and secret; its open session is ended."""
    _set_enabled(config_file, device_id, False)


@devices.command("enable")
@config_option
@click.argument("device_id")
def enable(config_file: Path | None, device_id: str) -> None:
    """Let a disabled device log in again with the secret it had."""
    _set_enabled(config_file, device_id, True)


@devices.command("remove")
@config_option
@click.argument("device_id")
def remove(config_file: Path | None, device_id: str) -> None:
    """Delete a device and its secret from the registry (its telemetry history stays); its session is ended."""
    from storage.devices import DeviceError, remove_device

    settings, _, engine = _open(config_file)
    try:
        remove_device(engine, device_id)
    except DeviceError as exc:
        fail(str(exc), EXIT_FAILED)
    click.echo(f"removed {device_id}: it can no longer log in")
    _update_broker(settings, engine)


def _set_enabled(config_file: Path | None, device_id: str, enabled: bool) -> None:
    from storage.devices import DeviceError, set_enabled

    settings, _, engine = _open(config_file)
    try:
        changed = set_enabled(engine, device_id, enabled)
    except DeviceError as exc:
        fail(str(exc), EXIT_FAILED)
    if not changed:
        click.echo(f"{device_id} was already {'enabled' if enabled else 'disabled'}")
        return
    click.echo(f"{device_id} " + ("enabled: it may log in with its secret" if enabled
                                  else "disabled: it can no longer log in"))
    _update_broker(settings, engine)


@devices.command("broker-files")
@config_option
def broker_files(config_file: Path | None) -> None:
    """Write the broker's password file, ACL file and mosquitto.conf from the registry (mqtt.auth_dir)."""
    settings, _, engine = _open(config_file)
    _update_broker(settings, engine)


@devices.command("credentials")
@config_option
@click.argument("device_id")
def credentials(config_file: Path | None, device_id: str) -> None:
    """Demo city only: print `username password` of a device, for simulators and mosquitto_pub."""
    from storage.devices import DeviceError, demo_credentials, is_demo_city

    settings, _, engine = _open(config_file)
    if not is_demo_city(settings):
        fail("secrets are stored hashed and cannot be shown again; "
              f"run `gridhub devices rotate-secret {device_id}` for a new one", EXIT_FAILED)
    try:
        click.echo(f"{device_id} {demo_credentials(engine, device_id)}")
    except DeviceError as exc:
        fail(str(exc), EXIT_FAILED)


def _open(config_file: Path | None) -> tuple[Settings, City, Engine]:
    """Settings, city and database, with the city's new devices registered (and the broker told, if any)."""
    from storage.db import connect, shown
    from storage.devices import DeviceError, is_demo_city, seed_devices
    from storage.schema import SchemaError, init_db

    settings = load(config_file)
    try:
        city = load_city(settings)
    except CityError as exc:
        fail(f"city error: {exc}", EXIT_CONFIG)
    engine = connect(settings.database_url)
    try:
        init_db(engine)
    except SchemaError as exc:
        fail(str(exc), EXIT_CONFIG)
    try:
        seeded = seed_devices(engine, city, demo=is_demo_city(settings))
    except DeviceError as exc:
        fail(f"database {shown(settings.database_url)}: {exc}", EXIT_CONFIG)
    if seeded:
        _update_broker(settings, engine, quiet=True)
    return settings, city, engine


def _update_broker(settings: Settings, engine: Engine, *, quiet: bool = False) -> None:
    """Rewrite the broker's files from the registry, with the service accounts."""
    from storage import broker_files as broker_auth

    directory = broker_auth.auth_dir(settings)
    accounts = _service_accounts(settings, engine)
    try:
        files = broker_auth.write_broker_files(engine, directory, accounts, settings.mqtt)
    except (broker_auth.BrokerAuthError, OSError) as exc:
        fail(f"broker files in {directory}: {exc}", EXIT_FAILED)
    if quiet:
        return
    if settings.mqtt.host is None:
        click.echo(f"broker files updated in {files.password_file.parent}; a running `gridhub up` applies them "
                   "within a second and disconnects devices whose secret changed or was withdrawn")
    else:
        click.echo(f"broker files updated in {files.password_file.parent}; install them on {settings.mqtt.host} "
                   "and reload Mosquitto (SIGHUP) to apply them")


def _service_accounts(settings: Settings, engine: Engine) -> dict[str, str]:
    """Those in the hub password file now (the one `gridhub up` wrote), and the gateway's if configured here.

    A hash already in place that the configured password matches stays as it is: a broker may take a new
    hash for a new secret and end the sessions logged in with the old one.
    """
    from core.credentials import check_password
    from storage import broker_files as broker_auth

    try:
        accounts = broker_auth.current_service_accounts(engine, broker_auth.auth_dir(settings))
        password = settings.mqtt_password()
    except (broker_auth.BrokerAuthError, OSError) as exc:  # OSError: an unreadable mqtt.password_file
        fail(f"service accounts: {exc}", EXIT_FAILED)
    username = settings.mqtt.username
    if password is not None and not check_password(password, accounts.get(username, "")):
        accounts[username] = broker_auth.configured_service_accounts(settings)[username]
    return accounts


def _show_secret(device_id: str, secret: str) -> None:
    click.echo(f"username: {device_id}")
    click.echo(f"secret:   {secret}")
    click.echo("This secret is shown once: GridHub keeps only its hash. "
               f"If it is lost, run `gridhub devices rotate-secret {device_id}`.")


def _as_json(record: DeviceRecord) -> dict[str, Any]:
    d = record.device
    return {
        "id": d.id, "kind": d.kind.value, "grid_code": d.grid_code, "lon": d.lon, "lat": d.lat,
        "report_interval_s": d.report_interval_s, "battery_floor_v": d.battery_floor_v,
        "component_id": d.component_id.digits if d.component_id else None,
        "well_depth_cm": d.well_depth_cm, "zone_area_m2": d.zone_area_m2, "has_secret": record.has_secret,
        "enabled": record.enabled,
        "created_at": record.created_at.isoformat(),
        "secret_set_at": record.secret_set_at.isoformat() if record.secret_set_at else None,
    }
