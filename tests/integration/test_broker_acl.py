"""Device identity at real brokers: the embedded Mosquitto and the embedded amqtt, each started as `gridhub up`
starts it, with devices on the device listener and the gateway's account on the hub listener.

Both brokers read the same password and ACL files, written from a registry seeded with demo devices.
"""

from __future__ import annotations

import dataclasses
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

from core.city import load_city
from core.credentials import demo_secret, password_hash
from core.settings import load_settings
from domain.registry import Registry
from gridhub.localbrokers import embedded
from storage.broker_files import write_broker_files
from storage.db import connect
from storage.devices import (
    add_device,
    devices_table,
    new_device,
    remove_device,
    rotate_secret,
    seed_devices,
    set_enabled,
)
from storage.schema import init_db

pytestmark = pytest.mark.integration
GATEWAY, GATEWAY_SECRET = "gridhub-gateway", "gateway-secret"
GATEWAY_HASH = password_hash(GATEWAY_SECRET)  # `gridhub devices` keeps the hash in place when it rewrites the files
GATEWAY_CLIENT_ID = "gridhub-gateway-1"
WAIT_S = 5.0
#: How long a device whose secret was withdrawn may keep its session: the broker's reload, with margin.
SESSION_END_S = 5.0


@dataclass
class Broker:
    name: str
    port: int
    hub_port: int
    engine: Engine
    auth_dir: Path
    apply: Callable[[], None]  # make the broker take up rewritten files, as `gridhub up` does

    def rewrite_files(self) -> None:
        write_broker_files(self.engine, self.auth_dir, {GATEWAY: GATEWAY_HASH})
        self.apply()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Path]:
    """A database with the demo city's first rain gauges (demo secrets), and the broker files written from it."""
    directory = tmp_path_factory.mktemp("broker")
    demo = load_city(load_settings(environ={}))
    city = dataclasses.replace(demo, registry=Registry(list(demo.registry)[:4]))
    engine = connect(f"sqlite:///{directory / 'gridhub.db'}")
    init_db(engine)
    seed_devices(engine, city, demo=True)
    write_broker_files(engine, directory / "mqtt", {GATEWAY: GATEWAY_HASH})
    return engine, directory / "mqtt"


@pytest.fixture(scope="module", params=["mosquitto", "amqtt"])
def broker(request: pytest.FixtureRequest, registry: tuple[Engine, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    engine, auth_dir = registry
    with embedded(request.param, tmp_path_factory.mktemp(f"{request.param}-state"), auth_dir) as running:
        # `gridhub up` sends Mosquitto SIGHUP when the files change; amqtt re-reads them by itself.
        apply = (lambda: running.process.send_signal(signal.SIGHUP)) if request.param == "mosquitto" else (
            lambda: None)
        yield Broker(request.param, running.port, running.hub_port, engine, auth_dir, apply)


@dataclass
class Client:
    mqtt: mqtt.Client
    connack: ReasonCode | None  # None: the broker closed the connection without a CONNACK
    received: queue.Queue[mqtt.MQTTMessage]
    disconnected: queue.Queue[ReasonCode]

    @property
    def refused(self) -> bool:
        """The broker refused the CONNECT, with a failure CONNACK or by closing the connection."""
        return self.connack is None or self.connack.is_failure

    def session_ended(self, within_s: float) -> bool:
        """Did the broker end this connection within `within_s` seconds?"""
        try:
            self.disconnected.get(timeout=within_s)
        except queue.Empty:
            return False
        return True

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
           will: tuple[str, bytes] | None = None, *, hub: bool = False, client_id: str | None = None,
           clean_session: bool = True) -> Client:
    """A connected MQTT 3.1.1 client on the device listener (or the hub's), or one the broker refused
    (then already stopped)."""
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
                       protocol=mqtt.MQTTv311, clean_session=clean_session)
    paho.reconnect_delay_set(60, 60)  # a client whose session the broker ended stays out while the test looks
    if username is not None:
        paho.username_pw_set(username, password)
    if will is not None:
        paho.will_set(will[0], will[1], qos=1)
    connack: queue.Queue[ReasonCode] = queue.Queue()
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    disconnected: queue.Queue[ReasonCode] = queue.Queue()
    paho.on_connect = lambda _c, _u, _f, code, _p: connack.put(code)
    paho.on_message = lambda _c, _u, message: received.put(message)
    paho.on_disconnect = lambda _c, _u, _f, code, _p: disconnected.put(code)
    paho.connect("127.0.0.1", broker.hub_port if hub else broker.port)
    deadline = time.monotonic() + WAIT_S
    while connack.empty() and disconnected.empty() and time.monotonic() < deadline:
        paho.loop(timeout=0.05)  # no network thread until accepted: a refused client must not retry
    result = Client(paho, None if connack.empty() else connack.get_nowait(), received, disconnected)
    assert result.connack is not None or not disconnected.empty(), "neither CONNACK nor disconnection in time"
    if not result.refused:
        paho.loop_start()
    return result


def hub_gateway(broker: Broker) -> Client:
    """The gateway's account on the hub listener, with the gateway's client id and a persistent session."""
    gateway = client(broker, GATEWAY, GATEWAY_SECRET, hub=True, client_id=GATEWAY_CLIENT_ID, clean_session=False)
    assert gateway.subscribe("gridhub/v1/#").value == 1
    return gateway


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Client]:
    gateway = hub_gateway(broker)
    yield gateway
    gateway.close()


def reading() -> bytes:
    return f'{{"ts": {time.time():.3f}, "seq": 1, "rain_mm": 0.5, "id": "{uuid.uuid4()}"}}'.encode()


def eventually_connects(broker: Broker, username: str, password: str) -> Client:
    """Connect, retrying while a reloading Mosquitto may still hold the old files."""
    deadline = time.monotonic() + WAIT_S
    while True:
        device = client(broker, username, password)
        if not device.refused or time.monotonic() > deadline:
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
    assert client(broker, username, password).refused


def test_anonymous_clients_are_refused(broker: Broker) -> None:
    assert client(broker, None).refused


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
    if not liar.refused:  # Mosquitto accepts and drops the will; amqtt refuses the connection
        liar.drop()
    device = client(broker, "rain-0001", demo_secret("rain-0001"), will=("gridhub/v1/rain/rain-0001/status", honest))
    device.drop()
    assert gateway.expect(honest, forbidden=forged).topic == "gridhub/v1/rain/rain-0001/status"


def test_the_gateway_publishes_nothing_under_gridhub_v1(broker: Broker, gateway: Client) -> None:
    forged, sentinel = reading(), reading()
    gateway.publish("gridhub/v1/rain/rain-0001/telemetry", forged)
    gateway.publish(f"gridhub/v1/rain/{GATEWAY}/telemetry", forged)
    device = client(broker, "rain-0001", demo_secret("rain-0001"))
    device.publish("gridhub/v1/rain/rain-0001/telemetry", sentinel)
    gateway.expect(sentinel, forbidden=forged)
    device.close()


def test_a_service_client_has_its_own_retire_marker_topic_and_no_one_elses(broker: Broker, gateway: Client) -> None:
    """`gridhub gateway --retire` publishes a marker to gridhub/retire/<its client id> and reads it back."""
    own, other = f"gridhub/retire/{GATEWAY_CLIENT_ID}", "gridhub/retire/gridhub-gateway-2"
    assert gateway.subscribe(own).value == 1
    marker = reading()
    gateway.publish(own, marker)
    assert gateway.expect(marker).topic == own
    neighbour = client(broker, GATEWAY, GATEWAY_SECRET, hub=True, client_id="gridhub-gateway-2")
    neighbour.subscribe(other)
    neighbour.subscribe(own)
    forged, sentinel = reading(), reading()
    gateway.publish(other, forged)  # would end the other gateway's drain early
    gateway.publish(own, forged)  # not the neighbour's to read
    neighbour.publish(other, sentinel)
    neighbour.expect(sentinel, forbidden=forged)
    neighbour.close()
    device = client(broker, "rain-0001", demo_secret("rain-0001"))  # the device listener: no marker topics at all
    from_device, sentinel = reading(), reading()
    device.publish(own, from_device)
    gateway.publish(own, sentinel)
    gateway.expect(sentinel, forbidden=from_device)
    device.close()


def test_a_device_added_later_connects_once_the_files_are_rewritten(broker: Broker, gateway: Client) -> None:
    city = load_city(load_settings(environ={}))
    device_id = f"rain-late-{broker.name}"
    secret = add_device(broker.engine, new_device(city, {
        "id": device_id, "kind": "rain", "lon": "121.430616", "lat": "31.195395", "report_interval_s": "60"}))
    assert client(broker, device_id, secret).refused  # the broker does not know it yet
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
        assert client(broker, device_id, old).refused
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
    gateway = client(broker, GATEWAY, GATEWAY_SECRET, hub=True)
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
    late_gateway = client(broker, GATEWAY, GATEWAY_SECRET, hub=True)
    late_gateway.subscribe("gridhub/v1/+/+/status")
    late_gateway.expect(status)
    other.close()
    assert other.received.empty()
    late_gateway.close()
    device.close()


def sentinel_arrives(broker: Broker, gateway: Client) -> None:
    """A reading published now by a bystander device reaches the gateway."""
    device = client(broker, "rain-0004", demo_secret("rain-0004"))
    payload = reading()
    device.publish("gridhub/v1/rain/rain-0004/telemetry", payload)
    gateway.expect(payload)
    device.close()


@pytest.mark.parametrize(("hub", "username", "password"), [
    pytest.param(False, "rain-0003", "wrong", id="device-listener-wrong-password"),
    pytest.param(False, "rain-0003", demo_secret("rain-0003"), id="device-listener-another-account"),
    pytest.param(False, GATEWAY, GATEWAY_SECRET, id="device-listener-the-gateways-account"),
    pytest.param(True, GATEWAY, "wrong", id="hub-listener-wrong-password"),
    pytest.param(True, "rain-0003", demo_secret("rain-0003"), id="hub-listener-a-devices-account"),
])
def test_a_connect_with_the_gateways_client_id_leaves_the_gateways_session_alone(
        broker: Broker, gateway: Client, hub: bool, username: str, password: str) -> None:
    intruder = client(broker, username, password, hub=hub, client_id=GATEWAY_CLIENT_ID)
    sentinel_arrives(broker, gateway)
    assert gateway.disconnected.empty()
    if not intruder.refused:  # a device is let in under its own name, whatever client id it asked for
        intruder.close()


@pytest.mark.parametrize("password", [pytest.param("wrong", id="wrong-password"),
                                      pytest.param(demo_secret("rain-0003"), id="another-account")])
def test_a_connect_with_another_devices_client_id_leaves_that_devices_session_alone(
        broker: Broker, gateway: Client, password: str) -> None:
    victim = client(broker, "rain-0004", demo_secret("rain-0004"), client_id="rain-0004")
    intruder = client(broker, "rain-0003", password, client_id="rain-0004")
    payload = reading()
    victim.publish("gridhub/v1/rain/rain-0004/telemetry", payload)  # on the connection it had before
    gateway.expect(payload)
    assert victim.disconnected.empty()
    victim.close()
    if not intruder.refused:
        intruder.close()


# Mosquitto's client ids are one namespace across listeners, and nothing there binds a hub account's client
# id to it: the hub listener is for the hub's own services, whose configuration is trusted.
@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
def test_a_service_account_cannot_take_a_devices_client_id_on_amqtt(broker: Broker, gateway: Client) -> None:
    victim = client(broker, "rain-0004", demo_secret("rain-0004"), client_id="rain-0004")
    intruder = client(broker, GATEWAY, GATEWAY_SECRET, hub=True, client_id="rain-0004")
    payload = reading()
    victim.publish("gridhub/v1/rain/rain-0004/telemetry", payload)
    gateway.expect(payload)
    assert victim.disconnected.empty()
    victim.close()
    if not intruder.refused:
        intruder.close()


def test_a_packet_over_the_limit_is_not_delivered_and_its_sender_is_disconnected(
        broker: Broker, gateway: Client) -> None:
    device = client(broker, "rain-0003", demo_secret("rain-0003"))
    oversized = b"x" * 10_000_000
    device.mqtt.publish("gridhub/v1/rain/rain-0003/telemetry", oversized, qos=1)
    assert device.session_ended(WAIT_S)
    sentinel = reading()
    other = client(broker, "rain-0004", demo_secret("rain-0004"))
    other.publish("gridhub/v1/rain/rain-0004/telemetry", sentinel)
    gateway.expect(sentinel, forbidden=oversized)
    other.close()
    device.close()


@pytest.mark.parametrize("will_topic", ["gridhub/v1/rain/+/status", "gridhub/v1/rain/rain-0003/#"])
def test_a_will_with_a_wildcard_topic_is_refused_at_connect(broker: Broker, will_topic: str) -> None:
    assert client(broker, "rain-0003", demo_secret("rain-0003"), will=(will_topic, b"offline")).refused


def rotate(broker: Broker, device_id: str) -> None:
    rotate_secret(broker.engine, device_id)


def disable(broker: Broker, device_id: str) -> None:
    set_enabled(broker.engine, device_id, False)


def remove(broker: Broker, device_id: str) -> None:
    remove_device(broker.engine, device_id)


@pytest.mark.parametrize("change", [rotate, disable, remove], ids=["rotate-secret", "disable", "remove"])
def test_a_device_whose_secret_is_withdrawn_loses_its_session_and_cannot_log_in_again(
        broker: Broker, gateway: Client, change: Callable[[Broker, str], None]) -> None:
    city = load_city(load_settings(environ={}))
    device_id = f"rain-{change.__name__}-{broker.name}"
    secret = add_device(broker.engine, new_device(city, {
        "id": device_id, "kind": "rain", "lon": "121.430616", "lat": "31.195395", "report_interval_s": "60"}))
    broker.rewrite_files()
    device = eventually_connects(broker, device_id, secret)
    bystander = client(broker, "rain-0004", demo_secret("rain-0004"))
    change(broker, device_id)
    broker.rewrite_files()
    assert device.session_ended(SESSION_END_S)
    assert client(broker, device_id, secret).refused
    assert bystander.disconnected.empty()  # the reload that ended the device's session kept the others'
    # Each rewrite hashed the gateway's unchanged secret with a new salt: its login still holds.
    assert gateway.disconnected.empty()
    bystander.close()
    device.close()
