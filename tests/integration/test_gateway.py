"""The gateway against real brokers: Mosquitto (MQTT 5, shared subscription) and the embedded amqtt broker."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from core import kafka
from domain.telemetry import Reading, StatusChange, decode_record
from tests import brokers

pytestmark = pytest.mark.integration

# Queues sized as GridHub's generated Mosquitto config does: never drop QoS 1 for a slow or absent gateway.
MOSQUITTO_CONFIG = "allow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n"


def start_gateway(bootstrap: str, mqtt_port: int, *extra_env: tuple[str, str],
                  args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    env = dict(os.environ, GRIDHUB_KAFKA__BOOTSTRAP=bootstrap, GRIDHUB_MQTT__HOST="127.0.0.1",
               GRIDHUB_MQTT__PORT=str(mqtt_port), GRIDHUB_GATEWAY__BATCH_LINGER_MS="10",
               **brokers.TANSU_CLIENT_ENV, **dict(extra_env))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # its own metrics on --metrics-port
    return subprocess.Popen([sys.executable, "-m", "gridhub", "gateway", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def gateway(bootstrap: str, mqtt_port: int, *extra_env: tuple[str, str],
            args: tuple[str, ...] = ()) -> Iterator[subprocess.Popen[bytes]]:
    process = start_gateway(bootstrap, mqtt_port, *extra_env, args=args)
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


class Output:
    """A process's output, read on a thread, searched line by line in the order it was written."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._lines: list[bytes] = []
        self._position = 0  # just after the last line found
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()

    def lines(self) -> bytes:
        """Everything read so far."""
        with self._changed:
            return b"".join(self._lines)

    def wait_for(self, needle: bytes, timeout_s: float = 30) -> bytes:
        """The first line holding `needle` after the last line found."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for index in range(self._position, len(self._lines)):
                    if needle in self._lines[index]:
                        self._position = index + 1
                        return self._lines[index]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"never logged {needle!r}:\n{b''.join(self._lines).decode(errors='replace')}")
                self._changed.wait(left)


def metric(port: int, name: str, **labels: str) -> float | None:
    """A sample of the gateway's /metrics (served with --metrics-port), None if absent."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


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
        collect(bootstrap, lambda r, s, d: len(s) >= 1, timeout_s=30)  # forwarded before the device vanishes
        device.loop_stop()
        device.socket().close()  # vanish without DISCONNECT: the broker publishes the will
        _, statuses, _ = collect(bootstrap, lambda r, s, d: [x.online for x in s][-1:] == [False], timeout_s=60)
    assert [s.online for s in statuses if s.device_id == "crowd-0001"][:2] == [True, False]


def test_kafka_outage_holds_acks_and_delivers_everything_after(tmp_path: Path) -> None:
    with brokers.tansu_behind_proxy() as (bootstrap, link), brokers.mosquitto(tmp_path, MOSQUITTO_CONFIG) as port:
        asyncio.run(kafka.ensure_topics(bootstrap, 4))
        metrics_port = brokers.free_port()
        process = start_gateway(bootstrap, port, args=("--metrics-port", str(metrics_port)))
        try:
            output = Output(process)
            output.wait_for(b"subscribed to")
            link.cut()
            client = publisher(port, "outage-publisher")
            now = int(time.time())
            for seq in range(500):  # Kafka is unreachable: the gateway receives these but must not ack them
                client.publish("gridhub/v1/rain/rain-0003/telemetry", rain(seq, now), qos=1)
            output.wait_for(b"Kafka has acknowledged nothing for")
            assert process.poll() is None, "the gateway must survive a Kafka outage"
            held = metric(metrics_port, "gridhub_gateway_inflight") or 0
            assert held > 0, "the gateway holds no message the kill could lose"
        finally:
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
        process = start_gateway(bootstrap, port)
        try:
            output = Output(process)
            output.wait_for(b"subscribed to")
            link.cut()
            client = publisher(port, "outage-publisher-2")
            now = int(time.time())
            for seq in range(300):
                client.publish("gridhub/v1/rain/rain-0005/telemetry", rain(seq, now), qos=1)
            output.wait_for(b"Kafka has acknowledged nothing for")
            link.restore()
            output.wait_for(b"Kafka acknowledges again after")
            readings, _, _ = collect(bootstrap, lambda r, s, d: len({x.seq for x in r}) >= 300, timeout_s=90)
            client.loop_stop()
            assert process.poll() is None
        finally:
            process.terminate()
            assert process.wait(20) == 0
    assert {r.seq for r in readings if r.device_id == "rain-0005"} == set(range(300))


RAIN_0001 = "gridhub/v1/rain/rain-0001/telemetry"


def seqs(readings: list[Reading], device_id: str = "rain-0001") -> list[int]:
    return sorted(r.seq for r in readings if r.device_id == device_id)


def test_retained_telemetry_is_ingested_live_once_and_not_again_when_replayed(
    bootstrap: str, broker: tuple[int, list[tuple[str, str]]]
) -> None:
    mqtt_port, env = broker
    # A plain subscription: brokers never replay retained messages to a shared one (MQTT 5 §4.8.2).
    env = [*env, ("GRIDHUB_GATEWAY__SHARED_SUBSCRIPTION", "false")]
    now = int(time.time())
    client = publisher(mqtt_port)
    try:
        with gateway(bootstrap, mqtt_port, *env):
            client.publish(RAIN_0001, rain(1, now), qos=1, retain=True).wait_for_publish(10)
            collect(bootstrap, lambda r, s, d: 1 in seqs(r), timeout_s=30)
        metrics_port = brokers.free_port()
        with gateway(bootstrap, mqtt_port, *env, args=("--metrics-port", str(metrics_port))):
            # The broker replays seq 1 when the gateway subscribes, before this sentinel.
            client.publish(RAIN_0001, rain(2, now), qos=1).wait_for_publish(10)
            readings, _, _ = collect(bootstrap, lambda r, s, d: 2 in seqs(r), timeout_s=30)
            assert metric(metrics_port, "gridhub_gateway_retained_skipped_total") == 1
    finally:
        client.loop_stop()
    assert seqs(readings) == [1, 2]


def test_a_retained_status_replayed_at_a_gateway_restart_is_marked_replayed(
    bootstrap: str, broker: tuple[int, list[tuple[str, str]]]
) -> None:
    mqtt_port, env = broker
    client = publisher(mqtt_port)
    try:
        with gateway(bootstrap, mqtt_port, *env):
            client.publish("gridhub/v1/rain/rain-0001/status", b"online", qos=1, retain=True).wait_for_publish(10)
            collect(bootstrap, lambda r, s, d: len(s) >= 1, timeout_s=30)
        with gateway(bootstrap, mqtt_port, *env):
            _, statuses, _ = collect(bootstrap, lambda r, s, d: len(s) >= 2, timeout_s=30)
    finally:
        client.loop_stop()
    assert [(s.online, s.replayed) for s in statuses if s.device_id == "rain-0001"] == [(True, False), (True, True)]


def test_the_gateway_logs_in_on_the_hub_port_when_there_is_one(bootstrap: str, tmp_path: Path) -> None:
    with brokers.mosquitto(tmp_path, MOSQUITTO_CONFIG) as port, \
            gateway(bootstrap, brokers.free_port(), ("GRIDHUB_MQTT__HUB_PORT", str(port))) as process:
        client = publisher(port)
        client.publish(RAIN_0001, rain(1), qos=1).wait_for_publish(10)
        readings, _, _ = collect(bootstrap, lambda r, s, d: 1 in seqs(r), timeout_s=30)
        client.loop_stop()
        assert process.poll() is None
    assert seqs(readings) == [1]


@contextlib.contextmanager
def mosquitto_with_dynamic_security(directory: Path) -> Iterator[tuple[int, Callable[..., None]]]:
    """Mosquitto with its dynamic-security plugin (which, unlike an acl_file, can refuse a SUBSCRIBE); yields
    the port and a function running `mosquitto_ctrl dynsec ARGS` as its admin."""
    ctrl_binary = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
    plugin = next(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    state = directory / "dynamic-security.json"
    subprocess.run([ctrl_binary, "dynsec", "init", str(state), "admin", "admin-secret"], check=True,
                   capture_output=True, timeout=10)
    document = orjson.loads(state.read_bytes())
    document["defaultACLAccess"] = dict.fromkeys(document["defaultACLAccess"], True)  # anonymous test publishers
    state.write_bytes(orjson.dumps(document))
    port = brokers.free_port()
    config = directory / "mosquitto.conf"
    # Started as root, Mosquitto drops to the `mosquitto` user, which cannot read the test's directory.
    config.write_text(f"listener {port} 127.0.0.1\npersistence false\nuser {getpass.getuser()}\n{MOSQUITTO_CONFIG}"
                      f"plugin {plugin}\nplugin_opt_config_file {state}\n", encoding="utf-8")

    def ctrl(*args: str) -> None:
        subprocess.run([ctrl_binary, "-h", "127.0.0.1", "-p", str(port), "-u", "admin", "-P", "admin-secret",
                        "dynsec", *args], check=True, capture_output=True, timeout=10)

    with brokers.running([brokers.MOSQUITTO, "-c", str(config)], port):
        yield port, ctrl


def test_a_refused_subscription_is_reported_and_asked_for_again_until_granted(bootstrap: str, tmp_path: Path) -> None:
    telemetry = "$share/gridhub/gridhub/v1/+/+/telemetry"
    with mosquitto_with_dynamic_security(tmp_path) as (port, ctrl):
        ctrl("createClient", "gridhub-gateway", "-p", "gateway-secret")
        ctrl("createRole", "gateway")
        ctrl("addRoleACL", "gateway", "subscribeLiteral", telemetry, "deny")
        ctrl("addClientRole", "gridhub-gateway", "gateway")
        metrics_port = brokers.free_port()
        process = start_gateway(bootstrap, port, ("GRIDHUB_MQTT__PASSWORD", "gateway-secret"),
                                args=("--metrics-port", str(metrics_port)))
        try:
            output = Output(process)
            output.wait_for(f"the broker refused the subscription to {telemetry}".encode())
            output.wait_for(f"the broker refused the subscription to {telemetry}".encode())  # asked again
            assert metric(metrics_port, "gridhub_gateway_subscribed", client_id="gridhub-gateway-1") == 0
            ctrl("removeRoleACL", "gateway", "subscribeLiteral", telemetry)
            output.wait_for(f"subscribed to {telemetry}".encode())
            assert metric(metrics_port, "gridhub_gateway_subscribed", client_id="gridhub-gateway-1") == 1
            client = publisher(port)
            client.publish(RAIN_0001, rain(1), qos=1).wait_for_publish(10)
            readings, _, _ = collect(bootstrap, lambda r, s, d: 1 in seqs(r), timeout_s=30)
            client.loop_stop()
        finally:
            process.terminate()
            assert process.wait(20) == 0
    assert seqs(readings) == [1]


def test_a_lost_connection_and_session_are_reported_and_the_subscription_restored(
    bootstrap: str, tmp_path: Path
) -> None:
    with brokers.mosquitto(tmp_path, MOSQUITTO_CONFIG) as port:
        metrics_port = brokers.free_port()
        process = start_gateway(bootstrap, port, args=("--metrics-port", str(metrics_port)))
        try:
            output = Output(process)
            output.wait_for(b"subscribed to")
            # A clean session under the gateway's client id: the broker closes the gateway's connection and
            # drops its persistent session.
            intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gridhub-gateway-1",
                                   protocol=mqtt.MQTTv311, clean_session=True)
            intruder.connect("127.0.0.1", port)
            intruder.loop_start()
            output.wait_for(b"disconnected from MQTT")
            intruder.disconnect()
            intruder.loop_stop()
            output.wait_for(b"the broker did not keep the session of gridhub-gateway-1")
            output.wait_for(b"subscribed to")
            assert metric(metrics_port, "gridhub_gateway_disconnects_total") == 1
            assert metric(metrics_port, "gridhub_gateway_sessions_lost_total") == 1
            assert metric(metrics_port, "gridhub_gateway_subscribed", client_id="gridhub-gateway-1") == 1
            client = publisher(port)
            client.publish(RAIN_0001, rain(1), qos=1).wait_for_publish(10)
            readings, _, _ = collect(bootstrap, lambda r, s, d: 1 in seqs(r), timeout_s=30)
            client.loop_stop()
        finally:
            process.terminate()
            assert process.wait(20) == 0
    assert seqs(readings) == [1]


def publish_lines(port: int, seqs: range) -> None:
    """One burst from a C client (`mosquitto_pub -l`, QoS 1); it exits 0 once the broker acknowledged all."""
    now = int(time.time())
    lines = b"".join(rain(seq, now) + b"\n" for seq in seqs)
    result = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-i", "burst",
                             "-t", "gridhub/v1/rain/rain-0001/telemetry", "-l"], input=lines, capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def session_present(port: int, client_id: str, username: str | None = None, password: str | None = None) -> bool:
    """Does the broker hold a persistent session for `client_id` (logged in as `username`, if given)?"""
    answer: queue.Queue[bool] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False)
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, flags, code, _p: answer.put(not code.is_failure and flags.session_present)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        return answer.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_retired_gateway_hands_its_queued_share_over_and_leaves_no_session(
    bootstrap: str, tmp_path: Path, protocol: str
) -> None:
    """A stopped gateway's session keeps its share of the shared subscription's messages; `--retire` drains
    them into Kafka and ends the session, so the next burst goes to the remaining gateway in full."""
    env = ("GRIDHUB_GATEWAY__PROTOCOL", protocol)
    with brokers.mosquitto(tmp_path, MOSQUITTO_CONFIG) as port, \
            gateway(bootstrap, port, env, args=("--client-id", "gridhub-gateway-1")):
        leaving = start_gateway(bootstrap, port, env, args=("--client-id", "gridhub-gateway-2"))
        wait_for_log(leaving, b"subscribed to")
        leaving.terminate()
        assert leaving.wait(20) == 0
        publish_lines(port, range(2000))  # about half is queued for the stopped gateway
        retire = start_gateway(bootstrap, port, env, args=("--retire", "--client-id", "gridhub-gateway-2"))
        output, _ = retire.communicate(timeout=60)
        assert retire.returncode == 0, output.decode(errors="replace")
        drained = re.search(rb"retired gridhub-gateway-2: (\d+) messages drained", output)
        assert drained is not None and 0 < int(drained[1]) < 2000, output.decode(errors="replace")
        assert not session_present(port, "gridhub-gateway-2")
        publish_lines(port, range(2000, 4000))  # nothing of it may be routed to the retired session
        readings, _, _ = collect(bootstrap, lambda r, s, d: len({x.seq for x in r}) >= 4000, timeout_s=60)
    assert {r.seq for r in readings} == set(range(4000))


def test_retiring_a_running_gateway_loses_nothing(bootstrap: str, tmp_path: Path) -> None:
    """A mistake an operator can make: the retirement takes the running gateway's session over (Mosquitto hands
    a client id's session to the newest connection), drains and ends it; the gateway reconnects a second later
    with a new session and goes on taking its share."""
    with brokers.mosquitto(tmp_path, MOSQUITTO_CONFIG) as port, \
            gateway(bootstrap, port, args=("--client-id", "gridhub-gateway-1")), \
            gateway(bootstrap, port, args=("--client-id", "gridhub-gateway-2")):
        publish_lines(port, range(1000))
        retire = start_gateway(bootstrap, port, args=("--retire", "--client-id", "gridhub-gateway-2"))
        output, _ = retire.communicate(timeout=60)
        assert retire.returncode == 0, output.decode(errors="replace")
        publish_lines(port, range(1000, 2000))
        readings, _, _ = collect(bootstrap, lambda r, s, d: len({x.seq for x in r}) >= 2000, timeout_s=60)
    assert {r.seq for r in readings} == set(range(2000))


def test_a_retirement_whose_session_is_taken_over_says_so_and_exits(bootstrap: str, tmp_path: Path) -> None:
    """Here the broker drops the end-of-queue marker (no write grant), so the retirement waits, and a client
    with the same id takes the session over: the retirement exits 1 saying why, instead of fighting for it."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite gridhub/v1/#\ntopic read gridhub/retire/#\n", encoding="utf-8")
    config = MOSQUITTO_CONFIG + f"acl_file {acl}\nuser {getpass.getuser()}\n"  # as root it would read it as mosquitto
    with brokers.mosquitto(tmp_path, config) as port:
        retire = start_gateway(bootstrap, port, args=("--retire", "--client-id", "gridhub-gateway-2"))
        output = Output(retire)
        output.wait_for(b"connected to MQTT")
        assert retire.poll() is None, "the retirement ended without its marker"
        assert session_present(port, "gridhub-gateway-2")  # the takeover: the session is handed to this client
        assert retire.wait(30) == 1
        output.wait_for(b"is a gateway with this client id still running?")


def test_replicas_with_a_slots_dir_are_numbered_and_a_killed_ones_replacement_takes_its_session(
    bootstrap: str, tmp_path: Path
) -> None:
    """`gateway.slots_dir`, as the compose file's scaled gateway service uses it."""
    slots = ("GRIDHUB_GATEWAY__SLOTS_DIR", str(tmp_path / "slots"))
    with brokers.mosquitto(tmp_path, MOSQUITTO_CONFIG) as port:
        replicas = [start_gateway(bootstrap, port, slots) for _ in range(2)]
        try:
            outputs = [Output(replica) for replica in replicas]
            names = sorted(output.wait_for(b"connected to MQTT").split(b" as ")[1].split()[0] for output in outputs)
            assert names == [b"gridhub-gateway-1", b"gridhub-gateway-2"]
            for output in outputs:
                output.wait_for(b"subscribed to")
            killed = next(i for i, output in enumerate(outputs) if b"as gridhub-gateway-1 " in output.lines())
            replicas[killed].kill()
            replicas[killed].wait(10)
            replicas[killed] = start_gateway(bootstrap, port, slots)
            replacement = Output(replicas[killed])
            assert b"as gridhub-gateway-1 " in replacement.wait_for(b"connected to MQTT")
            replacement.wait_for(b"subscribed to")
            assert b"holds no session" not in replacement.lines()  # the broker kept the killed one's session
        finally:
            for replica in replicas:
                replica.terminate()
                replica.wait(20)
