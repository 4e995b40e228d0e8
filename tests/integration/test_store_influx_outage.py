"""`gridhub store` into a real InfluxDB 2 while readings keep coming: InfluxDB stopped for 20 s, and the writer
SIGKILLed. Kafka is the embedded broker (Tansu); InfluxDB is influxd from gridhub.services.

With InfluxDB the consumer group's committed offset is the only record of progress, so the tests read it from
the broker: during the outage it must not pass what was produced before InfluxDB stopped while the topic keeps
growing, and every reading below it must already be in InfluxDB. Afterwards every reading produced is in
InfluxDB once.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from influxdb_client.client.influxdb_client import InfluxDBClient

from core import kafka
from core.lifecycle import READY_FILE_ENV
from core.metrics import MULTIPROC_ENV
from domain.epoch import EPOCH
from domain.registry import DeviceKind
from domain.telemetry import Reading, TelemetryBatch, encode_record
from gridhub.services import InfluxDB, is_cached
from ingest.store_writer import GROUP
from tests import brokers, production

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300 if is_cached("influxdb") else 1800)]

T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z
PARTITIONS = 3
CELLS = ("310104003001001", "310104003001003", "310104003001005", "310104003001009")  # on every partition
OUTAGE_S = 20.0
RECORD_INTERVAL_S = 0.02  # the pace of the stream: about 100 readings a second
Identity = tuple[str, int, int]  # device, ts_ms, seq: what makes a reading unique


@pytest.fixture(scope="module")
def influxdb() -> Iterator[InfluxDB]:
    """A real influxd for the module; each test writes to a bucket of its own."""
    with production.servers(["influxdb"]) as services:
        yield services.influxdb


def client(influxdb: InfluxDB) -> InfluxDBClient:
    return InfluxDBClient(url=influxdb.url, token=influxdb.credentials["token"], org="gridhub")


def new_bucket(influxdb: InfluxDB, name: str) -> str:
    with client(influxdb) as influx:
        influx.buckets_api().create_bucket(bucket_name=name, org="gridhub")
    return name


def stored(influxdb: InfluxDB, bucket: str) -> collections.Counter[Identity]:
    """Every reading in the bucket, counted by its identity (device, time, seq)."""
    flux = (f'from(bucket: "{bucket}") |> range(start: 0) |> filter(fn: (r) => r._field == "seq")'
            ' |> keep(columns: ["device_id", "_time", "_value"])')
    with client(influxdb) as influx:
        tables = influx.query_api().query(flux)
    return collections.Counter(
        (str(record.values["device_id"]), (record.get_time() - EPOCH) // timedelta(milliseconds=1),
         int(record.get_value()))
        for table in tables for record in table.records)


class Stream:
    """Produces numbered records, two readings each, and remembers what went to which partition and offset."""

    def __init__(self, bootstrap: str) -> None:
        self.records: dict[int, list[set[Identity]]] = collections.defaultdict(list)  # partition → by offset
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self._next = 0

    @property
    def identities(self) -> set[Identity]:
        """Every reading produced so far."""
        return {identity for records in self.records.values() for readings in records for identity in readings}

    def ends(self) -> dict[int, int]:
        """Partition → the offset after its last record."""
        return {partition: len(records) for partition, records in self.records.items()}

    def below(self, offsets: dict[int, int]) -> set[Identity]:
        """The readings of the records before the given offsets."""
        return {identity for partition, offset in offsets.items()
                for readings in self.records[partition][:offset] for identity in readings}

    async def run(self, stop: asyncio.Event) -> None:
        """Produce one record every RECORD_INTERVAL_S until `stop` is set."""
        await self._producer.start()
        try:
            while not stop.is_set():
                await self.send_one()
                await asyncio.sleep(RECORD_INTERVAL_S)
        finally:
            await self._producer.stop()

    async def send_one(self) -> None:
        i, self._next = self._next, self._next + 1
        cell = CELLS[i % len(CELLS)]
        readings = tuple(Reading(f"rain-{i % 40:04d}-{n}", DeviceKind.RAIN, cell, T0 + i * 1000, T0 + i * 1000 + 20,
                                 i, {"rain_mm": 0.2, "battery_v": 3.7}) for n in range(2))
        metadata = await self._producer.send_and_wait(kafka.TELEMETRY, encode_record([TelemetryBatch(cell, readings)]),
                                                      key=cell.encode())
        records = self.records[metadata.partition]
        assert metadata.offset == len(records), "the broker skipped an offset"
        records.append({(r.device_id, r.ts_ms, r.seq) for r in readings})


class Committed:
    """Reads the offsets the store's consumer group committed on the broker, without joining the group."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)

    async def __aenter__(self) -> Committed:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def offsets(self) -> dict[int, int]:
        """Partition → the committed offset, 0 where none is."""
        return {p: await self._consumer.committed(TopicPartition(kafka.TELEMETRY, p)) or 0 for p in range(PARTITIONS)}


async def until(condition: Callable[[], Awaitable[object]], timeout_s: float, what: str) -> None:
    """Poll an async condition until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.2)


class Writers:
    """`gridhub store` processes writing into one InfluxDB bucket, each logging to a file of its own."""

    def __init__(self, directory: Path, bootstrap: str, influxdb: InfluxDB, bucket: str) -> None:
        self.directory = directory
        self.ready = directory / "store.ready"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_") and k != MULTIPROC_ENV}
        self.env |= {
            "GRIDHUB_STATE_DIR": str(directory), "GRIDHUB_KAFKA__BOOTSTRAP": bootstrap,
            "GRIDHUB_TELEMETRY_STORE__BACKEND": "influxdb", "GRIDHUB_TELEMETRY_STORE__INFLUX_URL": influxdb.url,
            "GRIDHUB_TELEMETRY_STORE__INFLUX_BUCKET": bucket,
            "GRIDHUB_TELEMETRY_STORE__INFLUX_TOKEN_FILE": str(influxdb.token_file),
            "GRIDHUB_TELEMETRY_STORE__BATCH_MAX": "50", "GRIDHUB_TELEMETRY_STORE__LINGER_MS": "50",
            READY_FILE_ENV: str(self.ready),
        }
        self.logs: list[Path] = []
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        self.ready.unlink(missing_ok=True)
        log = self.directory / f"store-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "gridhub", "store"], env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT)
        self.running.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def writers_for(tmp_path: Path) -> Iterator[Callable[[str, InfluxDB, str], Writers]]:
    """Makes the test's writers; whichever are still running at its end are killed."""
    made: list[Writers] = []

    def make(bootstrap: str, influxdb: InfluxDB, bucket: str) -> Writers:
        made.append(Writers(tmp_path, bootstrap, influxdb, bucket))
        return made[-1]

    yield make
    for writers in made:
        writers.kill_all()


def test_influxdb_stopped_for_20_s_holds_the_offsets_and_loses_nothing(
    influxdb: InfluxDB, writers_for: Callable[[str, InfluxDB, str], Writers]
) -> None:
    bucket = new_bucket(influxdb, "outage")

    async def count() -> int:
        return len(await asyncio.to_thread(stored, influxdb, bucket))

    async def scenario(bootstrap: str, writers: Writers) -> Stream:
        await kafka.ensure_topics(bootstrap, partitions=PARTITIONS)
        stream, stop_stream = Stream(bootstrap), asyncio.Event()
        async with Committed(bootstrap) as committed:
            writer = writers.start()
            await until(_exists(writers.ready), 30, "the writer says it is consuming")
            producing = asyncio.create_task(stream.run(stop_stream))
            await until(lambda: _at_least(count(), 200), 30, "readings reach InfluxDB")

            await asyncio.to_thread(influxdb.stop)
            # Whatever InfluxDB took before it stopped was produced before now, so below these ends.
            ends_at_stop, back_at = stream.ends(), asyncio.get_running_loop().time() + OUTAGE_S
            while asyncio.get_running_loop().time() < back_at:  # the outage is the scenario, not a wait for it
                offsets = await committed.offsets()
                assert all(offsets[p] <= ends_at_stop[p] for p in range(PARTITIONS)), (offsets, ends_at_stop)
                await asyncio.sleep(0.5)
            # Meanwhile the topic kept growing on every partition: records were in flight throughout.
            ends = stream.ends()
            assert all(ends[p] > ends_at_stop[p] for p in range(PARTITIONS)), (ends_at_stop, ends)

            # Freeze the writer, bring InfluxDB back and look: every reading below the committed offsets is in it.
            os.kill(writer.pid, signal.SIGSTOP)
            try:
                held = await committed.offsets()
                await asyncio.to_thread(influxdb.start)
                before = set(await asyncio.to_thread(stored, influxdb, bucket))
            finally:
                os.kill(writer.pid, signal.SIGCONT)
            assert sum(held.values()) > 0
            assert stream.below(held) <= before
            assert not stream.identities <= before  # and the outage did leave readings to write

            await until(lambda: _at_least(count(), len(before) + 200), 60, "writing resumes")
            stop_stream.set()
            await producing
            await until(lambda: _at_least(count(), len(stream.identities)), 60, "every reading reaches InfluxDB")
            await until(lambda: _is(committed.offsets(), stream.ends()), 15, "the offsets catch up")
        writer.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(writer.wait, 20) == 0
        return stream

    with brokers.tansu() as bootstrap:
        writers = writers_for(bootstrap, influxdb, bucket)
        try:
            stream = asyncio.run(scenario(bootstrap, writers))
        finally:
            if not influxdb.running():  # the scenario failed during the outage: the next test needs InfluxDB
                influxdb.start()

    in_influx = stored(influxdb, bucket)
    assert set(in_influx) == stream.identities  # nothing lost
    assert set(in_influx.values()) == {1}  # nothing twice
    assert "Connection refused); retry 1 of 5 with backoff" in writers.logs[0].read_text()


def test_a_writer_killed_mid_stream_and_started_again_loses_nothing(
    influxdb: InfluxDB, writers_for: Callable[[str, InfluxDB, str], Writers]
) -> None:
    bucket = new_bucket(influxdb, "crash")

    async def count() -> int:
        return len(await asyncio.to_thread(stored, influxdb, bucket))

    async def scenario(bootstrap: str, writers: Writers) -> tuple[int, int, Stream]:
        await kafka.ensure_topics(bootstrap, partitions=PARTITIONS)
        stream, stop_stream = Stream(bootstrap), asyncio.Event()
        async with Committed(bootstrap) as committed:
            first = writers.start()
            await until(_exists(writers.ready), 30, "the first writer says it is consuming")
            producing = asyncio.create_task(stream.run(stop_stream))
            await until(lambda: _at_least(count(), 200), 30, "the first writer stores readings")
            first.kill()  # SIGKILL: no flush, no goodbye to the group
            await asyncio.to_thread(first.wait)
            at_kill, produced_at_kill = await count(), len(stream.identities)
            second = writers.start()
            await until(lambda: _at_least(count(), at_kill + 200), 60, "the second writer stores readings")
            stop_stream.set()
            await producing
            await until(lambda: _at_least(count(), len(stream.identities)), 60, "every reading reaches InfluxDB")
            await until(lambda: _is(committed.offsets(), stream.ends()), 15, "the offsets catch up")
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 20) == 0
        return at_kill, produced_at_kill, stream

    with brokers.tansu() as bootstrap:
        at_kill, produced_at_kill, stream = asyncio.run(scenario(bootstrap, writers_for(bootstrap, influxdb, bucket)))

    assert at_kill < produced_at_kill  # killed with readings produced and not yet stored
    in_influx = stored(influxdb, bucket)
    assert set(in_influx) == stream.identities
    assert set(in_influx.values()) == {1}


def _exists(path: Path) -> Callable[[], Awaitable[bool]]:
    async def exists() -> bool:
        return await asyncio.to_thread(path.exists)

    return exists


async def _at_least(value: Awaitable[int], minimum: int) -> bool:
    return await value >= minimum


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected
