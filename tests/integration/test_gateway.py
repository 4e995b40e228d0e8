"""The gateway against real brokers: Mosquitto (MQTT 5, shared subscription) and the embedded amqtt broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion

from domain.telemetry import Reading, StatusChange, decode_record
from gridhub import kafka
from tests import brokers

pytestmark = pytest.mark.integration

# Queues sized as GridHub's generated Mosquitto config does: never drop QoS 1 for a slow or absent gateway.
MOSQUITTO_CONFIG = "allow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n"


def start_gateway(bootstrap: str, mqtt_port: int, *extra_env: tuple[str, str]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, GRIDHUB_KAFKA__BOOTSTRAP=bootstrap, GRIDHUB_MQTT__HOST="127.0.0.1",
               GRIDHUB_MQTT__PORT=str(mqtt_port), GRIDHUB_GATEWAY__BATCH_LINGER_MS="10", **dict(extra_env))
    return subprocess.Popen([sys.executable, "-m", "gridhub", "gateway"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def gateway(bootstrap: str, mqtt_port: int, *extra_env: tuple[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = start_gateway(bootstrap, mqtt_port, *extra_env)
    try:
        wait_for_log(process, b"subscribed to")
        yield process
    finally:
        process.terminate()
        assert process.wait(20) == 0


def wait_for_log(process: subprocess.Popen[bytes], needle: bytes, timeout_s: float = 30) -> None:
    """Read the gateway's output until `needle` appears (the rest keeps flowing to a drain thread)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    seen = b""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen += line
        if needle in line:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
            return
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"gateway never logged {needle!r}:\n{seen.decode(errors='replace')}")


def publisher(port: int, client_id: str = "test-publisher", **kwargs: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if "username" in kwargs:
        client.username_pw_set(kwargs["username"], kwargs.get("password"))
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def collect(bootstrap: str, until: Callable[[list[Reading], list[StatusChange], list[dict[str, object]]], bool],
            timeout_s: float = 60) -> tuple[list[Reading], list[StatusChange], list[dict[str, object]]]:
    """Read gridhub.telemetry and gridhub.deadletter from the start until `until(...)` holds."""
    async def run() -> tuple[list[Reading], list[StatusChange], list[dict[str, object]]]:
        readings: list[Reading] = []
        statuses: list[StatusChange] = []
        dead: list[dict[str, object]] = []
        consumer = AIOKafkaConsumer(kafka.TELEMETRY, kafka.DEADLETTER, bootstrap_servers=bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not until(readings, statuses, dead):
                for partition, records in (await consumer.getmany(timeout_ms=300)).items():
                    for record in records:
                        if partition.topic == kafka.DEADLETTER:
                            dead.append(orjson.loads(record.value))
                        else:
                            for batch in decode_record(record.value):
                                readings.extend(batch.readings)
                                statuses.extend(batch.statuses)
        finally:
            await consumer.stop()
        return readings, statuses, dead

    return asyncio.run(run())


def rain(seq: int, ts: int | None = None) -> bytes:
    return orjson.dumps({"ts": ts or int(time.time()), "seq": seq, "rain_mm": 0.2})


@pytest.fixture
def bootstrap() -> Iterator[str]:
    """A fresh Kafka-compatible broker per test, with GridHub's topics."""
    with brokers.tansu() as address:
        asyncio.run(kafka.ensure_topics(address, 4))
        yield address


@pytest.fixture(params=["mosquitto", "mosquitto-mqtt5", "amqtt"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """An MQTT broker and the gateway settings it needs."""
    if request.param == "amqtt":  # no $share support: one gateway, a plain subscription
        with brokers.amqtt() as port:
            yield port, [("GRIDHUB_GATEWAY__SHARED_SUBSCRIPTION", "false")]
    else:
        with brokers.mosquitto(tmp_path, MOSQUITTO_CONFIG) as port:
            yield port, [("GRIDHUB_GATEWAY__PROTOCOL", "5")] if request.param.endswith("mqtt5") else []


def test_readings_reach_kafka_batched_by_cell_and_bad_ones_are_dead_lettered(
    bootstrap: str, broker: tuple[int, list[tuple[str, str]]]
) -> None:
    mqtt_port, env = broker
    with gateway(bootstrap, mqtt_port, *env):
        client = publisher(mqtt_port)
        for seq in range(200):
            client.publish("gridhub/v1/rain/rain-0001/telemetry", rain(seq), qos=1)
        client.publish("gridhub/v1/rain/rain-0001/telemetry", b"{broken", qos=1)
        client.publish("gridhub/v1/rain/rain-0999/telemetry", rain(1), qos=1).wait_for_publish(10)
        readings, _, dead = collect(bootstrap, lambda r, s, d: len(r) >= 200 and len(d) >= 2)
        client.loop_stop()
    assert sorted(r.seq for r in readings if r.device_id == "rain-0001") == list(range(200))
    assert all(r.grid_code == "310104003001001" for r in readings)
    assert sorted(str(d["reason"]) for d in dead) == ["bad_json", "unknown_device"]


def test_status_and_last_will_are_forwarded(bootstrap: str, broker: tuple[int, list[tuple[str, str]]]) -> None:
    mqtt_port, env = broker
    with gateway(bootstrap, mqtt_port, *env):
        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crowd-0001", protocol=mqtt.MQTTv311)
        device.will_set("gridhub/v1/crowd/crowd-0001/status", b"offline", qos=1, retain=True)
        device.connect("127.0.0.1", mqtt_port)
        device.loop_start()
        device.publish("gridhub/v1/crowd/crowd-0001/status", b"online", qos=1, retain=True).wait_for_publish(10)
        time.sleep(0.5)
        device.loop_stop()
        device.socket().close()  # vanish without DISCONNECT: the broker publishes the will
        _, statuses, _ = collect(bootstrap, lambda r, s, d: [x.online for x in s][-1:] == [False], timeout_s=60)
    assert [s.online for s in statuses if s.device_id == "crowd-0001"][:2] == [True, False]


def test_sigkill_mid_stream_loses_nothing(bootstrap: str, tmp_path: Path) -> None:
    total = 6000
    with brokers.mosquitto(tmp_path, MOSQUITTO_CONFIG) as port:
        process = start_gateway(bootstrap, port)
        wait_for_log(process, b"subscribed to")
        client = publisher(port, "sigkill-publisher")
        now = int(time.time())
        for seq in range(total):
            client.publish("gridhub/v1/rain/rain-0002/telemetry", rain(seq, now), qos=1)
            if seq == total // 3:
                time.sleep(0.3)  # let the gateway get busy, then kill it mid-stream
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
            if seq == 2 * total // 3:
                process = start_gateway(bootstrap, port)  # the same client id: the same persistent session
        try:
            readings, _, _ = collect(bootstrap, lambda r, s, d: len({x.seq for x in r}) >= total, timeout_s=90)
        finally:
            client.loop_stop()
            process.terminate()
            process.wait(20)
    assert {r.seq for r in readings if r.device_id == "rain-0002"} == set(range(total))


def test_kafka_outage_holds_acks_and_delivers_everything_after(tmp_path: Path) -> None:
    with brokers.tansu_behind_proxy() as (bootstrap, link), brokers.mosquitto(tmp_path, MOSQUITTO_CONFIG) as port:
        asyncio.run(kafka.ensure_topics(bootstrap, 4))
        process = start_gateway(bootstrap, port)
        wait_for_log(process, b"subscribed to")
        link.cut()
        client = publisher(port, "outage-publisher")
        now = int(time.time())
        for seq in range(500):  # Kafka is unreachable: the gateway receives these but must not ack them
            client.publish("gridhub/v1/rain/rain-0003/telemetry", rain(seq, now), qos=1)
        time.sleep(5)
        assert process.poll() is None, "the gateway must survive a Kafka outage"
        # Had it acknowledged anything during the outage, killing it now would lose those messages.
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        link.restore()
        with gateway(bootstrap, port):
            readings, _, _ = collect(bootstrap, lambda r, s, d: len({x.seq for x in r}) >= 500, timeout_s=90)
        client.loop_stop()
    assert {r.seq for r in readings if r.device_id == "rain-0003"} == set(range(500))


def test_kafka_outage_is_reported_and_recovered_without_restart(tmp_path: Path) -> None:
    with brokers.tansu_behind_proxy() as (bootstrap, link), brokers.mosquitto(tmp_path, MOSQUITTO_CONFIG) as port:
        asyncio.run(kafka.ensure_topics(bootstrap, 4))
        with gateway(bootstrap, port) as process:
            link.cut()
            client = publisher(port, "outage-publisher-2")
            now = int(time.time())
            for seq in range(300):
                client.publish("gridhub/v1/rain/rain-0005/telemetry", rain(seq, now), qos=1)
            time.sleep(8)
            link.restore()
            readings, _, _ = collect(bootstrap, lambda r, s, d: len({x.seq for x in r}) >= 300, timeout_s=90)
            client.loop_stop()
            assert process.poll() is None
    assert {r.seq for r in readings if r.device_id == "rain-0005"} == set(range(300))
