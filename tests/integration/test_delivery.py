"""No QoS 1 reading a device was PUBACKed is lost, on every broker the product runs.

Each test runs the whole front door as `gridhub up` does — device accounts and the hub account, the
broker's device and hub listeners, the gateway as its own process, a real Kafka-compatible broker — and
loads it with Mosquitto's C client (`mosquitto_pub -l`, one process per device, its own credentials),
then reads `gridhub.telemetry` back and looks for every (device, seq).

Brokers: the embedded amqtt, the embedded Mosquitto (`gridhub.runtime.mosquitto`), and an external
Mosquitto with the generated production configuration (`gridhub devices broker-files`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from core import kafka
from core.city import load_city
from core.credentials import demo_secret, password_hash
from core.settings import load_settings
from domain.registry import Registry
from domain.telemetry import decode_record
from gridhub.runtime import mosquitto as embedded_mosquitto
from gridhub.runtime import mqtt_broker
from storage.broker_files import mosquitto_conf, write_broker_files
from storage.db import connect
from storage.devices import seed_devices
from storage.schema import init_db
from tests import brokers

pytestmark = pytest.mark.integration
GATEWAY_SECRET = "gateway-secret"
DEVICES = 5
READINGS = 2000


@dataclass
class Front:
    """A broker as GridHub runs it, with the accounts of five demo rain gauges and the gateway."""

    kind: str
    state_dir: Path
    devices: list[str]
    port: int
    hub_port: int
    start: Callable[[], subprocess.Popen[bytes]]
    process: subprocess.Popen[bytes] | None = None

    def restart(self) -> None:
        """Stop the broker as its supervisor does (SIGTERM) and start it again on the same state."""
        assert self.process is not None
        self.process.terminate()
        assert self.process.wait(20) == 0, "the broker must stop cleanly on SIGTERM"
        self.process = self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


@pytest.fixture(params=["amqtt", "mosquitto-embedded", "mosquitto-external"])
def front(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Front]:
    demo = load_city(load_settings(environ={}))
    gauges = [d for d in demo.registry if d.kind == "rain"][:DEVICES]
    engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    init_db(engine)
    seed_devices(engine, dataclasses.replace(demo, registry=Registry(gauges)), demo=True)
    auth_dir = tmp_path / "mqtt"
    write_broker_files(engine, auth_dir, {"gridhub-gateway": password_hash(GATEWAY_SECRET)})
    engine.dispose()
    port, hub_port = brokers.free_port(), brokers.free_port()
    limits = load_settings(environ={}).mqtt
    if request.param == "amqtt":
        argv = mqtt_broker.argv(host="127.0.0.1", port=port, hub_host="127.0.0.1", hub_port=hub_port,
                                auth_dir=auth_dir, state_file=tmp_path / mqtt_broker.STATE_FILE)
    elif request.param == "mosquitto-embedded":
        config = embedded_mosquitto.write_config(limits, auth_dir, tmp_path, port=port, hub_port=hub_port)
        argv = embedded_mosquitto.argv(brokers.MOSQUITTO, config)
    else:
        data = tmp_path / "mosquitto-data"
        data.mkdir()
        config = data / "mosquitto.conf"
        user = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
        config.write_text(mosquitto_conf(auth_dir, limits, port=port, hub_port=hub_port, bind="127.0.0.1",
                                         hub_bind="127.0.0.1", persistence_dir=data) + user, encoding="utf-8")
        argv = [brokers.MOSQUITTO, "-c", str(config)]

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        brokers.wait_for_port(port, process)
        brokers.wait_for_port(hub_port, process)
        return process

    front = Front(request.param, tmp_path, [d.id for d in gauges], port, hub_port, start)
    front.process = start()
    try:
        yield front
    finally:
        front.stop()


@pytest.fixture
def bootstrap() -> Iterator[str]:
    with brokers.tansu() as address:
        asyncio.run(kafka.ensure_topics(address, 4))
        yield address


class Gateway:
    """`gridhub gateway` as its own process, with its metrics on a port of its own."""

    def __init__(self, front: Front, bootstrap: str) -> None:
        self.metrics_port = brokers.free_port()
        env = dict(os.environ, GRIDHUB_STATE_DIR=str(front.state_dir), GRIDHUB_KAFKA__BOOTSTRAP=bootstrap,
                   GRIDHUB_MQTT__HOST="127.0.0.1", GRIDHUB_MQTT__PORT=str(front.port),
                   GRIDHUB_MQTT__HUB_PORT=str(front.hub_port), GRIDHUB_MQTT__PASSWORD=GATEWAY_SECRET,
                   GRIDHUB_GATEWAY__SHARED_SUBSCRIPTION="false" if front.kind == "amqtt" else "true",
                   GRIDHUB_GATEWAY__BATCH_LINGER_MS="10", **brokers.TANSU_CLIENT_ENV)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.output: list[bytes] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gridhub", "gateway", "--metrics-port", str(self.metrics_port)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._drain, daemon=True).start()
        wait_until(lambda: any(b"subscribed to" in line for line in self.output), 60, self.log)

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def log(self) -> str:
        return b"".join(self.output).decode(errors="replace")

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric, from the gateway's own /metrics."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not on /metrics")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            assert self.process.wait(20) == 0, self.log()


@contextlib.contextmanager
def gateway(front: Front, bootstrap: str) -> Iterator[Gateway]:
    process = Gateway(front, bootstrap)
    try:
        yield process
    finally:
        process.stop()


def wait_until(condition: Callable[[], bool], timeout_s: float, explain: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s\n{explain()}")
        time.sleep(0.05)


class Publishers:
    """One `mosquitto_pub -l` per device, each logged in with its own credentials, fed line by line."""

    def __init__(self, front: Front, readings: int, rate_per_device: float | None = None) -> None:
        now = int(time.time())
        self.processes = {}
        for device in front.devices:
            self.processes[device] = subprocess.Popen(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(front.port), "-q", "1", "-i", device,
                 "-u", device, "-P", demo_secret(device), "-t", f"gridhub/v1/rain/{device}/telemetry", "-l"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.sent = 0
        self._feeder = threading.Thread(target=self._feed, args=(readings, now, rate_per_device), daemon=True)
        self._feeder.start()

    def _feed(self, readings: int, now: int, rate: float | None) -> None:
        for seq in range(readings):
            for process in self.processes.values():
                assert process.stdin is not None
                process.stdin.write(orjson.dumps({"ts": now, "seq": seq, "rain_mm": 0.2}) + b"\n")
                if rate is not None:
                    process.stdin.flush()
            self.sent = seq + 1
            if rate is not None:
                time.sleep(1 / rate)  # pacing the load generator, not waiting for the system under test
        for process in self.processes.values():
            assert process.stdin is not None
            process.stdin.close()

    def wait(self) -> None:
        """Every publisher sent everything, had every message PUBACKed (it exits 0 only then), and quit."""
        self._feeder.join(120)
        for device, process in self.processes.items():
            assert process.stdout is not None
            output = process.stdout.read()  # until it exits
            assert process.wait(120) == 0, f"mosquitto_pub for {device} failed: {output.decode(errors='replace')}"


def telemetry(bootstrap: str, expected: set[tuple[str, int]], timeout_s: float = 120) -> list[tuple[str, int]]:
    """Every (device, seq) on gridhub.telemetry, with repeats, once all `expected` are there or time is up."""
    async def run() -> list[tuple[str, int]]:
        seen: list[tuple[str, int]] = []
        consumer = AIOKafkaConsumer(kafka.TELEMETRY, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not expected <= set(seen):
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    for record in records:
                        seen += [(r.device_id, r.seq) for b in decode_record(record.value) for r in b.readings]
        finally:
            await consumer.stop()
        return seen

    return asyncio.run(run())


def everything(front: Front, readings: int = READINGS) -> set[tuple[str, int]]:
    return {(device, seq) for device in front.devices for seq in range(readings)}


def test_a_burst_from_five_c_publishers_reaches_kafka_whole(front: Front, bootstrap: str) -> None:
    with gateway(front, bootstrap) as process:
        publishers = Publishers(front, READINGS)
        publishers.wait()
        seen = telemetry(bootstrap, everything(front))
        received = process.metric("gridhub_gateway_received_total")
    assert set(seen) == everything(front), f"{len(everything(front) - set(seen))} readings lost on {front.kind}"
    assert received >= DEVICES * READINGS


def test_a_gateway_killed_mid_stream_loses_nothing(front: Front, bootstrap: str) -> None:
    process = Gateway(front, bootstrap)
    publishers = Publishers(front, READINGS, rate_per_device=400)
    try:
        wait_until(lambda: process.metric("gridhub_gateway_accepted_total") >= DEVICES * READINGS / 4, 60,
                   process.log)
        process.kill()
        sent_at_kill = publishers.sent
        assert sent_at_kill < READINGS, "the kill came too late: the publishers had finished"
        process = Gateway(front, bootstrap)  # the same client id: the broker redelivers what was in flight
        publishers.wait()
        seen = telemetry(bootstrap, everything(front))
        redelivered = process.metric("gridhub_gateway_redelivered_total")
    finally:
        process.stop()
    assert set(seen) == everything(front), f"{len(everything(front) - set(seen))} readings lost on {front.kind}"
    # The broker sent the restarted gateway, flagged DUP, messages the killed one had received and not yet
    # acknowledged: the kill landed while messages were in flight.
    assert redelivered > 0, "no message was in flight when the gateway was killed"


def test_readings_queued_for_an_absent_gateway_survive_a_restart_of_the_broker(front: Front, bootstrap: str) -> None:
    with gateway(front, bootstrap):
        pass  # the gateway's persistent session and subscription now exist; it is gone while devices publish
    publishers = Publishers(front, 500)
    publishers.wait()
    front.restart()
    with gateway(front, bootstrap):
        seen = telemetry(bootstrap, everything(front, 500))
    assert set(seen) == everything(front, 500), f"{len(everything(front, 500) - set(seen))} lost on {front.kind}"
