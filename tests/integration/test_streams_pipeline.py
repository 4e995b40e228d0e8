"""Scripted telemetry through the real pipeline: Mosquitto → gateway → Kafka → stream worker → case database.

One pipeline serves the module; every scenario plays in its own grid cell of the demo city, so they do
not see each other's cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import orjson
import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import Engine, update

from core import kafka
from core.city import load_city
from core.settings import Settings
from domain.case_records import CaseCommand, Command, encode_command
from domain.detections import Detection, DetectionKind, Phase, encode_detection
from domain.registry import ZoneKind
from domain.telemetry import decode_record
from storage.cases import CaseFilter, CaseSummary, get_case, list_cases
from storage.db import connect
from storage.devices import devices_table, seed_devices
from storage.schema import init_db
from tests import brokers, production
from tests.integration.test_gateway import MOSQUITTO_CONFIG, publisher, wait_for_log

pytestmark = pytest.mark.integration

RAIN_CELL, MANHOLE_CELL = "310104003001001", "310104003001003"
CROWD_CELL, SILENT_CELL = "310104003001007", "310104003001011"
SILENT_DEVICE = "crowd-0025"  # its report interval is set to 1 s, so 3 s of silence make it offline
PARTITIONS = 4
T = TypeVar("T")


@dataclass
class Pipeline:
    bootstrap: str
    mqtt: mqtt.Client
    db: Engine
    seq: dict[str, int]

    def publish(self, kind: str, device: str, ts_s: float, **values: float | bool) -> None:
        """Publish one reading at QoS 1 and wait for the broker's acknowledgement."""
        self.seq[device] = self.seq.get(device, 0) + 1
        payload = orjson.dumps({"ts": round(ts_s, 3), "seq": self.seq[device], **values})
        self.mqtt.publish(f"gridhub/v1/{kind}/{device}/telemetry", payload, qos=1).wait_for_publish(10)

    def cases(self, grid_code: str) -> list[CaseSummary]:
        return list_cases(self.db, CaseFilter(grid_prefix=grid_code)).items


def eventually(probe: Callable[[], T | None], timeout_s: float = 60, what: str = "condition",
               poll_s: float = 0.3) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            result = probe()
            if result:
                return result
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


def start_worker(env: dict[str, str], ready: Path) -> subprocess.Popen[bytes]:
    ready.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "gridhub", "worker"],
                               env={**env, "GRIDHUB_READY_FILE": str(ready)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: ready.exists() or process.poll() is not None, 60, "the worker's partition assignment")
        assert process.poll() is None, "the worker exited"
    except AssertionError:
        process.kill()
        raise
    return process


@contextlib.contextmanager
def profile_servers(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None]]:
    """Kafka's bootstrap and the database URL of the profile: the embedded Tansu and SQLite (None: the state
    directory's), or Apache Kafka and PostgreSQL."""
    if request.param == "embedded":
        with brokers.tansu() as bootstrap:
            yield bootstrap, None
    else:
        postgres = request.getfixturevalue("postgres_server")
        yield request.getfixturevalue("apache_kafka"), production.fresh_database(postgres)


@pytest.fixture(scope="module", params=["embedded", "production"])
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    state = tmp_path_factory.mktemp("state")
    with profile_servers(request) as (bootstrap, database_url), \
            brokers.mosquitto(state, MOSQUITTO_CONFIG) as mqtt_port:
        asyncio.run(kafka.ensure_topics(bootstrap, PARTITIONS))
        env = dict(os.environ, GRIDHUB_STATE_DIR=str(state), GRIDHUB_KAFKA__BOOTSTRAP=bootstrap,
                   GRIDHUB_MQTT__HOST="127.0.0.1", GRIDHUB_MQTT__PORT=str(mqtt_port),
                   GRIDHUB_GATEWAY__BATCH_LINGER_MS="10")
        if database_url is not None:
            env["GRIDHUB_DATABASE__URL"] = database_url
        else:
            env.update(brokers.TANSU_CLIENT_ENV)
        settings = Settings(state_dir=state, database={"url": database_url})
        db = connect(settings.database_url)
        init_db(db)
        seed_devices(db, load_city(settings), demo=True)
        with db.begin() as conn:
            conn.execute(update(devices_table).where(devices_table.c.id == SILENT_DEVICE).values(report_interval_s=1))
        gateway = subprocess.Popen([sys.executable, "-m", "gridhub", "gateway"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        worker = None
        client = None
        try:
            wait_for_log(gateway, b"subscribed to")
            worker = start_worker(env, state / "worker.ready")
            client = publisher(mqtt_port)
            yield Pipeline(bootstrap, client, db, {})
        finally:
            if client is not None:
                client.loop_stop()
                client.disconnect()
            for process in (worker, gateway):
                if process is not None:
                    process.terminate()
                    assert process.wait(30) == 0


def test_110_mm_over_3_hours_gives_one_waterlogging_case_that_climbs_to_red(pipeline: Pipeline) -> None:
    start = time.time() - 3 * 3600
    for minute in range(180):
        pipeline.publish("rain", "rain-0001", start + minute * 60 + 30, rain_mm=round(110 / 180, 4))

    red = eventually(lambda: [c for c in pipeline.cases(RAIN_CELL) if c.severity == "red"], what="a red 0406 case")
    cases = pipeline.cases(RAIN_CELL)
    assert [(c.category, c.severity, c.urgent, c.state, c.department) for c in cases] == [
        ("0406", "red", True, "dispatched", "水务")]
    doc, timeline = get_case(pipeline.db, red[0].id) or ({}, [])
    upgrades = [e["data"]["severity"] for e in timeline if e["action"] == "upgrade"]
    assert upgrades == ["orange", "red"]  # 110 mm evenly over 3 h: short-duration heavy rain first, then these
    assert timeline[0]["action"] == "report" and doc["severity"] == "red"


def test_an_open_manhole_cover_gives_one_urgent_case_dispatched_to_water_with_two_hours(pipeline: Pipeline) -> None:
    pipeline.publish("manhole", "manhole-0116", time.time(), tilt_deg=3.0, cover_open=True, water_level_cm=20.0)

    case = eventually(lambda: pipeline.cases(MANHOLE_CELL), what="a manhole case")[0]
    assert (case.category, case.urgent, case.department, case.tier, case.state) == (
        "0103", True, "水务", "street", "dispatched")
    assert case.dispatched_ms is not None and case.deadline_ms is not None
    assert timedelta(milliseconds=case.deadline_ms - case.dispatched_ms) == timedelta(hours=2)


def test_a_crowd_of_90_s_opens_nothing_and_one_of_150_s_opens_a_crowd_case(pipeline: Pipeline) -> None:
    brief, long = time.time() - 500, time.time() - 300
    for second in range(0, 91, 10):  # crowd-0029 counts a 150 m² zone: 400 people are 2.7 per m²
        pipeline.publish("crowd", "crowd-0029", brief + second, count=400)
    pipeline.publish("crowd", "crowd-0029", brief + 100, count=20)
    for second in range(0, 151, 10):
        pipeline.publish("crowd", "crowd-0029", long + second, count=400)

    # The long crowd is also the barrier: the same counter reported it after the brief one, so once its case is
    # there the brief crowd has been decided. Had that opened a case, the long crowd would have joined it (and
    # be reported too early) or there would be two.
    eventually(lambda: pipeline.cases(CROWD_CELL), what="a crowd case")
    [case] = pipeline.cases(CROWD_CELL)
    assert (case.category, case.severity, case.department) == ("9901", "warning", "公安")
    assert abs(case.reported_ms - (long + 120) * 1000) <= 1  # the moment the long crowd had lasted 2 minutes


def test_a_device_that_goes_silent_opens_a_maintenance_case_and_recovers(pipeline: Pipeline) -> None:
    pipeline.publish("crowd", SILENT_DEVICE, time.time(), count=3)
    deadline = time.monotonic() + 30
    while not pipeline.cases(SILENT_CELL) and time.monotonic() < deadline:
        # Its neighbour keeps the ingest clock of their partition going (a stalled partition proves nothing).
        pipeline.publish("rain", "rain-0006", time.time(), rain_mm=0.0)
        time.sleep(0.5)
    case = eventually(lambda: pipeline.cases(SILENT_CELL), 5, "a 9902 case")[0]
    assert (case.category, case.department, case.state) == ("9902", "运维", "dispatched")

    pipeline.publish("crowd", SILENT_DEVICE, time.time(), count=3)

    def recovered() -> bool:
        _, timeline = get_case(pipeline.db, case.id) or ({}, [])
        return any(e["action"] == "attach" and "back online" in e["note"] for e in timeline)

    eventually(recovered, 30, "the recovery evidence")
    assert [c.id for c in pipeline.cases(SILENT_CELL)] == [case.id]


def test_the_same_readings_replayed_twice_change_nothing(pipeline: Pipeline) -> None:
    eventually(lambda: [c for c in pipeline.cases(RAIN_CELL) if c.severity == "red"], what="the rain scenario")
    settle(pipeline.bootstrap)

    def snapshot() -> list[tuple[str, int]]:
        return sorted((c.id, c.version) for c in list_cases(pipeline.db, limit=500).items)

    before = snapshot()
    readings = asyncio.run(_reproduce_all_telemetry(pipeline.bootstrap))
    assert readings > 180
    settle(pipeline.bootstrap)  # whatever the replay would change is in the database now
    assert snapshot() == before


def settle(bootstrap: str) -> None:
    """Wait until the worker has committed every record on its inputs, then every case event on its sink."""
    inputs = (kafka.TELEMETRY, kafka.DETECTIONS, kafka.CASE_COMMANDS)
    # The worker commits an input record only once the case events it caused are in Kafka, and the sink
    # commits a case event only once it is in the database.
    eventually(lambda: asyncio.run(uncommitted(bootstrap, inputs)) == 0, what="the worker to commit its inputs")
    eventually(lambda: asyncio.run(uncommitted(bootstrap, (kafka.CASE_EVENTS,))) == 0,
               what="the sink to commit the case events")


async def uncommitted(bootstrap: str, topics: tuple[str, ...]) -> int:
    """Records on `topics` the worker's consumer group has not committed (a self-assigned consumer joins no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=Settings().streams.app_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, partition) for topic in topics for partition in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # Read to the end rather than ask for it: Tansu's ListOffsets answers its last batch's base offset + 1.
        ends = dict.fromkeys(tps, 0)
        while batch := await consumer.getmany(timeout_ms=500):
            for tp, records in batch.items():
                ends[tp] = records[-1].offset + 1
        return sum([max(0, ends[tp] - (await consumer.committed(tp) or 0)) for tp in tps])
    finally:
        await consumer.stop()


async def _reproduce_all_telemetry(bootstrap: str) -> int:
    """Append a copy of every record on gridhub.telemetry to it, as a redelivery would; return the readings."""
    consumer = AIOKafkaConsumer(kafka.TELEMETRY, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        records = []
        while batch := await consumer.getmany(timeout_ms=1000):
            records.extend(r for rs in batch.values() for r in rs)
        for record in records:
            await producer.send(kafka.TELEMETRY, record.value, key=record.key)
        await producer.flush()
        return sum(len(batch) for record in records for batch in decode_record(record.value))
    finally:
        await consumer.stop()
        await producer.stop()


def test_a_camera_detection_waits_for_an_operator_and_the_confirmation_files_it(pipeline: Pipeline) -> None:
    cell, now_ms = "310104004001007", int(time.time() * 1000)
    detection = Detection("cam-hunan-02/7", Phase.START, "cam-hunan-02", "crossing", ZoneKind.NO_VENDING,
                          DetectionKind.STALL, cell, now_ms - 60_000, now_ms, 0.6, (40, 260, 80, 60), "snap/1.jpg")
    asyncio.run(_produce(pipeline.bootstrap, kafka.DETECTIONS, cell, encode_detection(detection)))
    reported = eventually(lambda: pipeline.cases(cell), what="the reported stall case")[0]
    assert (reported.category, reported.state, reported.source) == ("0501", "reported", "camera")

    confirm = CaseCommand(reported.id, cell, Command.CONFIRM, "operator-7", datetime.now(UTC), "stall seen")
    asyncio.run(_produce(pipeline.bootstrap, kafka.CASE_COMMANDS, cell, encode_command(confirm)))
    filed = eventually(lambda: [c for c in pipeline.cases(cell) if c.state == "dispatched"], what="the dispatch")[0]
    assert (filed.id, filed.department, filed.tier) == (reported.id, "城管执法", "community")
    _, timeline = get_case(pipeline.db, filed.id) or ({}, [])
    assert [e["actor"] for e in timeline if e["action"] == "file"] == ["operator-7"]


async def _produce(bootstrap: str, topic: str, grid_code: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=grid_code.encode())
    finally:
        await producer.stop()
