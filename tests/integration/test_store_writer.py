"""The store writer on a real Kafka-compatible broker (Tansu) and real SQLite: every reading arrives once
through a crash and restart, a locked database, a malformed record and a broker that lost its topics."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY
from sqlalchemy import Engine, create_engine, func, select

from core import kafka
from core.lifecycle import READY_FILE_ENV
from core.metrics import MULTIPROC_ENV
from core.settings import TelemetryStoreSettings
from domain.registry import DeviceKind
from domain.telemetry import Reading, StatusChange, TelemetryBatch, encode_record
from ingest.store_writer import StoreWriter
from storage.db import connect
from storage.schema import init_db
from storage.telemetry.sql import SqlTelemetryStore, readings, status_changes
from tests import brokers

pytestmark = pytest.mark.integration
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z
QUICK_BATCHES = TelemetryStoreSettings(linger_ms=20)  # a batch waits only 20 ms to fill
CELLS = ("310104003001001", "310104003001003", "310104003001005", "310104003001007")
Identity = tuple[str, int, int]  # device, ts_ms, seq: what makes a reading unique


def record(i: int, readings_per_record: int = 1) -> tuple[bytes, bytes, set[Identity]]:
    """Record number i: its key, its value and the identities of its readings."""
    cell = CELLS[i % len(CELLS)]
    batch = TelemetryBatch(cell, tuple(
        Reading(f"rain-{i % 40:04d}-{n}", DeviceKind.RAIN, cell, T0 + i * 1000, T0 + i * 1000 + 20, i,
                {"rain_mm": 0.2, "battery_v": 3.7})
        for n in range(readings_per_record)
    ))
    return cell.encode(), encode_record([batch]), {(r.device_id, r.ts_ms, r.seq) for r in batch.readings}


class Producer:
    """Produces numbered records and remembers what it produced."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.identities: set[Identity] = set()
        self.ends: dict[int, int] = {}  # partition → next offset
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap)

    async def __aenter__(self) -> Producer:
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def send(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        metadata = await self._producer.send_and_wait(self.topic, value, key=key, partition=partition)
        self.ends[metadata.partition] = metadata.offset + 1

    async def numbered(self, numbers: range, *, per_record: int = 1, partition: int | None = None,
                       interval_s: float = 0.0) -> None:
        for i in numbers:
            key, value, identities = record(i, per_record)
            await self.send(key, value, partition)
            self.identities |= identities
            await asyncio.sleep(interval_s)


def stored(engine: Engine) -> set[Identity]:
    with engine.connect() as conn:
        return {(r.device_id, r.ts_ms, r.seq)
                for r in conn.execute(select(readings.c.device_id, readings.c.ts_ms, readings.c.seq))}


def row_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(readings)).scalar_one())


def next_offsets(engine: Engine, topic: str, group: str) -> dict[int, int]:
    return {p: position.next_offset for p, position in SqlTelemetryStore(engine).positions(group, topic).items()}


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.1)


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def test_every_reading_arrives_once_through_a_crash_and_restart_of_gridhub_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_") and k != MULTIPROC_ENV}
    env |= {"GRIDHUB_STATE_DIR": str(tmp_path), "GRIDHUB_TELEMETRY_STORE__BATCH_MAX": "20",
            "GRIDHUB_TELEMETRY_STORE__LINGER_MS": "50", READY_FILE_ENV: str(tmp_path / "store.ready")}
    engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    init_db(engine)
    logs = [tmp_path / "store-1.log", tmp_path / "store-2.log"]

    def start(log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen([sys.executable, "-m", "gridhub", "store"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)

    async def scenario(bootstrap: str) -> tuple[bool, int, subprocess.Popen[bytes], Producer]:
        await kafka.ensure_topics(bootstrap, partitions=3)
        async with Producer(bootstrap, kafka.TELEMETRY) as producer:
            first = start(logs[0])
            await until((tmp_path / "store.ready").exists, 30, "the first writer says it is consuming")
            stream = asyncio.create_task(producer.numbered(range(700), per_record=2, interval_s=0.01))
            await until(lambda: row_count(engine) >= 100, 30, "the first writer stores readings")
            first.kill()  # SIGKILL: no flush, no goodbye to the group
            first.wait()
            mid_stream, at_kill = not stream.done(), row_count(engine)
            second = start(logs[1])
            await stream
            await producer.send(b"310104003001001", b'{"v": 1, "grid_code": "310104003001001", "readings": 7')
            await producer.numbered(range(700, 710), per_record=2)
            await until(lambda: row_count(engine) >= len(producer.identities), 45,
                        "the second writer stores the rest")
            return mid_stream, at_kill, second, producer

    with brokers.tansu() as bootstrap:
        env["GRIDHUB_KAFKA__BOOTSTRAP"] = bootstrap
        mid_stream, at_kill, second, producer = asyncio.run(scenario(bootstrap))
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0

    assert mid_stream and at_kill >= 100  # killed while readings were still being produced and stored
    assert stored(engine) == producer.identities  # nothing lost
    assert row_count(engine) == len(producer.identities)  # nothing twice
    assert next_offsets(engine, kafka.TELEMETRY, "gridhub-store") == producer.ends  # the malformed one too
    assert "skipped record gridhub.telemetry" in logs[1].read_text()


def test_a_locked_database_delays_writes_without_losing_any(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gridhub.store")
    topic = group = "store-locked-database"
    path = tmp_path / "gridhub.db"
    init_db(connect(f"sqlite:///{path}"))
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})  # give up on a lock at once
    retries_before = REGISTRY.get_sample_value("gridhub_store_write_retries_total") or 0.0

    def retries() -> float:
        return (REGISTRY.get_sample_value("gridhub_store_write_retries_total") or 0.0) - retries_before

    def lag() -> float:
        return sum(REGISTRY.get_sample_value("gridhub_store_consumer_lag", {"partition": p}) or 0.0 for p in "01")

    async def scenario() -> Producer:
        await create_topic(kafka_bootstrap, topic, 2)
        stop = asyncio.Event()
        writer = StoreWriter(SqlTelemetryStore(engine), kafka_bootstrap, QUICK_BATCHES, topic=topic, group=group,
                             lag_interval_s=0.1)
        task = asyncio.create_task(writer.run(stop))
        async with Producer(kafka_bootstrap, topic) as producer:
            await producer.numbered(range(10))
            await until(lambda: row_count(engine) == 10, 30, "the first ten readings are stored")

            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")  # another process holds the database
            await producer.numbered(range(10, 20))
            await until(lambda: retries() >= 2, 10, "the writer retries")
            await until(lambda: lag() == 10, 5, "the consumer lag shows the held records")
            assert holder.execute("SELECT count(*) FROM telemetry_readings").fetchone() == (10,)
            assert sum(next_offsets(engine, topic, group).values()) == 10  # offsets did not move
            holder.execute("COMMIT")
            holder.close()

            await until(lambda: row_count(engine) == 20, 20, "the held readings are stored after the lock")
            await until(lambda: next_offsets(engine, topic, group) == producer.ends, 5, "offsets catch up")
            await until(lambda: lag() == 0, 5, "the consumer lag is back to zero")
        stop.set()
        await task
        return producer

    producer = asyncio.run(scenario())
    assert stored(engine) == producer.identities
    messages = [r.getMessage() for r in caplog.records]
    assert any("telemetry store unavailable: database: database is locked" in m for m in messages)
    assert any("telemetry store is back" in m for m in messages)


def test_a_topic_recreated_by_a_broker_restart_is_read_from_the_beginning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gridhub.store")
    topic, group = "store-recreated", "gridhub-store"
    engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    init_db(engine)

    async def run_writer_until(bootstrap: str, done: Callable[[], Awaitable[bool]]) -> None:
        stop = asyncio.Event()
        writer = StoreWriter(SqlTelemetryStore(engine), bootstrap, QUICK_BATCHES, topic=topic, group=group)
        task = asyncio.create_task(writer.run(stop))
        deadline = asyncio.get_running_loop().time() + 40
        while not await done():
            assert asyncio.get_running_loop().time() < deadline, "the writer did not catch up"
            await asyncio.sleep(0.1)
        stop.set()
        await task

    async def life(bootstrap: str, numbers: dict[int, range]) -> Producer:
        await create_topic(bootstrap, topic, 2)
        async with Producer(bootstrap, topic) as producer:
            for partition, span in numbers.items():
                await producer.numbered(span, partition=partition)

        async def caught_up() -> bool:
            return await asyncio.to_thread(next_offsets, engine, topic, group) == producer.ends

        await run_writer_until(bootstrap, caught_up)
        return producer

    with brokers.tansu() as bootstrap:
        before = asyncio.run(life(bootstrap, {0: range(0, 10), 1: range(10, 20)}))
    assert SqlTelemetryStore(engine).positions(group, topic)[1].next_offset == 10
    with brokers.tansu() as bootstrap:  # the embedded broker restarted: same database, empty memory
        # Partition 0 now holds more records than before (different ones), partition 1 fewer.
        after = asyncio.run(life(bootstrap, {0: range(100, 115), 1: range(200, 204)}))

    assert stored(engine) == before.identities | after.identities
    assert next_offsets(engine, topic, group) == {0: 15, 1: 4}
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "store-recreated[0]: the record at offset 9 is not the last one the store wrote" in messages
    assert "store-recreated[1]: the record at offset 9, the last one the store wrote, is not on the broker" in messages


def test_a_replayed_status_is_stored_only_when_it_changes_the_devices_latest_status(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = group = "store-replayed-statuses"
    engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    init_db(engine)
    cell = CELLS[0]

    def status(device: str, ts_ms: int, online: bool, replayed: bool) -> bytes:
        change = StatusChange(device, DeviceKind.RAIN, cell, ts_ms, online, replayed)
        return encode_record([TelemetryBatch(cell, (), (change,))])

    def rows() -> list[tuple[str, int, bool]]:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(
                select(status_changes.c.device_id, status_changes.c.ts_ms, status_changes.c.online)
                .order_by(status_changes.c.device_id, status_changes.c.ts_ms))]

    async def scenario() -> None:
        await create_topic(kafka_bootstrap, topic, 1)
        stop = asyncio.Event()
        writer = StoreWriter(SqlTelemetryStore(engine), kafka_bootstrap, QUICK_BATCHES, topic=topic, group=group)
        task = asyncio.create_task(writer.run(stop))
        async with Producer(kafka_bootstrap, topic) as producer:
            await producer.send(cell.encode(), status("rain-0001", T0, True, replayed=False))
            await producer.send(cell.encode(), status("rain-0002", T0, True, replayed=False))
            await until(lambda: len(rows()) == 2, 30, "the live statuses are stored")
            # A gateway restarts: the broker replays both devices' retained statuses; rain-0002's will
            # was published while no gateway listened, so its retained status is now "offline".
            await producer.send(cell.encode(), status("rain-0001", T0 + 60_000, True, replayed=True))
            await producer.send(cell.encode(), status("rain-0002", T0 + 60_000, False, replayed=True))
            await until(lambda: next_offsets(engine, topic, group) == producer.ends, 30, "the replays are read")
        stop.set()
        await task

    asyncio.run(scenario())
    assert rows() == [("rain-0001", T0, True), ("rain-0002", T0, True), ("rain-0002", T0 + 60_000, False)]
