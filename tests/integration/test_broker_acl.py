"""Device identity at real brokers: Mosquitto with the generated configuration, and the embedded amqtt broker.

Both brokers read the same password and ACL files, written from a registry seeded with demo devices.
"""

from __future__ import annotations

import dataclasses
import getpass
import queue
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine

from domain.registry import Registry
from gridhub.broker_auth import mosquitto_conf, write_broker_files
from gridhub.city import load_city
from gridhub.credentials import demo_secret, password_hash
from gridhub.db import connect, init_db
from gridhub.devices import add_device, devices_table, new_device, rotate_secret, seed_devices
from gridhub.settings import load_settings
from tests import brokers

pytestmark = pytest.mark.integration
GATEWAY, GATEWAY_SECRET = "gridhub-gateway", "gateway-secret"
WAIT_S = 5.0


@dataclass
class Broker:
    name: str
    port: int
    engine: Engine
    auth_dir: Path
    apply: Callable[[], None]  # make the broker take up rewritten files

    def rewrite_files(self) -> None:
        write_broker_files(self.engine, self.auth_dir, {GATEWAY: password_hash(GATEWAY_SECRET)})
        self.apply()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Path]:
    """A database with the demo city's first rain gauges (demo secrets), and the broker files written from it."""
    directory = tmp_path_factory.mktemp("broker")
    demo = load_city(load_settings(environ={}))
    city = dataclasses.replace(demo, registry=Registry(list(demo.registry)[:2]))
    engine = connect(f"sqlite:///{directory / 'gridhub.db'}")
    init_db(engine)
    seed_devices(engine, city, demo=True)
    write_broker_files(engine, directory / "mqtt", {GATEWAY: password_hash(GATEWAY_SECRET)})
    return engine, directory / "mqtt"


@pytest.fixture(scope="module", params=["mosquitto", "amqtt"])
def broker(request: pytest.FixtureRequest, registry: tuple[Engine, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    engine, auth_dir = registry
    if request.param == "amqtt":
        with brokers.amqtt("--auth-dir", str(auth_dir)) as port:
            yield Broker("amqtt", port, engine, auth_dir, lambda: None)  # it re-reads changed files by itself
        return
    # The configuration production gets, on a free port; `user` keeps a root-started Mosquitto able to
    # read the 0640 files this process owns (it would otherwise switch to the mosquitto user first).
    port, data = brokers.free_port(), tmp_path_factory.mktemp("mosquitto-data")
    config = data / "mosquitto.conf"
    config.write_text(mosquitto_conf(auth_dir, port=port, bind="127.0.0.1", persistence_dir=data)
                      + f"user {getpass.getuser()}\n", encoding="utf-8")
    with brokers.running([brokers.MOSQUITTO, "-c", str(config)], port) as process:
        yield Broker("mosquitto", port, engine, auth_dir, lambda: process.send_signal(signal.SIGHUP))


@dataclass
class Client:
    mqtt: mqtt.Client
    connack: ReasonCode
    received: queue.Queue[mqtt.MQTTMessage]

    def subscribe(self, topic_filter: str) -> ReasonCode:
        granted: queue.Queue[ReasonCode] = queue.Queue()
        self.mqtt.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.put(codes[0])
        self.mqtt.subscribe(topic_filter, qos=1)
        return granted.get(timeout=WAIT_S)

    def publish(self, topic: str, payload: bytes) -> None:
        self.mqtt.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def expect(self, payload: bytes, forbidden: bytes | None = None) -> mqtt.MQTTMessage:
        """The message carrying `payload`; fail if `forbidden` arrives first or nothing does in time."""
        deadline = time.monotonic() + WAIT_S
        while True:
            message = self.received.get(timeout=max(0.0, deadline - time.monotonic()))
            assert forbidden is None or message.payload != forbidden, f"{message.topic} was delivered"
            if message.payload == payload:
                return message

    def drop(self) -> None:
        """Cut the connection without DISCONNECT, as a device losing power does."""
        self.mqtt.loop_stop()
        sock = self.mqtt.socket()
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def client(broker: Broker, username: str | None, password: str | None = None,
           will: tuple[str, bytes] | None = None) -> Client:
    """A connected MQTT 3.1.1 client, or one whose CONNACK refused it (then already stopped)."""
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}",
                       protocol=mqtt.MQTTv311)
    if username is not None:
        paho.username_pw_set(username, password)
    if will is not None:
        paho.will_set(will[0], will[1], qos=1)
    connack: queue.Queue[ReasonCode] = queue.Queue()
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    paho.on_connect = lambda _c, _u, _f, code, _p: connack.put(code)
    paho.on_message = lambda _c, _u, message: received.put(message)
    paho.connect("127.0.0.1", broker.port)
    deadline = time.monotonic() + WAIT_S
    while connack.empty() and time.monotonic() < deadline:
        paho.loop(timeout=0.05)  # no network thread until accepted: a refused client must not retry
    result = Client(paho, connack.get_nowait(), received)
    if not result.connack.is_failure:
        paho.loop_start()
    return result


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Client]:
    gateway = client(broker, GATEWAY, GATEWAY_SECRET)
    assert gateway.subscribe("gridhub/v1/#").value == 1
    yield gateway
    gateway.close()


def reading() -> bytes:
    return f'{{"ts": {time.time():.3f}, "seq": 1, "rain_mm": 0.5, "id": "{uuid.uuid4()}"}}'.encode()


def eventually_connects(broker: Broker, username: str, password: str) -> Client:
    """Connect, retrying while a reloading Mosquitto may still hold the old files."""
    deadline = time.monotonic() + WAIT_S
    while True:
        device = client(broker, username, password)
        if not device.connack.is_failure or time.monotonic() > deadline:
            return device
        time.sleep(0.1)


def test_a_device_with_its_secret_publishes_and_the_gateway_receives_it(broker: Broker, gateway: Client) -> None:
    device = client(broker, "rain-0001", demo_secret("rain-0001"))
    payload = reading()
    device.publish("gridhub/v1/rain/rain-0001/telemetry", payload)
    assert gateway.expect(payload).topic == "gridhub/v1/rain/rain-0001/telemetry"
    device.close()


@pytest.mark.parametrize(("username", "password"), [
    ("rain-0001", "wrong"),
    ("rain-0001", demo_secret("rain-0002")),
    ("rain-4040", demo_secret("rain-4040")),
    (GATEWAY, "wrong"),
])
def test_a_wrong_password_or_unknown_user_is_refused_at_connect(broker: Broker, username: str, password: str) -> None:
    assert client(broker, username, password).connack.is_failure


def test_anonymous_clients_are_refused(broker: Broker) -> None:
    assert client(broker, None).connack.is_failure


def test_a_device_cannot_publish_under_another_devices_id(broker: Broker, gateway: Client) -> None:
    device = client(broker, "rain-0001", demo_secret("rain-0001"))
    forged, sentinel = reading(), reading()
    device.publish("gridhub/v1/rain/rain-0002/telemetry", forged)
    device.publish("gridhub/v1/rain/rain-0002/status", forged)
    device.publish("gridhub/v1/rain/rain-0001/telemetry", sentinel)  # same connection: arrives after the forgeries
    gateway.expect(sentinel, forbidden=forged)
    device.close()


def test_a_device_receives_nothing_even_when_it_subscribes(broker: Broker, gateway: Client) -> None:
    spy = client(broker, "rain-0002", demo_secret("rain-0002"))
    spy.subscribe("gridhub/v1/#")  # Mosquitto grants it and delivers nothing; amqtt refuses it
    device = client(broker, "rain-0001", demo_secret("rain-0001"))
    payload = reading()
    device.publish("gridhub/v1/rain/rain-0001/telemetry", payload)
    gateway.expect(payload)
    spy.close()  # the broker handled the publish before the gateway saw it, so the spy's copy would be here
    assert spy.received.empty()
    device.close()


def test_a_will_on_another_devices_topic_is_never_delivered(broker: Broker, gateway: Client) -> None:
    forged, honest = reading(), reading()
    liar = client(broker, "rain-0001", demo_secret("rain-0001"), will=("gridhub/v1/rain/rain-0002/status", forged))
    if not liar.connack.is_failure:  # Mosquitto accepts and drops the will; amqtt refuses the connection
        liar.drop()
    device = client(broker, "rain-0001", demo_secret("rain-0001"), will=("gridhub/v1/rain/rain-0001/status", honest))
    device.drop()
    assert gateway.expect(honest, forbidden=forged).topic == "gridhub/v1/rain/rain-0001/status"


def test_the_gateway_publishes_nothing(broker: Broker, gateway: Client) -> None:
    forged, sentinel = reading(), reading()
    gateway.publish("gridhub/v1/rain/rain-0001/telemetry", forged)
    gateway.publish(f"gridhub/v1/rain/{GATEWAY}/telemetry", forged)
    device = client(broker, "rain-0001", demo_secret("rain-0001"))
    device.publish("gridhub/v1/rain/rain-0001/telemetry", sentinel)
    gateway.expect(sentinel, forbidden=forged)
    device.close()


def test_a_device_added_later_connects_once_the_files_are_rewritten(broker: Broker, gateway: Client) -> None:
    city = load_city(load_settings(environ={}))
    device_id = f"rain-late-{broker.name}"
    secret = add_device(broker.engine, new_device(city, {
        "id": device_id, "kind": "rain", "lon": "121.430616", "lat": "31.195395", "report_interval_s": "60"}))
    assert client(broker, device_id, secret).connack.is_failure  # the broker does not know it yet
    broker.rewrite_files()
    device = eventually_connects(broker, device_id, secret)
    payload = reading()
    device.publish(f"gridhub/v1/rain/{device_id}/telemetry", payload)
    gateway.expect(payload)
    device.close()


def test_a_rotated_secret_replaces_the_old_one(broker: Broker) -> None:
    device_id = "rain-0002"
    old = demo_secret(device_id)
    new = rotate_secret(broker.engine, device_id)
    broker.rewrite_files()
    try:
        eventually_connects(broker, device_id, new).close()
        assert client(broker, device_id, old).connack.is_failure
    finally:  # the other tests log in with the demo secret
        with broker.engine.begin() as conn:
            conn.execute(devices_table.update().where(devices_table.c.id == device_id)
                         .values(secret_hash=password_hash(old)))
        broker.rewrite_files()


def test_mosquitto_pub_logs_in_with_the_demo_credentials(broker: Broker, gateway: Client) -> None:
    payload = reading()
    result = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-u", "rain-0001",
         "-P", demo_secret("rain-0001"), "-t", "gridhub/v1/rain/rain-0001/telemetry", "-m", payload.decode()],
        capture_output=True, timeout=10, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    gateway.expect(payload)


def test_mosquitto_pub_with_a_wrong_password_fails(broker: Broker) -> None:
    result = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-u", "rain-0001", "-P", "nope",
         "-t", "gridhub/v1/rain/rain-0001/telemetry", "-m", "{}"],
        capture_output=True, timeout=10, check=False,
    )
    assert result.returncode != 0


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # amqtt has no shared subscriptions
def test_a_gateway_on_a_shared_subscription_receives_on_mosquitto(broker: Broker) -> None:
    gateway = client(broker, GATEWAY, GATEWAY_SECRET)
    gateway.subscribe("$share/gridhub/gridhub/v1/#")
    device = client(broker, "rain-0001", demo_secret("rain-0001"))
    payload = reading()
    device.publish("gridhub/v1/rain/rain-0001/telemetry", payload)
    gateway.expect(payload)
    device.close()
    gateway.close()


def test_retained_status_reaches_only_subscribers_allowed_to_read_it(broker: Broker, gateway: Client) -> None:
    device = client(broker, "rain-0001", demo_secret("rain-0001"))
    status = reading()
    device.mqtt.publish("gridhub/v1/rain/rain-0001/status", status, qos=1, retain=True).wait_for_publish(WAIT_S)
    gateway.expect(status)
    other = client(broker, "rain-0002", demo_secret("rain-0002"))  # amqtt used to push it to every new client
    late_gateway = client(broker, GATEWAY, GATEWAY_SECRET)
    late_gateway.subscribe("gridhub/v1/+/+/status")
    late_gateway.expect(status)
    other.close()
    assert other.received.empty()
    late_gateway.close()
    device.close()
