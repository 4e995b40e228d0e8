"""`gridhub services`: real Kafka, PostgreSQL, InfluxDB 2 and Mosquitto on loopback, each serving what GridHub
asks of it, pointed at by a settings file GridHub loads, restartable on its data, and gone after `down`.

The first run on a machine fetches Kafka and builds influxd into ~/.cache/gridhub/ (minutes); later runs start
from the cache."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from click.testing import CliRunner
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from sqlalchemy import text

from core.credentials import password_hash
from core.settings import Settings, load_settings
from gridhub.cli import cli
from gridhub.cli.services import ALL
from gridhub.localbrokers import free_port
from gridhub.services import NAMES, Mosquitto, ServiceError, Services, is_cached, kafka_cluster_id, status
from storage.broker_files import write_broker_files
from storage.db import connect
from storage.devices import devices_table
from storage.schema import current_revision, head_revision, init_db
from tests import production
from tests.production import reachable_dir

# The first run on a machine fetches Kafka and builds influxd inside the fixture: 5 to 15 minutes on two cores.
CACHED = all(is_cached(name) for name in ("kafka", "influxdb"))
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300 if CACHED else 1800)]

DEVICE, DEVICE_SECRET = "rain-0001", "device-secret"
WAIT_S = 10.0


def test_a_kafka_cluster_id_never_starts_with_a_dash_the_storage_tool_would_read_as_an_option() -> None:
    # 0xf8 in the first byte encodes as "-" in URL-safe base64: one UUID in 64 starts so, and CI met one.
    draws = iter([uuid.UUID(bytes=bytes([0xF8]) + bytes(15)), uuid.UUID(bytes=bytes([0xF8]) + bytes(15)),
                  uuid.UUID(bytes=bytes(range(16)))])
    cluster_id = kafka_cluster_id(lambda: next(draws))
    assert cluster_id == "AAECAwQFBgcICQoLDA0ODw"
    assert len(cluster_id) == 22


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    """All four services, started once for the module."""
    with production.servers(NAMES) as started:
        yield started


@pytest.fixture(scope="module")
def settings(services: Services) -> Settings:
    """GridHub's settings from the gridhub.yaml `up` wrote, and nothing else."""
    return load_settings(services.config_file, environ={})


def test_the_settings_file_points_gridhub_at_every_service(services: Services, settings: Settings) -> None:
    assert settings.kafka.bootstrap == services.kafka.url
    assert settings.database_url == services.postgres.url
    assert settings.telemetry_store.backend == "influxdb"
    assert settings.telemetry_store.influx_url == services.influxdb.url
    assert settings.telemetry_store.token() == services.influxdb.credentials["token"]
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.hub_port) == (
        "127.0.0.1", services.mosquitto.port, services.mosquitto.ports["hub_port"])
    assert settings.mqtt_password() is not None
    assert services.influxdb.credentials["token"] not in services.config_file.read_text()


def test_kafka_takes_a_topic_and_returns_the_record_produced_to_it(settings: Settings) -> None:
    async def round_trip() -> bytes:
        bootstrap, topic = settings.kafka.bootstrap_servers, f"test-{uuid.uuid4().hex}"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"reading", key=b"310104003001001")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), WAIT_S)
        finally:
            await consumer.stop()
        assert isinstance(record.value, bytes)
        return record.value

    assert asyncio.run(round_trip()) == b"reading"


def test_postgres_answers_and_takes_gridhubs_schema(settings: Settings) -> None:
    engine = connect(settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
    init_db(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_influxdb_returns_a_written_point_to_a_flux_query(settings: Settings) -> None:
    store, token = settings.telemetry_store, settings.telemetry_store.token()
    assert token is not None
    with InfluxDBClient(url=store.influx_url, token=token, org=store.influx_org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(store.influx_bucket,
                                                          record=f"rain,device={DEVICE} mm_per_h=12.5")
        tables = client.query_api().query(
            f'from(bucket: "{store.influx_bucket}") |> range(start: -1h) |> filter(fn: (r) => r.device == "{DEVICE}")')
    assert [record.get_value() for table in tables for record in table.records] == [12.5]


def test_mosquitto_delivers_a_registered_devices_reading_to_the_gateway_after_a_reload(
    services: Services, settings: Settings
) -> None:
    engine = connect(settings.database_url)
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(devices_table.insert().values(
            id=DEVICE, kind="rain", grid_code="310104003001001", lon=121.430616, lat=31.195395, report_interval_s=60,
            secret_hash=password_hash(DEVICE_SECRET), created_at=datetime.now(UTC)))
    gateway_password = settings.mqtt_password()
    assert gateway_password is not None
    # What `gridhub up` does with this settings file: the registry's devices into the broker's files.
    write_broker_files(engine, services.mosquitto.auth_dir, {settings.mqtt.username: password_hash(gateway_password)})
    engine.dispose()
    services.mosquitto.reload()

    received: queue.Queue[bytes] = queue.Queue()
    gateway = connected(settings.mqtt.hub_port or 0, settings.mqtt.username, gateway_password, "gridhub-gateway-1")
    gateway.on_message = lambda _client, _userdata, message: received.put(bytes(message.payload))
    gateway.subscribe("$share/gridhub/gridhub/v1/#", qos=1)
    device = connected(settings.mqtt.port, DEVICE, DEVICE_SECRET, DEVICE)
    payload = None
    deadline = time.monotonic() + WAIT_S
    try:
        # Published until the subscription is in place: nothing is kept for a subscriber not there yet.
        while payload is None and time.monotonic() < deadline:
            device.publish(f"gridhub/v1/rain/{DEVICE}/telemetry", b'{"seq": 1}', qos=1).wait_for_publish(WAIT_S)
            with contextlib.suppress(queue.Empty):
                payload = received.get(timeout=0.2)
    finally:
        for client in (gateway, device):
            client.disconnect()
            client.loop_stop()
    assert payload == b'{"seq": 1}'


def connected(port: int, username: str, password: str, client_id: str) -> mqtt.Client:
    """A paho client logged in on the port, retried while Mosquitto may still be reloading its files."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        client = logged_in(port, username, password, client_id)
        if client is not None:
            return client
    pytest.fail(f"{username} could not log in on port {port}")


def logged_in(port: int, username: str, password: str, client_id: str) -> mqtt.Client | None:
    """A paho client whose login the broker accepted within a second, else None."""
    accepted = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: accepted.set() if not reason.is_failure else None
    client.connect("127.0.0.1", port)
    client.loop_start()
    if accepted.wait(1.0):
        return client
    client.disconnect()
    client.loop_stop()
    return None


def test_postgres_keeps_its_data_when_stopped_and_started_again(services: Services) -> None:
    engine = connect(services.postgres.url)
    with engine.begin() as conn:
        conn.execute(text("create table kept (value text)"))
        conn.execute(text("insert into kept values ('before the stop')"))
    engine.dispose()
    port = services.postgres.port

    services.postgres.stop()
    assert not services.postgres.running()
    services.postgres.start()

    assert services.postgres.port == port
    with engine.connect() as conn:
        assert conn.execute(text("select value from kept")).scalar() == "before the stop"
    engine.dispose()


def test_a_service_that_cannot_start_names_itself_and_shows_the_end_of_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        broker = Mosquitto(tmp_path, ports={"port": taken.getsockname()[1], "hub_port": free_port()})
        with pytest.raises(ServiceError, match=r"(?s)^mosquitto: .*Address already in use"):
            broker.start()
    assert not broker.running()
    assert not broker.data_dir.exists()  # the next start initialises again


def test_down_stops_every_service_up_started() -> None:
    directory = reachable_dir()
    runner = CliRunner()
    try:
        up = runner.invoke(cli, ["services", "up", "--dir", str(directory)])
        assert up.exit_code == 0, up.output
        assert f"gridhub up --config {directory / 'gridhub.yaml'}" in up.output
        recorded = [handle.pid for handle in status(directory).handles.values() if handle.pid is not None]
        assert len(recorded) == len(NAMES)
        assert sorted(processes_naming(directory)) == sorted(recorded)

        down = runner.invoke(cli, ["services", "down", "--dir", str(directory)])
        assert down.exit_code == 0, down.output

        assert processes_naming(directory) == []
        shown = runner.invoke(cli, ["services", "status", "--dir", str(directory)])
        assert "no services recorded" in shown.output
    finally:
        runner.invoke(cli, ["services", "down", "--dir", str(directory)])
        shutil.rmtree(directory, ignore_errors=True)


def processes_naming(directory: Path) -> list[int]:
    """Live processes (not zombies) with the directory on their command line: the services' main processes."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(directory) in cmdline and (proc / "stat").read_text().rpartition(")")[2].split()[0] != "Z":
                found.append(int(proc.name))
    return found


def test_the_commands_default_set_is_every_service() -> None:
    assert ALL.split(",") == list(NAMES)
