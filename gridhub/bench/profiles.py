"""Where a benchmark's servers come from: the `embedded` profile (Tansu, SQLite and a plain Mosquitto, started
for the run) or the `production` one (Apache Kafka in KRaft mode, PostgreSQL and GridHub's production Mosquitto
from `gridhub.services`, fresh for the run).

A benchmark asks `servers` for its profile and gets where to connect and the settings of the GridHub processes
it starts; nothing else in it depends on the profile, so its figures on the two profiles compare.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine, create_engine, text

from core.credentials import demo_secret
from core.settings import MqttSettings
from gridhub import localbrokers
from gridhub.bench import mosquitto_version
from gridhub.services import Mosquitto, Services, cached_artefact, running_services
from storage import broker_files
from storage.devices import secret_hashes

PROFILES = ("embedded", "production")
LOOPBACK = "127.0.0.1"
#: The embedded profile's Mosquitto: anyone may publish and read, and nothing is held back by queue limits.
ANONYMOUS_MOSQUITTO = "allow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n"
LOGIN_TIMEOUT_S = 10.0

Login = tuple[str, str]  # username, password


@dataclass(frozen=True)
class Broker:
    """The MQTT broker: devices publish on `port`, gateways and other readers read on `hub_port`.

    The embedded profile's broker is anonymous and has one listener; the production one has GridHub's two
    listeners, password and ACL files, and lets in the registry's devices once `admit_devices` has run.
    """

    port: int
    hub_port: int
    hub_login: Login | None = None
    mosquitto: Mosquitto | None = None

    def device_login(self, device_id: str) -> Login | None:
        """What a demo-city device logs in with: its demo secret, or nothing on an anonymous broker."""
        return None if self.mosquitto is None else (device_id, demo_secret(device_id))

    def admit_devices(self, engine: Engine) -> None:
        """Let the registered devices log in, as `gridhub devices` does: rewrite the broker's files, reload it."""
        if self.mosquitto is None:
            return
        auth_dir = self.mosquitto.auth_dir
        broker_files.write_broker_files(engine, auth_dir, broker_files.current_service_accounts(engine, auth_dir),
                                        MqttSettings())
        self.mosquitto.reload()
        device = min(secret_hashes(engine), default=None)
        if device is None:
            raise RuntimeError("the registry has no device that may log in")
        deadline = time.monotonic() + LOGIN_TIMEOUT_S
        while True:
            try:
                with session(self.port, self.device_login(device), "gridhub-bench-login"):
                    return
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@dataclass(frozen=True)
class Servers:
    """A profile's servers for one run, and the settings (`GRIDHUB_*` variables) that point GridHub at them."""

    profile: str
    description: str  # the servers and their versions, for the result's environment
    bootstrap: str
    database_url: str
    env: Mapping[str, str]
    mqtt: Broker | None = None


@contextlib.contextmanager
def servers(profile: str, state_dir: Path, *, mqtt_broker: bool = False) -> Iterator[Servers]:
    """The profile's Kafka, database and, with `mqtt_broker`, MQTT broker, fresh until the block ends.

    `state_dir` is the state directory of the GridHub processes the benchmark starts (the embedded profile's
    SQLite database is there).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    start = _production if profile == "production" else _embedded
    directory = _reachable_dir()
    try:
        with start(directory, state_dir, mqtt_broker) as started:
            yield started
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def embedded_env(bootstrap: str, state_dir: Path, mqtt_port: int | None = None) -> dict[str, str]:
    """Settings for Tansu (whose producers must not ask for idempotence: it refuses them), SQLite in `state_dir`
    and the anonymous Mosquitto on `mqtt_port`."""
    env = {"GRIDHUB_STATE_DIR": str(state_dir), "GRIDHUB_KAFKA__BOOTSTRAP": bootstrap,
           **localbrokers.TANSU_CLIENT_ENV}
    if mqtt_port is not None:
        env |= {"GRIDHUB_MQTT__HOST": LOOPBACK, "GRIDHUB_MQTT__PORT": str(mqtt_port)}
    return env


def production_env(started: Services, state_dir: Path) -> dict[str, str]:
    """Settings for the started services: what `gridhub services up` writes to gridhub.yaml, as variables."""
    settings: dict[str, dict[str, Any]] = {}
    for handle in started.handles.values():
        settings |= handle.settings()
    return {"GRIDHUB_STATE_DIR": str(state_dir),
            **{f"GRIDHUB_{section.upper()}__{key.upper()}": str(value)
               for section, values in settings.items() for key, value in values.items()}}


@contextlib.contextmanager
def _embedded(directory: Path, state_dir: Path, mqtt_broker: bool) -> Iterator[Servers]:
    with contextlib.ExitStack() as stack:
        bootstrap = stack.enter_context(localbrokers.tansu())
        parts = ["tansu", f"SQLite {sqlite3.sqlite_version}"]
        broker = None
        if mqtt_broker:
            port = stack.enter_context(localbrokers.mosquitto(directory, ANONYMOUS_MOSQUITTO))
            broker = Broker(port, port)
            parts.append(mosquitto_version(localbrokers.mosquitto_binary()))
        yield Servers("embedded", _describe("embedded", parts), bootstrap, f"sqlite:///{state_dir / 'gridhub.db'}",
                      embedded_env(bootstrap, state_dir, broker.port if broker else None), broker)


@contextlib.contextmanager
def _production(directory: Path, state_dir: Path, mqtt_broker: bool) -> Iterator[Servers]:
    with running_services(directory, ["kafka", "postgres", *(["mosquitto"] if mqtt_broker else [])]) as started:
        kafka_version = cached_artefact("kafka").name.removeprefix("kafka-")
        parts = [f"Apache Kafka {kafka_version} (KRaft)", f"PostgreSQL {_server_version(started.postgres.url)}"]
        broker = None
        if mqtt_broker:
            mosquitto = started.mosquitto
            password = mosquitto.gateway_secret_file.read_text(encoding="utf-8").strip()
            broker = Broker(mosquitto.port, mosquitto.ports["hub_port"], (MqttSettings().username, password),
                            mosquitto)
            parts.append(f"{mosquitto_version(localbrokers.mosquitto_binary())} with password and ACL files")
        yield Servers("production", _describe("production", parts), started.kafka.url, started.postgres.url,
                      production_env(started, state_dir), broker)


@contextlib.contextmanager
def session(port: int, login: Login | None, client_id: str) -> Iterator[mqtt.Client]:
    """A paho client whose connection the broker on `port` accepted, until the block ends."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if login is not None:
        client.username_pw_set(*login)
    answered, refusals = threading.Event(), list[str]()

    def on_connect(_c: mqtt.Client, _u: Any, _f: mqtt.ConnectFlags, reason: ReasonCode,
                   _p: Properties | None) -> None:
        if reason.is_failure:
            refusals.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    client.connect(LOOPBACK, port)
    client.loop_start()
    try:
        if not answered.wait(LOGIN_TIMEOUT_S) or refusals:
            raise ConnectionError(f"the broker on port {port} did not accept {client_id} "
                                  f"({refusals[0] if refusals else 'no answer'})")
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def _describe(profile: str, parts: list[str]) -> str:
    return f"{profile} profile: {' + '.join(parts)}"


def _server_version(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one()).split()[0]
    finally:
        engine.dispose()


def _reachable_dir() -> Path:
    """A fresh directory under /tmp that others may traverse: as root, PostgreSQL runs as the postgres user."""
    directory = Path(tempfile.mkdtemp(prefix="gridhub-bench-servers-"))
    directory.chmod(0o755)
    return directory
