"""Real Apache Kafka, PostgreSQL, InfluxDB 2 and Mosquitto on loopback: the production profile on one machine,
and what the integration tests run against (`gridhub services up|down|status|build`).

Kafka's jars and an influxd binary are fetched or built once into ~/.cache/gridhub/<name>-<version>/ by
tools/services/build-*.sh (`GRIDHUB_CACHE` moves it); PostgreSQL and Mosquitto are Debian's. Each service runs
detached in its own session (so `gridhub services up` can return) on free loopback ports, keeps its data in
DIR/<service>/ and logs to DIR/<service>.log. DIR/services.json (mode 0600) records pids, ports, URLs and
credentials; DIR/gridhub.yaml points GridHub at the services, its secrets in files beside it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.credentials import new_secret, password_hash
from core.files import write_atomically
from core.settings import MqttSettings, TelemetryStoreSettings
from gridhub.localbrokers import free_port, mosquitto_binary, wait_for_port
from gridhub.runtime import mosquitto as embedded_mosquitto
from storage import broker_files as broker_auth

LOOPBACK = "127.0.0.1"
CACHE_DIR = Path(os.environ.get("GRIDHUB_CACHE", Path.home() / ".cache" / "gridhub"))
BUILD_SCRIPTS = Path(__file__).resolve().parent.parent / "tools" / "services"
STATE_FILE = "services.json"
CONFIG_FILE = "gridhub.yaml"
INFLUX_TOKEN_FILE = "influx.token"
GATEWAY_SECRET_FILE = "mqtt-gateway.secret"
LOG_TAIL_LINES = 30
#: A topic of its own for the readiness probe: a record on it proves the broker leads partitions again.
KAFKA_PROBE_TOPIC = "gridhub.services.probe"
KAFKA_HEAP = ("-Xms128m", "-Xmx512m")  # two cores and the rest of GridHub share the machine

H = TypeVar("H", bound="ServiceHandle")


class ServiceError(RuntimeError):
    """A service that could not be built, started or stopped: which, why, and the end of its log."""


class ServiceHandle(ABC):
    """One service on loopback: started detached, stopped, killed and started again on the same ports and data.

    A handle made by `start` or `running_services` owns its process; one read back from services.json (`status`)
    can still stop or kill it, recognising it by its data directory on its command line.
    """

    name: ClassVar[str]
    port_names: ClassVar[tuple[str, ...]] = ("port",)
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    ready_timeout_s: ClassVar[float] = 60.0
    stop_timeout_s: ClassVar[float] = 30.0

    def __init__(self, directory: Path, ports: Mapping[str, int] | None = None, pid: int | None = None,
                 credentials: Mapping[str, str] | None = None) -> None:
        self.directory = directory.resolve()
        self.data_dir = self.directory / self.name
        self.log_file = self.directory / f"{self.name}.log"
        self.ports = dict(ports) if ports else _free_ports(self.port_names)
        self.pid = pid
        self.credentials = dict(credentials or {})
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return self.ports["port"]

    @property
    @abstractmethod
    def url(self) -> str:
        """Where clients connect, in the form GridHub's settings take."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """This service's part of gridhub.yaml."""

    @abstractmethod
    def argv(self) -> list[str]:
        """The service's command line."""

    def __enter__(self: H) -> H:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def running(self) -> bool:
        """Is the service's process alive?"""
        if self._process is not None:
            return self._process.poll() is None
        return self.pid is not None and _runs(self.pid, str(self.data_dir))

    def start(self) -> None:
        """Start the service and wait until it serves; the first start also creates its data."""
        if self.running():
            raise ServiceError(f"{self.name}: already running (pid {self.pid})")
        fresh = not self.data_dir.exists()
        try:
            if fresh:
                self._initialise()
            self._launch()
            self._wait_ready()
            if fresh:
                self._set_up()
        except BaseException:
            self.kill()
            if fresh:  # the next start must initialise again, not trust half-made data
                shutil.rmtree(self.data_dir, ignore_errors=True)
            raise
        _record(self.directory, self.name, self.record())

    def stop(self) -> None:
        """Stop the service the way it likes to be stopped; kill it if it takes longer than `stop_timeout_s`."""
        if self.running() and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, self.stop_signal)
            if not self._wait_exit(self.stop_timeout_s):
                self.kill()
        self._forget_process()

    def kill(self) -> None:
        """SIGKILL the service's whole process group, as a crash would end it; its data stays."""
        if self.running() and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self._wait_exit(self.stop_timeout_s)
        self._forget_process()

    def record(self) -> dict[str, Any]:
        """What services.json keeps of this service."""
        return {"pid": self.pid, "ports": self.ports, "url": self.url, "log": str(self.log_file),
                "credentials": self.credentials}

    def _initialise(self) -> None:
        """Create the data directory and whatever the service needs before its first start."""
        self.data_dir.mkdir(parents=True)

    def _not_ready(self) -> str | None:
        """Why the service does not serve yet, or None once it does (its port already accepts connections)."""
        return None

    def _set_up(self) -> None:  # noqa: B027 (most services need nothing once they serve)
        """What the first start does once the service serves: a database, an organisation."""

    def _popen_options(self) -> dict[str, Any]:
        return {}

    def _launch(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n=== gridhub services: {self.name} starting at {time.strftime('%F %T')} ===\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir,
                start_new_session=True, **self._popen_options())
        self.pid = self._process.pid

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        try:
            for port in self.ports.values():
                wait_for_port(port, self._process, max(deadline - time.monotonic(), 0.1))
        except (RuntimeError, TimeoutError) as exc:
            raise self._error(str(exc)) from None
        while True:
            if self._process.poll() is not None:
                raise self._error(f"exited with {self._process.returncode} while starting")
            problem = self._not_ready()
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise self._error(f"not ready after {self.ready_timeout_s:.0f} s: {problem}")
            time.sleep(0.2)

    def _wait_exit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(0.1)
            if not self.running():
                return True
            time.sleep(0.05)
        return False

    def _forget_process(self) -> None:
        self._process, self.pid = None, None
        if (self.directory / STATE_FILE).exists():
            _record(self.directory, self.name, self.record())

    def _run(self, argv: list[str], what: str) -> None:
        """Run a set-up command with its output in the service's log; fail naming `what` it was doing."""
        with self.log_file.open("ab") as log:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=self.data_dir, check=False, **self._popen_options())
        if done.returncode != 0:
            raise self._error(f"{what} failed with exit code {done.returncode}")

    def _error(self, reason: str) -> ServiceError:
        return ServiceError(f"{self.name}: {reason}; the end of {self.log_file}:\n{_tail(self.log_file)}")


class Kafka(ServiceHandle):
    """Apache Kafka in KRaft mode, one node that is both broker and controller."""

    name = "kafka"
    port_names = ("port", "controller_port")
    # A broker restarted after a kill waits ~9 s for its old registration to expire (DuplicateBrokerRegistration).
    ready_timeout_s = 120.0
    stop_timeout_s = 60.0

    @property
    def url(self) -> str:
        """The bootstrap address."""
        return f"{LOOPBACK}:{self.port}"

    def settings(self) -> dict[str, Any]:
        """Point GridHub at this broker instead of the embedded one."""
        return {"kafka": {"bootstrap": self.url}}

    def argv(self) -> list[str]:
        """The broker's JVM."""
        return [_java(), *KAFKA_HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "-cp", str(cached_artefact("kafka") / "libs" / "*"), "kafka.Kafka", str(self._properties)]

    @property
    def _properties(self) -> Path:
        return self.data_dir / "server.properties"

    def _initialise(self) -> None:
        build([self.name])
        super()._initialise()
        port, controller = self.ports["port"], self.ports["controller_port"]
        self._properties.write_text(f"""\
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller}
advertised.listeners=PLAINTEXT://{LOOPBACK}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.bootstrap.servers={LOOPBACK}:{controller}
log.dirs={self.data_dir / 'data'}
# One node: internal topics cannot have more replicas than that.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumer groups form at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
""", encoding="utf-8")
        (self.data_dir / "log4j2.properties").write_text("""\
rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
# Every client and server prints its whole configuration at INFO: thousands of lines per start.
logger.config.name=org.apache.kafka.common.config.AbstractConfig
logger.config.level=WARN
""", encoding="utf-8")
        self._run([_java(), *KAFKA_HEAP, "-cp", str(cached_artefact("kafka") / "libs" / "*"),
                   "kafka.tools.StorageTool", "format", "--standalone", "-t", kafka_cluster_id(),
                   "-c", str(self._properties)], "formatting the KRaft storage")

    def _not_ready(self) -> str | None:
        # The port opens, and metadata answers, while a restarted broker is still fenced: only a produce
        # that the broker acknowledges shows it leads partitions again.
        try:
            asyncio.run(asyncio.wait_for(_kafka_probe(self.url), 10))
        except Exception as exc:
            return f"a probe record was not acknowledged ({type(exc).__name__}: {exc})"
        return None


async def _kafka_probe(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        if KAFKA_PROBE_TOPIC not in await admin.list_topics():
            await admin.create_topics([NewTopic(KAFKA_PROBE_TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000)
    await producer.start()
    try:
        await producer.send_and_wait(KAFKA_PROBE_TOPIC, b"ready")
    finally:
        await producer.stop()


class Postgres(ServiceHandle):
    """Debian's PostgreSQL with database `gridhub`, user `postgres` trusted on loopback (no password)."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for every client to disconnect
    ready_timeout_s = 60.0
    database = "gridhub"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL GridHub's `database.url` takes."""
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/{self.database}"

    def settings(self) -> dict[str, Any]:
        """Point GridHub's case and registry database here."""
        return {"database": {"url": self.url}}

    def argv(self) -> list[str]:
        """The postmaster, on TCP only."""
        return [str(_postgres_bin() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-c", f"listen_addresses={LOOPBACK}", "-c", "unix_socket_directories="]

    def _popen_options(self) -> dict[str, Any]:
        # PostgreSQL refuses to run as root: root runs it, initdb included, as the postgres user.
        return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}

    def _initialise(self) -> None:
        super()._initialise()
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
            reachable = subprocess.run(["test", "-w", str(self.data_dir)], check=False, **self._popen_options())
            if reachable.returncode != 0:
                raise ServiceError(
                    f"postgres: the postgres user (PostgreSQL refuses to run as root) cannot reach {self.data_dir}; "
                    "give it search permission on every parent directory (chmod o+x) or choose a --dir it can reach")
        self._run([str(_postgres_bin() / "initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--no-locale"], "initdb")

    def _not_ready(self) -> str | None:
        ready = subprocess.run([str(_postgres_bin() / "pg_isready"), "-h", LOOPBACK, "-p", str(self.port),
                                "-U", "postgres", "-d", "postgres", "-t", "2"],
                               capture_output=True, text=True, check=False)
        return None if ready.returncode == 0 else ready.stdout.strip()

    def _set_up(self) -> None:
        self._run([str(_postgres_bin() / "createdb"), "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres",
                   self.database], f"createdb {self.database}")
        self.credentials = {"user": "postgres", "auth": "trust (loopback only)"}


class InfluxDB(ServiceHandle):
    """InfluxDB OSS 2, onboarded with GridHub's organisation and bucket and a random operator token."""

    name = "influxdb"

    @property
    def url(self) -> str:
        """The HTTP API."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def token_file(self) -> Path:
        """The operator token, mode 0600: GridHub reads it through `telemetry_store.influx_token_file`."""
        return self.directory / INFLUX_TOKEN_FILE

    def settings(self) -> dict[str, Any]:
        """Keep telemetry in this InfluxDB; the token stays in its file."""
        store = TelemetryStoreSettings()
        return {"telemetry_store": {"backend": "influxdb", "influx_url": self.url, "influx_org": store.influx_org,
                                    "influx_bucket": store.influx_bucket, "influx_token_file": str(self.token_file)}}

    def argv(self) -> list[str]:
        """influxd with all its files in the data directory."""
        return [str(cached_artefact("influxdb") / "influxd"), "--bolt-path", str(self.data_dir / "influxd.bolt"),
                "--engine-path", str(self.data_dir / "engine"), "--sqlite-path", str(self.data_dir / "influxd.sqlite"),
                "--http-bind-address", f"{LOOPBACK}:{self.port}", "--reporting-disabled"]

    def _initialise(self) -> None:
        build([self.name])
        super()._initialise()

    def _not_ready(self) -> str | None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return None if response.status == 200 else f"/health answered {response.status}"
        except (OSError, urllib.error.URLError) as exc:
            return f"/health: {exc}"

    def _set_up(self) -> None:
        store = TelemetryStoreSettings()
        self.credentials = {"username": "gridhub", "password": new_secret(), "token": new_secret(),
                            "token_file": str(self.token_file)}
        body = {"username": "gridhub", "password": self.credentials["password"], "org": store.influx_org,
                "bucket": store.influx_bucket, "token": self.credentials["token"]}
        request = urllib.request.Request(f"{self.url}/api/v2/setup", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except (OSError, urllib.error.URLError) as exc:
            raise self._error(f"onboarding (POST /api/v2/setup) failed: {exc}") from None
        write_atomically(self.token_file, self.credentials["token"].encode())


class Mosquitto(ServiceHandle):
    """Debian's Mosquitto with GridHub's production configuration: a device listener and a hub listener, each
    with its password and ACL files in DIR/mosquitto/auth/ (`mqtt.auth_dir`).

    It starts with the gateway's account and no devices: `gridhub up` and `gridhub devices` write the registry's
    devices into the same files, and Mosquitto reads them only at start and on `reload`.
    """

    name = embedded_mosquitto.STATE_SUBDIR  # write_config puts the configuration and sessions in DIR/<this>/
    port_names = ("port", "hub_port")
    ready_timeout_s = 15.0

    @property
    def url(self) -> str:
        """The device listener."""
        return f"mqtt://{LOOPBACK}:{self.port}"

    @property
    def auth_dir(self) -> Path:
        """The password and ACL files."""
        return self.data_dir / "auth"

    @property
    def gateway_secret_file(self) -> Path:
        """The gateway's password, mode 0600: GridHub reads it through `mqtt.password_file`."""
        return self.directory / GATEWAY_SECRET_FILE

    def settings(self) -> dict[str, Any]:
        """Point GridHub's gateways at the hub listener, devices at the device listener."""
        return {"mqtt": {"host": LOOPBACK, "port": self.port, "hub_port": self.ports["hub_port"],
                         "password_file": str(self.gateway_secret_file), "auth_dir": str(self.auth_dir)}}

    def argv(self) -> list[str]:
        """mosquitto on the configuration `gridhub up` gives its embedded Mosquitto."""
        return embedded_mosquitto.argv(mosquitto_binary(), self.data_dir / broker_auth.CONF_FILE)

    def reload(self) -> None:
        """Make Mosquitto read its password and ACL files again (after `gridhub up` or `gridhub devices`)."""
        if self.pid is None or not self.running():
            raise ServiceError("mosquitto: not running")
        os.kill(self.pid, signal.SIGHUP)

    def _initialise(self) -> None:
        super()._initialise()
        mqtt = MqttSettings()
        secret = new_secret()
        write_atomically(self.gateway_secret_file, secret.encode())
        accounts = {mqtt.username: password_hash(secret)}
        self.auth_dir.mkdir()
        # The same files `broker_files.write_broker_files` writes, for a registry without devices yet.
        for file, text in ((broker_auth.HUB_ACL_FILE, broker_auth.render_hub_acl(accounts)),
                           (broker_auth.ACL_FILE, broker_auth.render_device_acl()),
                           (broker_auth.HUB_PASSWORD_FILE, broker_auth.render_password_file(accounts)),
                           (broker_auth.PASSWORD_FILE, broker_auth.render_password_file({}))):
            write_atomically(self.auth_dir / file, text.encode(), broker_auth.FILE_MODE)
        embedded_mosquitto.write_config(mqtt, self.auth_dir, self.directory, port=self.port,
                                        hub_port=self.ports["hub_port"])
        self.credentials = {"username": mqtt.username, "password_file": str(self.gateway_secret_file)}


KINDS: dict[str, type[ServiceHandle]] = {kind.name: kind for kind in (Kafka, Postgres, InfluxDB, Mosquitto)}
NAMES = tuple(KINDS)


class Services:
    """The services of one directory, and the GridHub settings file that points at them."""

    def __init__(self, directory: Path, handles: Mapping[str, ServiceHandle]) -> None:
        self.directory = directory.resolve()
        self.handles = dict(handles)

    @property
    def config_file(self) -> Path:
        """DIR/gridhub.yaml: `gridhub up --config` it."""
        return self.directory / CONFIG_FILE

    @property
    def kafka(self) -> Kafka:
        """The Kafka broker."""
        return self._get(Kafka)

    @property
    def postgres(self) -> Postgres:
        """The PostgreSQL server."""
        return self._get(Postgres)

    @property
    def influxdb(self) -> InfluxDB:
        """The InfluxDB server."""
        return self._get(InfluxDB)

    @property
    def mosquitto(self) -> Mosquitto:
        """The Mosquitto broker."""
        return self._get(Mosquitto)

    def _get(self, kind: type[H]) -> H:
        handle = self.handles.get(kind.name)
        if not isinstance(handle, kind):
            raise KeyError(f"{kind.name} is not among the services in {self.directory}")
        return handle


def kafka_cluster_id(source: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A KRaft cluster id: a UUID in URL-safe base64 that does not start with "-".

    The storage tool's argument parser reads an id that starts with "-" as an option and fails the format
    (one id in 64). Kafka's own ``Uuid.randomUuid()`` draws again in that case, and so does this.
    """
    while (cluster_id := base64.urlsafe_b64encode(source().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return cluster_id


def start(directory: Path, which: Iterable[str] = NAMES) -> Services:
    """Start fresh services (their data directories emptied) on free ports; write services.json and gridhub.yaml."""
    wanted = set(which)
    names = [name for name in NAMES if name in wanted]
    unknown = wanted - set(NAMES)
    if unknown:
        raise ServiceError(f"unknown service(s) {', '.join(sorted(unknown))}; choose from {', '.join(NAMES)}")
    already = [handle for handle in status(directory).handles.values() if handle.running()]
    if already:
        raise ServiceError(f"{', '.join(h.name for h in already)} already running from {directory}: "
                           f"`gridhub services down --dir {directory}` first")
    build(names)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE_FILE).unlink(missing_ok=True)
    handles = {name: KINDS[name](directory) for name in names}
    for handle in handles.values():
        shutil.rmtree(handle.data_dir, ignore_errors=True)
        handle.log_file.unlink(missing_ok=True)
    _save_state(directory, {})
    # Started side by side: Kafka's JVM takes longest, and the others need not wait for it.
    with ThreadPoolExecutor(max_workers=len(handles) or 1) as pool:
        outcomes = {name: pool.submit(handle.start) for name, handle in handles.items()}
    errors = [error for error in (outcome.exception() for outcome in outcomes.values()) if error is not None]
    if errors:
        for handle in handles.values():
            handle.kill()
        raise ServiceError("\n".join(str(error) for error in errors))
    services = Services(directory, handles)
    _write_config(services)
    return services


def stop(directory: Path) -> list[str]:
    """Stop every service recorded in DIR/services.json; return the names of those that were running."""
    services = status(directory)
    stopped = []
    for handle in reversed(services.handles.values()):
        if handle.running():
            handle.stop()
            stopped.append(handle.name)
    (directory / STATE_FILE).unlink(missing_ok=True)
    return stopped


def status(directory: Path) -> Services:
    """The services DIR/services.json records, each able to tell whether it is `running()`."""
    state = _load_state(directory)
    return Services(directory, {
        name: KINDS[name](directory, ports=state[name]["ports"], pid=state[name]["pid"],
                          credentials=state[name]["credentials"])
        for name in NAMES if name in state
    })


@contextlib.contextmanager
def running_services(directory: Path, which: Iterable[str] = NAMES) -> Iterator[Services]:
    """Fresh services for the block (a pytest fixture's), stopped when it ends."""
    services = start(directory, which)
    try:
        yield services
    finally:
        for handle in reversed(services.handles.values()):
            handle.stop()
        (directory / STATE_FILE).unlink(missing_ok=True)


def build(which: Iterable[str] = NAMES) -> None:
    """Fetch or build the cached artefacts of the chosen services that need one and do not have it yet."""
    wanted = set(which)
    for name in ("kafka", "influxdb"):
        if name in wanted and not is_cached(name):
            script = BUILD_SCRIPTS / f"build-{name}.sh"
            if not script.exists():
                raise ServiceError(f"{name}: not cached in {CACHE_DIR} and no {script}: run from a GridHub checkout")
            done = subprocess.run(["bash", str(script)], check=False,
                                  env={**os.environ, "GRIDHUB_CACHE": str(CACHE_DIR)})
            if done.returncode != 0 or not is_cached(name):
                raise ServiceError(f"{name}: {script.name} failed with exit code {done.returncode} (output above)")


def cached_artefact(name: str) -> Path:
    """~/.cache/gridhub/<name>-<version>/, the version read from its build script (the one place it is set)."""
    script = (BUILD_SCRIPTS / f"build-{name}.sh").read_text(encoding="utf-8")
    found = re.search(rf'^{name.upper()}_VERSION="([^"]+)"', script, re.MULTILINE)
    if found is None:
        raise ServiceError(f"{name}: build-{name}.sh does not set {name.upper()}_VERSION")
    return CACHE_DIR / f"{name}-{found.group(1)}"


def is_cached(name: str) -> bool:
    """Is the artefact of `name` (kafka, influxdb) in the cache?"""
    artefact = cached_artefact(name)
    return any((artefact / "libs").glob("kafka_*.jar")) if name == "kafka" else (artefact / "influxd").is_file()


def _write_config(services: Services) -> None:
    settings: dict[str, Any] = {}
    for handle in services.handles.values():
        settings.update(handle.settings())
    header = (f"# Written by `gridhub services up` for the services in {services.directory}; "
              "secrets are in the files it names.\n")
    services.config_file.write_text(header + yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")


def _record(directory: Path, name: str, record: Mapping[str, Any]) -> None:
    """Replace one service's entry in services.json; a lock keeps concurrent starts from losing each other's."""
    with _locked(directory):
        state = _load_state(directory)
        state[name] = dict(record)
        _save_state(directory, state)


def _load_state(directory: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return state


def _save_state(directory: Path, state: Mapping[str, Any]) -> None:
    # Mode 0600: the records hold the InfluxDB operator's password and token.
    write_atomically(directory / STATE_FILE, json.dumps(state, indent=2).encode())


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with (directory / ".services.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _free_ports(names: Iterable[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for name in names:
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[name] = port
    return ports


def _runs(pid: int, marker: str) -> bool:
    """Is `pid` a live process (not a zombie) whose command line names `marker`, so not a recycled pid?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return marker in cmdline and state != "Z"


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _java() -> str:
    found = shutil.which("java")
    if found is None:
        raise ServiceError("kafka: no `java` on PATH; Kafka 4 needs Java 17 or newer (apt-get install default-jre)")
    return found


def _postgres_bin() -> Path:
    """The newest of Debian's PostgreSQL installations (/usr/lib/postgresql/<major>/bin), else initdb's on PATH."""
    newest = max(glob.glob("/usr/lib/postgresql/*/bin/initdb"), default=None,
                 key=lambda path: [int(number) for number in re.findall(r"\d+", Path(path).parts[-3])])
    if newest is not None:
        return Path(newest).parent
    on_path = shutil.which("initdb")
    if on_path is None:
        raise ServiceError("postgres: PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return Path(on_path).parent
