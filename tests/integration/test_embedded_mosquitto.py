"""The embedded Mosquitto as `gridhub up` runs it: which broker `mqtt.embedded` picks, what survives a restart,
and the reload that follows a rewrite of the password and ACL files."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine

from core.credentials import password_hash
from core.settings import MqttSettings
from gridhub.localbrokers import embedded
from gridhub.runtime import mosquitto
from storage.broker_files import write_broker_files
from storage.db import connect
from storage.devices import devices_table
from storage.schema import init_db

GATEWAY, GATEWAY_SECRET = "gridhub-gateway", "gateway-secret"
DEVICE, DEVICE_SECRET = "rain-0001", "device-secret"
WAIT_S = 10.0


@pytest.fixture
def auth_dir(tmp_path: Path) -> Path:
    """Broker files for one device and the gateway, written from a registry as `gridhub up` writes them."""
    engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(devices_table.insert().values(
            id=DEVICE, kind="rain", grid_code="310104003001001", lon=121.430616, lat=31.195395, report_interval_s=60,
            secret_hash=password_hash(DEVICE_SECRET), created_at=datetime.now(UTC)))
    write_files(engine, tmp_path / "mqtt")
    return tmp_path / "mqtt"


def write_files(engine: Engine, directory: Path) -> None:
    write_broker_files(engine, directory, {GATEWAY: password_hash(GATEWAY_SECRET)})


def test_auto_picks_mosquitto_when_it_is_installed() -> None:
    assert mosquitto.binary(MqttSettings(embedded="auto")) == mosquitto.installed() is not None


def test_auto_falls_back_to_amqtt_without_mosquitto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mosquitto, "installed", lambda: None)
    assert mosquitto.binary(MqttSettings(embedded="auto")) is None


def test_amqtt_is_used_when_asked_for_even_with_mosquitto_installed() -> None:
    assert mosquitto.binary(MqttSettings(embedded="amqtt")) is None


def test_asking_for_mosquitto_without_it_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mosquitto, "installed", lambda: None)
    with pytest.raises(mosquitto.MosquittoNotFound, match="apt-get install mosquitto"):
        mosquitto.binary(MqttSettings(embedded="mosquitto"))


def test_debians_mosquitto_outside_path_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert mosquitto.installed() == str(mosquitto.DEBIAN_BINARY)


def test_the_version_is_read_from_the_binary() -> None:
    binary = mosquitto.installed()
    assert binary is not None
    assert mosquitto.version(binary).startswith("2.")


class Subscriber:
    """The gateway's account with a persistent QoS 1 session on the hub listener."""

    def __init__(self, hub_port: int) -> None:
        self.received: queue.Queue[bytes] = queue.Queue()
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gridhub-gateway-1",
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.username_pw_set(GATEWAY, GATEWAY_SECRET)
        self.client.on_connect = lambda *_: self.connected.set()
        self.client.on_message = lambda _c, _u, message: self.received.put(message.payload)
        self.client.connect("127.0.0.1", hub_port)
        self.client.loop_start()
        assert self.connected.wait(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.integration
def test_the_gateways_session_and_its_queued_messages_survive_a_restart(auth_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with embedded("mosquitto", state, auth_dir) as broker:
        gateway = Subscriber(broker.hub_port)
        subscribed = gateway.client.subscribe("gridhub/v1/#", qos=1)
        assert subscribed[0] == mqtt.MQTT_ERR_SUCCESS
        gateway.close()  # offline: what follows is queued for it
        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=mqtt.MQTTv311)
        device.username_pw_set(DEVICE, DEVICE_SECRET)
        device.connect("127.0.0.1", broker.port)
        device.loop_start()
        sent = [f'{{"seq": {seq}}}'.encode() for seq in range(100)]
        for payload in sent:
            device.publish(f"gridhub/v1/rain/{DEVICE}/telemetry", payload, qos=1).wait_for_publish(WAIT_S)
        device.disconnect()
        device.loop_stop()
    with embedded("mosquitto", state, auth_dir) as broker:  # stopped with SIGTERM, as the supervisor stops it
        gateway = Subscriber(broker.hub_port)
        received = [gateway.received.get(timeout=WAIT_S) for _ in sent]
        gateway.close()
    assert received == sent


@pytest.fixture
def engine_and_dir(tmp_path: Path) -> tuple[Engine, Path]:
    engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    init_db(engine)
    write_files(engine, tmp_path / "mqtt")
    return engine, tmp_path / "mqtt"


async def reloads_after(directory: Path, rewrite: Callable[[], None] | None,
                        since: mosquitto.Fingerprint | None = None) -> bool:
    """Run the watcher, call `rewrite`, and say whether the watcher asked for a reload within WAIT_S."""
    reloaded = asyncio.Event()
    watcher = asyncio.create_task(mosquitto.watch_auth_files(directory, reloaded.set, since=since))
    try:
        await asyncio.sleep(0)  # the watcher has taken its fingerprint when `since` is None
        if rewrite is not None:
            await asyncio.to_thread(rewrite)
        await asyncio.wait_for(reloaded.wait(), WAIT_S)
        return True
    except TimeoutError:
        return False
    finally:
        watcher.cancel()


def test_a_rewrite_of_the_files_asks_for_a_reload(engine_and_dir: tuple[Engine, Path]) -> None:
    engine, directory = engine_and_dir
    assert asyncio.run(reloads_after(directory, lambda: write_files(engine, directory)))


def test_a_rewrite_between_the_fingerprint_and_the_watcher_still_asks_for_a_reload(
        engine_and_dir: tuple[Engine, Path]) -> None:
    engine, directory = engine_and_dir
    before = mosquitto.fingerprint(directory)
    write_files(engine, directory)  # while the broker was starting
    assert asyncio.run(reloads_after(directory, None, since=before))
