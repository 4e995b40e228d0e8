"""`gridhub up` end to end: real embedded brokers, SQLite and the API as supervised processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core import kafka
from core.city import DEMO_CITY_DIR
from core.credentials import demo_secret
from tests.integration.test_streams_pipeline import eventually

pytestmark = pytest.mark.integration
READY_TIMEOUT_S = 90
STOP_TIMEOUT_S = 20
#: A device whose secret is withdrawn loses its session within this: the file watcher and the broker's reload.
SESSION_END_S = 5.0


@dataclass
class Hub:
    process: subprocess.Popen[bytes]
    state_dir: Path
    ready: dict[str, Any]


def start_hub(state_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Hub:
    process = subprocess.Popen(
        [sys.executable, "-m", "gridhub", "up", "--state-dir", str(state_dir),
         "--api-port", "0", "--mqtt-port", "0", "--kafka-port", "0", *(extra or ("--demo",))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
    )
    ready_file = state_dir / "ready.json"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready_file.exists():
        if process.poll() is not None:
            raise AssertionError(f"gridhub up exited with {process.returncode}: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"gridhub up not ready within {READY_TIMEOUT_S} s")
        time.sleep(0.2)
    return Hub(process, state_dir, orjson.loads(ready_file.read_bytes()))


def stop_hub(hub: Hub) -> int:
    hub.process.send_signal(signal.SIGTERM)
    try:
        return hub.process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        hub.process.kill()
        raise


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """`gridhub up --demo` as installed here: `mqtt.embedded: auto` finds Debian's Mosquitto."""
    running = start_hub(tmp_path_factory.mktemp("hub"))
    yield running
    stop_hub(running)


@pytest.fixture(scope="module")
def amqtt_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """`gridhub up` on the pip-only embedded broker."""
    running = start_hub(tmp_path_factory.mktemp("amqtt-hub"), "--demo", env={"GRIDHUB_MQTT__EMBEDDED": "amqtt"})
    yield running
    stop_hub(running)


def children_of(state_dir: Path) -> list[int]:
    """Pids of processes started with this state directory in their environment (the API, for one)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"GRIDHUB_STATE_DIR={state_dir.resolve()}".encode() in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def test_ready_file_lists_endpoints_and_a_token_per_role(hub: Hub) -> None:
    assert set(hub.ready) >= {"api_url", "mqtt_host", "mqtt_port", "mqtt_hub_port", "mqtt_broker", "kafka_bootstrap",
                              "tokens"}
    assert set(hub.ready["tokens"]) == {"viewer", "operator", "commander", "device-admin", "admin"}
    assert (hub.state_dir / "ready.json").stat().st_mode & 0o077 == 0


def test_healthz_answers(hub: Hub) -> None:
    response = httpx.get(f"{hub.ready['api_url']}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_the_api_reaches_the_stream_worker_for_actions(hub: Hub) -> None:
    eventually(lambda: httpx.get(f"{hub.ready['api_url']}/healthz", timeout=5).json()["commands"] == "ok", 30,
               "the API's command bus")
    token = hub.ready["tokens"]["commander"]
    response = httpx.post(f"{hub.ready['api_url']}/api/v1/cases/no-such-case/actions", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}, json={"action": "file", "expected_version": 1})
    assert (response.status_code, response.json()["detail"]) == (404, "no case 'no-such-case'")


def test_tokens_from_ready_file_authenticate(hub: Hub) -> None:
    token = hub.ready["tokens"]["commander"]
    response = httpx.get(f"{hub.ready['api_url']}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    who = response.json()
    assert (who["role"], who["scope"], who["level"]) == ("commander", "310104", "district")
    assert who["name"] == "gridhub up: commander"


def test_embedded_mqtt_broker_authenticates_devices_and_delivers_qos1(hub: Hub) -> None:
    received: list[bytes] = []
    subscribed = threading.Event()
    topic = "gridhub/v1/rain/rain-0001/telemetry"
    host, port = hub.ready["mqtt_host"], hub.ready["mqtt_port"]
    gateway_secret = (hub.state_dir / "mqtt" / "gateway.secret").read_text()

    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gridhub-gateway-test",
                             protocol=mqtt.MQTTv311)
    subscriber.username_pw_set("gridhub-gateway", gateway_secret)
    subscriber.on_message = lambda _c, _u, message: received.append(message.payload)
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.connect(host, hub.ready["mqtt_hub_port"])  # the hub's accounts log in on the hub listener
    subscriber.subscribe(topic, qos=1)
    subscriber.loop_start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rain-0001", protocol=mqtt.MQTTv311)
    publisher.username_pw_set("rain-0001", demo_secret("rain-0001"))
    publisher.connect(host, port)
    publisher.loop_start()
    try:
        assert subscribed.wait(10)
        publisher.publish(topic, b'{"ts": 0, "seq": 1, "rain_mm": 0.5}', qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        publisher.loop_stop()
        subscriber.loop_stop()
    assert received == [b'{"ts": 0, "seq": 1, "rain_mm": 0.5}']


def test_embedded_mqtt_broker_refuses_anonymous_clients(hub: Hub) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="nobody", protocol=mqtt.MQTTv311)
    refused = threading.Event()
    client.on_connect = lambda _c, _u, _f, reason, _p: refused.set() if reason.is_failure else None
    client.on_disconnect = lambda *_: refused.set()
    client.connect(hub.ready["mqtt_host"], hub.ready["mqtt_port"])
    client.loop_start()
    try:
        assert refused.wait(10)
        assert not client.is_connected()
    finally:
        client.loop_stop()


def test_embedded_kafka_has_the_topics_and_round_trips_a_record(hub: Hub) -> None:
    async def scenario() -> bytes | None:
        bootstrap = hub.ready["kafka_bootstrap"]
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            metadata = await producer.send_and_wait(kafka.TELEMETRY, b"reading", key=b"310104003001001")
            for topic in kafka.TOPICS:
                assert await producer.partitions_for(topic), topic
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partition = TopicPartition(kafka.TELEMETRY, metadata.partition)
            consumer.assign([partition])
            consumer.seek(partition, metadata.offset)
            record = await asyncio.wait_for(consumer.getone(), 10)
            return record.value  # type: ignore[no-any-return]
        finally:
            await consumer.stop()

    assert asyncio.run(scenario()) == b"reading"


def test_a_crashed_service_is_restarted(hub: Hub) -> None:
    api_url = hub.ready["api_url"]
    victims = children_of(hub.state_dir)
    assert victims, "the API child should carry GRIDHUB_STATE_DIR"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    # Every service restarts at once, each importing its libraries anew: on two busy cores that took over 30 s.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api_url}/healthz", timeout=2).status_code == 200 and \
                    set(children_of(hub.state_dir)).isdisjoint(victims):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("the API did not come back after SIGKILL")


def test_sigterm_stops_everything_with_exit_code_0(tmp_path: Path) -> None:
    hub = start_hub(tmp_path)
    ports = [(hub.ready["mqtt_host"], hub.ready["mqtt_port"]),
             tuple(hub.ready["kafka_bootstrap"].rsplit(":", 1))]
    started = time.monotonic()
    assert stop_hub(hub) == 0
    assert time.monotonic() - started < STOP_TIMEOUT_S
    assert not (tmp_path / "ready.json").exists()
    assert children_of(tmp_path) == []
    assert not any(port_open(host, int(port)) for host, port in ports)
    assert "GridHub ready in" in hub.process.stdout.read().decode()  # type: ignore[union-attr]


def test_services_load_the_same_config_file_as_up(tmp_path: Path) -> None:
    city = tmp_path / "city"
    shutil.copytree(DEMO_CITY_DIR, city)
    (city / "city.yaml").write_text('name: Test city\ncounty_code: "310104"\ncode_length: 15\n', encoding="utf-8")
    config = tmp_path / "gridhub.yaml"
    config.write_text(f"city:\n  dir: {city}\n", encoding="utf-8")
    hub = start_hub(tmp_path / "state", "--config", str(config))
    try:
        assert httpx.get(f"{hub.ready['api_url']}/healthz", timeout=5).json()["city"].startswith("Test city:")
    finally:
        assert stop_hub(hub) == 0


def test_bad_config_fails_fast_naming_file_key_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "gridhub.yaml"
    config.write_text("mqtt:\n  host: broker.local\n  prot: 1883\n", encoding="utf-8")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "gridhub", "up", "--config", str(config)],
                            capture_output=True, timeout=30, check=False)
    assert result.returncode == 2
    assert time.monotonic() - started < 15
    assert result.stderr.decode().strip() == f"gridhub: config error: {config}: mqtt.prot: unknown key"


def test_port_in_use_is_reported_with_its_setting(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gridhub", "up", "--state-dir", str(tmp_path), "--api-port", str(port),
             "--mqtt-port", "0", "--kafka-port", "0"],
            capture_output=True, timeout=60, check=False,
        )
    assert result.returncode == 1
    assert f"api.port: cannot listen on 127.0.0.1:{port}" in result.stderr.decode()


def assert_reading_from_mosquitto_pub_is_queryable_within_two_seconds(hub: Hub, device_id: str) -> None:
    # mosquitto_pub is a real client we did not write; it logs in with the demo city's credentials.
    secret = demo_secret(device_id)
    now = time.time()
    # The demo fleet reports for this device too; no simulated cover ever tilts 179.5°.
    payload = orjson.dumps({"ts": int(now), "seq": 1, "tilt_deg": 179.5, "cover_open": True, "water_level_cm": 12})
    subprocess.run(["mosquitto_pub", "-h", hub.ready["mqtt_host"], "-p", str(hub.ready["mqtt_port"]), "-q", "1",
                    "-u", device_id, "-P", secret, "-t", f"gridhub/v1/manhole/{device_id}/telemetry",
                    "-m", payload.decode()], check=True, timeout=10)
    published = time.monotonic()
    token = hub.ready["tokens"]["viewer"]
    window = {"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
              "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60)), "every": "2m"}
    body: dict[str, Any] = {}
    while time.monotonic() - published < 2.0:
        response = httpx.get(f"{hub.ready['api_url']}/api/v1/devices/{device_id}/telemetry", params=window,
                             headers={"Authorization": f"Bearer {token}"}, timeout=2)
        assert response.status_code == 200, response.text
        body = response.json()
        if any(w["tilt_deg_max"] == 179.5 for w in body["windows"]):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"not visible within 2 s: {body}")
    assert next(w for w in body["windows"] if w["tilt_deg_max"] == 179.5)["cover_open"] is True


def test_a_reading_from_mosquitto_pub_is_queryable_within_two_seconds(hub: Hub) -> None:
    assert_reading_from_mosquitto_pub_is_queryable_within_two_seconds(hub, "manhole-0007")


def test_an_open_cover_becomes_a_case_on_the_api_within_five_seconds(hub: Hub) -> None:
    secret = demo_secret("manhole-0009")
    payload = orjson.dumps({"ts": int(time.time()), "seq": 1, "tilt_deg": 2.0, "cover_open": True,
                            "water_level_cm": 12})
    subprocess.run(["mosquitto_pub", "-h", hub.ready["mqtt_host"], "-p", str(hub.ready["mqtt_port"]), "-q", "1",
                    "-u", "manhole-0009", "-P", secret, "-t", "gridhub/v1/manhole/manhole-0009/telemetry",
                    "-m", payload.decode()], check=True, timeout=10)
    published = time.monotonic()
    headers = {"Authorization": f"Bearer {hub.ready['tokens']['viewer']}"}
    while time.monotonic() - published < 5.0:
        response = httpx.get(f"{hub.ready['api_url']}/api/v1/cases",
                             params={"grid": "310104003001009", "category": "0103"}, headers=headers, timeout=2)
        assert response.status_code == 200, response.text
        # The component's case: this report opened it, or attached to it if the demo fleet opened it first.
        cases = [c for c in response.json()["items"] if "-3101040103000009-" in c["id"]]
        if cases:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("no case for the open cover within 5 s")
    assert (cases[0]["department"], cases[0]["urgent"], cases[0]["state"]) == ("水务", True, "dispatched")


def test_the_ready_file_says_which_embedded_broker_runs_and_what_survives_its_restart(hub: Hub) -> None:
    assert hub.ready["mqtt_broker"].startswith("embedded Mosquitto 2.")
    assert "saved when it stops" in hub.ready["mqtt_broker"]
    assert hub.ready["mqtt_hub_port"] != hub.ready["mqtt_port"]


def logged_in_device(hub: Hub, device_id: str, secret: str) -> tuple[mqtt.Client, threading.Event] | None:
    """A device connected with its network thread running, and the event its disconnection sets; None if refused."""
    connack: list[bool] = []
    ended = threading.Event()
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv311)
    device.username_pw_set(device_id, secret)
    device.reconnect_delay_set(60, 60)  # once the broker ends its session, it stays out while the test looks
    device.on_connect = lambda _c, _u, _f, reason, _p: connack.append(not reason.is_failure)
    device.on_disconnect = lambda *_: ended.set()
    device.connect(hub.ready["mqtt_host"], hub.ready["mqtt_port"])
    deadline = time.monotonic() + 5
    while not connack and not ended.is_set() and time.monotonic() < deadline:
        device.loop(timeout=0.05)
    if not connack or not connack[0]:
        device.disconnect()
        return None
    device.loop_start()
    return device, ended


def test_a_device_disabled_from_the_command_line_loses_its_session_within_seconds(hub: Hub) -> None:
    env = {**os.environ, "GRIDHUB_STATE_DIR": str(hub.state_dir)}
    added = subprocess.run([sys.executable, "-m", "gridhub", "devices", "add", "--id", "rain-9901", "--kind", "rain",
                            "--lon", "121.430616", "--lat", "31.195395"], env=env, capture_output=True, text=True,
                           timeout=60, check=True)
    secret = next(line.split()[1] for line in added.stdout.splitlines() if line.startswith("secret:"))
    deadline = time.monotonic() + SESSION_END_S  # the running broker takes up the new device's files
    while (login := logged_in_device(hub, "rain-9901", secret)) is None:
        assert time.monotonic() < deadline, "the new device could not log in"
        time.sleep(0.1)
    device, ended = login
    try:
        subprocess.run([sys.executable, "-m", "gridhub", "devices", "disable", "rain-9901"], env=env,
                       capture_output=True, timeout=60, check=True)
        assert ended.wait(SESSION_END_S)
        assert logged_in_device(hub, "rain-9901", secret) is None
    finally:
        device.loop_stop()


def test_up_on_amqtt_says_so(amqtt_hub: Hub) -> None:
    assert amqtt_hub.ready["mqtt_broker"].startswith("embedded amqtt ")
    assert amqtt_hub.ready["mqtt_hub_port"] != amqtt_hub.ready["mqtt_port"]


def test_up_on_amqtt_carries_a_reading_from_mosquitto_pub_to_the_api(amqtt_hub: Hub) -> None:
    assert_reading_from_mosquitto_pub_is_queryable_within_two_seconds(amqtt_hub, "manhole-0008")
