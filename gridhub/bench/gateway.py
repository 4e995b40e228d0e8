"""`gridhub bench gateway`: the gateway's sustained accepted rate against a bare paho subscriber's ceiling.

Each phase gets a fresh broker (and Kafka) so that no session or backlog carries over. C publishers
(`mosquitto_pub -l`, one per simulated device) generate the load so that the generator is not the
bottleneck. The ceiling is a paho client that subscribes like the gateway (QoS 1, same filter,
same protocol) and only counts. The gateway's rate runs from its first receipt to its last Kafka
acknowledgement, read from the records themselves; its metrics endpoint says when it is done.

`--broker mosquitto` is a bare Mosquitto without logins. `--broker embedded` measures both embedded brokers
exactly as `gridhub up` runs them (device and hub listeners, password and ACL files, GridHub's limits): a
city runs whichever is installed, so the figure reported is the lower of the two, and both rows are shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion

from core import kafka
from core.city import load_city
from core.credentials import demo_secret, new_secret, password_hash
from core.settings import load_settings
from domain.telemetry import decode_record
from gridhub import localbrokers
from gridhub.bench import BenchResult, mosquitto_version
from storage import broker_files as broker_auth
from storage.db import connect
from storage.devices import seed_devices
from storage.schema import init_db

TARGET_RATE = 15_000
TARGET_RATIO = 0.7
TARGET_SCALING = 1.6
# What GridHub's generated Mosquitto configuration sets: queue and in-flight limits that never drop QoS 1.
MOSQUITTO_CONFIG = "allow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n"
TELEMETRY_FILTER = "gridhub/v1/+/+/telemetry"
EMBEDDED = ("mosquitto", "amqtt")
GATEWAY_ACCOUNT = "gridhub-gateway"


@dataclass(frozen=True)
class Endpoint:
    """A running broker: devices publish to `port`, gateways subscribe on `hub_port`, with these logins."""

    port: int
    hub_port: int
    gateway_password: str | None  # None: a broker without logins

    def device_login(self, device_id: str) -> list[str]:
        """mosquitto_pub's login options for a demo-city device."""
        return ["-u", device_id, "-P", demo_secret(device_id)] if self.gateway_password else []


@dataclass(frozen=True)
class Load:
    """N messages from M rain gauges, written once as line files for mosquitto_pub."""

    messages: int
    devices: int
    directory: Path

    def files(self) -> list[tuple[str, Path]]:
        """(device id, payload lines file) per device; timestamps are now, seq numbers unique per device."""
        now = int(time.time())
        per_device = self.messages // self.devices
        files = []
        for index in range(1, self.devices + 1):
            device_id = f"rain-{index:04d}"
            path = self.directory / f"{device_id}.lines"
            path.write_text("".join(f'{{"ts": {now}, "seq": {seq}, "rain_mm": 0.2}}\n' for seq in range(per_device)),
                            encoding="utf-8")
            files.append((device_id, path))
        return files

    @property
    def total(self) -> int:
        """Messages actually sent (a whole number per device)."""
        return self.messages // self.devices * self.devices


def publish(broker: Endpoint, files: list[tuple[str, Path]]) -> float:
    """Run one mosquitto_pub per device at once; return the seconds they took."""
    started = time.perf_counter()
    processes = []
    for device_id, path in files:
        with path.open("rb") as lines:
            processes.append(subprocess.Popen(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-l", "-i", device_id,
                 "-t", f"gridhub/v1/rain/{device_id}/telemetry", *broker.device_login(device_id)], stdin=lines))
    for process in processes:
        if process.wait(300) != 0:
            raise RuntimeError(f"mosquitto_pub exited with {process.returncode}")
    return time.perf_counter() - started


def ceiling(broker: Endpoint, load: Load, protocol: str) -> float:
    """Messages per second a bare paho subscriber receives while the load is published."""
    received = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(_client: mqtt.Client, _userdata: object, _message: mqtt.MQTTMessage) -> None:
        nonlocal received, first, last
        last = time.perf_counter()
        if received == 0:
            first = last
        received += 1
        if received >= load.total:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{GATEWAY_ACCOUNT}-ceiling",
                         protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311)
    if broker.gateway_password:
        client.username_pw_set(GATEWAY_ACCOUNT, broker.gateway_password)
    client.on_message = on_message
    client.connect("127.0.0.1", broker.hub_port)
    client.subscribe(TELEMETRY_FILTER, qos=1)
    client.loop_start()
    time.sleep(0.5)
    try:
        publish(broker, load.files())
        if not done.wait(300):
            raise RuntimeError(f"the bare subscriber received {received} of {load.total}")
    finally:
        client.loop_stop()
        client.disconnect()
    return (received - 1) / (last - first)


@contextlib.contextmanager
def gateways(count: int, bootstrap: str, broker: Endpoint, directory: Path, settings_env: dict[str, str]
             ) -> Iterator[list[int]]:
    """Start `count` gateways in one shared subscription; yield their metrics ports."""
    processes, metrics_ports = [], []
    try:
        for index in range(1, count + 1):
            metrics_port = localbrokers.free_port()
            log = (directory / f"gateway-{index}.log").open("wb")
            env = dict(os.environ, GRIDHUB_KAFKA__BOOTSTRAP=bootstrap, GRIDHUB_MQTT__HOST="127.0.0.1",
                       GRIDHUB_MQTT__PORT=str(broker.port), GRIDHUB_MQTT__HUB_PORT=str(broker.hub_port),
                       GRIDHUB_STATE_DIR=str(directory / "state"), GRIDHUB_LOG_LEVEL="warning",
                       **localbrokers.TANSU_CLIENT_ENV, **settings_env)
            if broker.gateway_password:
                env["GRIDHUB_MQTT__PASSWORD"] = broker.gateway_password
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "gridhub", "gateway", "--client-id", f"{GATEWAY_ACCOUNT}-{index}",
                 "--metrics-port", str(metrics_port)], env=env, stdout=log, stderr=subprocess.STDOUT))
            metrics_ports.append(metrics_port)
        for metrics_port in metrics_ports:
            _wait_for_metrics(metrics_port)
        time.sleep(1.0)  # metrics answer before the MQTT subscription is in place
        yield metrics_ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


def gateway_rate(count: int, broker: Endpoint, bootstrap: str, load: Load, directory: Path,
                 settings_env: dict[str, str]) -> float:
    """Accepted readings per second through `count` gateways, first receipt to last Kafka acknowledgement."""
    with gateways(count, bootstrap, broker, directory, settings_env) as metrics_ports:
        started_ms = int(time.time() * 1000)
        publish(broker, load.files())
        deadline = time.monotonic() + 300
        while sum(_accepted(p) for p in metrics_ports) < load.total:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateways did not accept every message within 300 s")
            time.sleep(0.5)
    first_received, last_produced, readings = asyncio.run(_produce_span(bootstrap, started_ms))
    if readings < load.total:
        raise RuntimeError(f"Kafka holds {readings} readings, expected {load.total}")
    return (readings - 1) / ((last_produced - first_received) / 1000)


async def _produce_span(bootstrap: str, since_ms: int) -> tuple[int, int, int]:
    consumer = AIOKafkaConsumer(kafka.TELEMETRY, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    first, last, count = 2**63, 0, 0
    try:
        idle = 0
        while idle < 3:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for record in records:
                    readings = [r for batch in decode_record(record.value) for r in batch.readings
                                if r.received_ms >= since_ms]
                    if readings:
                        count += len(readings)
                        first = min(first, *(r.received_ms for r in readings))
                        last = max(last, record.timestamp)
    finally:
        await consumer.stop()
    return first, last, count


def _wait_for_metrics(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).raise_for_status()
            return
        time.sleep(0.2)
    raise RuntimeError(f"a gateway did not start (metrics port {port})")


def _accepted(port: int) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    match = re.search(r"^gridhub_gateway_accepted_total (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def _registry(directory: Path) -> str:
    """The demo city's devices (demo secrets) in `directory`/state, the broker files, and a new gateway password."""
    state = directory / "state"
    engine = connect(f"sqlite:///{state / 'gridhub.db'}")
    init_db(engine)
    seed_devices(engine, load_city(load_settings(environ={})), demo=True)
    password = new_secret()
    broker_auth.write_broker_files(engine, state / "mqtt", {GATEWAY_ACCOUNT: password_hash(password)})
    engine.dispose()
    return password


@contextlib.contextmanager
def _broker(kind: str, directory: Path, gateway_password: str) -> Iterator[Endpoint]:
    """A fresh broker: 'mosquitto' bare, or an embedded one ('embedded-mosquitto', 'embedded-amqtt')."""
    if kind == "mosquitto":
        with localbrokers.mosquitto(directory, MOSQUITTO_CONFIG) as port:
            yield Endpoint(port, port, None)
        return
    sessions = Path(tempfile.mkdtemp(prefix="broker-", dir=directory))  # no session carries over between phases
    with localbrokers.embedded(kind.removeprefix("embedded-"), sessions, directory / "state" / "mqtt") as running:
        yield Endpoint(running.port, running.hub_port, gateway_password)


@dataclass(frozen=True)
class _Rates:
    baseline: float
    one: float
    two: float | None  # two gateways in a shared subscription, where the broker has them


def _measure(kind: str, load: Load, protocol: str, directory: Path, gateway_password: str) -> _Rates:
    shared = kind != "embedded-amqtt"  # amqtt has no $share
    settings_env = {"GRIDHUB_GATEWAY__PROTOCOL": protocol, "GRIDHUB_GATEWAY__SHARED_SUBSCRIPTION": str(shared)}
    with _broker(kind, directory, gateway_password) as broker:
        baseline = ceiling(broker, load, protocol)
    rates = {}
    for count in (1, 2) if shared else (1,):
        with _broker(kind, directory, gateway_password) as broker, localbrokers.tansu() as bootstrap:
            asyncio.run(kafka.ensure_topics(bootstrap, 6))
            rates[count] = gateway_rate(count, broker, bootstrap, load, directory, settings_env)
    return _Rates(baseline, rates[1], rates.get(2))


def _met(rates: _Rates) -> bool:
    met = rates.one >= TARGET_RATE and rates.one / rates.baseline >= TARGET_RATIO
    return met and (rates.two is None or rates.two / rates.one >= TARGET_SCALING)


def _row(prefix: str, rates: _Rates) -> dict[str, object]:
    row: dict[str, object] = {f"{prefix}one_gateway_msg_s": round(rates.one),
                              f"{prefix}bare_paho_msg_s": round(rates.baseline)}
    if rates.two is not None:
        row[f"{prefix}two_gateways_msg_s"] = round(rates.two)
        row[f"{prefix}scaling"] = round(rates.two / rates.one, 2)
    return row


def run(messages: int, devices: int, broker: str, protocol: str) -> BenchResult:
    """The whole benchmark on one broker kind ('mosquitto', or 'embedded' for both embedded brokers) and MQTT
    protocol ('3.1.1' or '5'; amqtt speaks 3.1.1 only)."""
    kinds = [f"embedded-{kind}" for kind in EMBEDDED] if broker == "embedded" else [broker]
    with tempfile.TemporaryDirectory(prefix="gridhub-bench-") as tmp:
        directory = Path(tmp)
        gateway_password = _registry(directory)
        load = Load(messages, devices, directory)
        measured = {kind: _measure(kind, load, protocol if kind != "embedded-amqtt" else "3.1.1", directory,
                                   gateway_password) for kind in kinds}
    details: dict[str, object] = {"messages": load.total, "devices": devices, "broker": broker, "mqtt": protocol}
    if broker == "embedded":
        for kind, rates in measured.items():
            details.update(_row(f"{kind.removeprefix('embedded-')}_", rates))
        slowest = min(measured, key=lambda kind: measured[kind].one)
        details["reported"] = slowest
        details["broker_version"] = (f"{mosquitto_version(localbrokers.mosquitto_binary())} + "
                                     f"amqtt {importlib.metadata.version('amqtt')} (embedded)")
    else:
        slowest = broker
        details.update(_row("", measured[broker]))
        details["broker_version"] = mosquitto_version(localbrokers.mosquitto_binary())
    reported = measured[slowest]
    return BenchResult(
        name="gateway", value=round(reported.one), unit="msg/s", baseline=round(reported.baseline),
        target=f">= {TARGET_RATE} msg/s, ratio >= {TARGET_RATIO}, two gateways >= {TARGET_SCALING}x "
        "(on brokers with shared subscriptions)" + (", on each embedded broker" if broker == "embedded" else ""),
        met=all(_met(rates) for rates in measured.values()), details=details,
    )
