"""A worker killed mid-stream (SIGKILL) and started again ends with the same cases as one that ran through."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import func, select

from core import kafka
from core.city import load_city
from core.settings import Settings
from domain.registry import DeviceKind
from domain.telemetry import Reading, TelemetryBatch, encode_record
from storage.cases import case_events, list_cases
from storage.db import connect
from storage.devices import seed_devices
from storage.schema import init_db
from tests import brokers
from tests.integration.test_streams_pipeline import eventually, start_worker, uncommitted

pytestmark = pytest.mark.integration

PARTITIONS = 4
Case = tuple[str, str, str, str, bool, str | None, str | None, int]


def scripted_city_hour(now_ms: int) -> list[TelemetryBatch]:
    """The demo city's last ten minutes of uploads: storms, crowds, open covers, weak batteries, silent counters.

    Event times reach back three hours (gauges upload what they buffered); every deadline of the cases it
    opens lies after `now_ms`, so no escalation depends on when the test runs.
    """
    rng = random.Random(4)
    devices = sorted(load_city(Settings()).registry.devices.values(), key=lambda d: d.id)
    rain = [d for d in devices if d.kind is DeviceKind.RAIN]
    crowd = [d for d in devices if d.kind is DeviceKind.CROWD]
    manhole = [d for d in devices if d.kind is DeviceKind.MANHOLE]
    storm = {d.id for d in rain[:6]}
    gathering = {d.id: 4.5 if i < 2 else 2.5 for i, d in enumerate(crowd[:8])}
    silent = {d.id for d in crowd[8:11]}
    weak = {d.id for d in rain[6:8] + crowd[11:13]}
    samples: list[tuple[int, str, DeviceKind, str, dict[str, float | bool], float | None, str | None]] = []
    for d in rain:
        span, step = (3 * 3600_000, 60_000) if d.id in storm else (3600_000, 60_000)
        for ts in range(now_ms - span, now_ms, step):
            values: dict[str, float | bool] = {"rain_mm": 0.7 if d.id in storm else 0.0}
            if d.id in weak:
                values["battery_v"] = 3.2
            samples.append((ts, d.id, d.kind, d.grid_code, values, None, None))
    for d in crowd:
        end = now_ms - 300_000 if d.id in silent else now_ms
        for ts in range(now_ms - 600_000, end, 2_000):
            assert d.zone_area_m2 is not None
            density = gathering[d.id] if d.id in gathering and now_ms - 400_000 <= ts < now_ms - 200_000 else 0.3
            samples.append((ts, d.id, d.kind, d.grid_code, {"count": round(density * d.zone_area_m2)}, None, None))
    for i, d in enumerate(manhole):
        assert d.well_depth_cm is not None
        for ts in range(now_ms - 600_000, now_ms, 120_000):
            level = d.well_depth_cm - 20 if i % 17 == 3 and ts > now_ms - 300_000 else 10.0
            samples.append((ts, d.id, d.kind, d.grid_code,
                            {"tilt_deg": 2.0, "cover_open": i % 23 == 5 and ts > now_ms - 300_000,
                             "water_level_cm": level}, d.well_depth_cm, str(d.component_id)))
    samples.sort(key=lambda s: (s[0], s[1]))
    batches = []
    received = now_ms - 600_000
    for seq, (ts, device_id, kind, grid_code, values, depth, component) in enumerate(samples):
        received = max(received + rng.randint(0, 60), ts)
        zone = next(d.zone_area_m2 for d in crowd if d.id == device_id) if kind is DeviceKind.CROWD else None
        reading = Reading(device_id, kind, grid_code, ts, received, seq, values, component_id=component,
                          well_depth_cm=depth, zone_area_m2=zone)
        batches.append(TelemetryBatch(grid_code, (reading,)))
    return batches


async def _produce(bootstrap: str, batches: list[TelemetryBatch]) -> dict[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [await producer.send(kafka.TELEMETRY, encode_record([b]), key=b.grid_code.encode()) for b in batches]
        ends: dict[int, int] = {}
        for future in futures:
            meta = await future
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        return ends
    finally:
        await producer.stop()


async def _committed(bootstrap: str, partitions: list[int]) -> dict[int, int]:
    """The worker group's committed offsets (a consumer that assigns itself does not join the group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=Settings().streams.app_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(kafka.TELEMETRY, p) for p in partitions]
        consumer.assign(tps)
        return {tp.partition: await consumer.committed(tp) or 0 for tp in tps}
    finally:
        await consumer.stop()


class Run:
    """A fresh broker and database holding the scripted hour, and a worker to work through it."""

    def __init__(self, state: Path, bootstrap: str, batches: list[TelemetryBatch]) -> None:
        self.state, self.bootstrap = state, bootstrap
        asyncio.run(kafka.ensure_topics(bootstrap, PARTITIONS))
        settings = Settings(state_dir=state)
        self.db = connect(settings.database_url)
        init_db(self.db)
        seed_devices(self.db, load_city(settings), demo=True)
        self.ends = asyncio.run(_produce(bootstrap, batches))
        self.env = dict(os.environ, GRIDHUB_STATE_DIR=str(state), GRIDHUB_KAFKA__BOOTSTRAP=bootstrap,
                        GRIDHUB_STREAMS__CHECKPOINT_INTERVAL_S="0.5")

    def start(self) -> subprocess.Popen[bytes]:
        return start_worker(self.env, self.state / "worker.ready")

    def events(self) -> int:
        with self.db.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(case_events)).scalar_one())

    def finish(self) -> list[Case]:
        """Wait until every record is committed and every case event is in the database; return the cases."""
        eventually(lambda: asyncio.run(_committed(self.bootstrap, sorted(self.ends))) == self.ends, 180,
                   "the worker to commit all")
        # The case sink commits a case event only once it is in the database.
        eventually(lambda: asyncio.run(uncommitted(self.bootstrap, (kafka.CASE_EVENTS,))) == 0, 180,
                   "the sink to commit every case event")
        return sorted((c.id, c.category, c.state, c.severity, c.urgent, c.department, c.tier, c.version)
                      for c in list_cases(self.db, limit=500).items)


@pytest.fixture(scope="module")
def batches() -> list[TelemetryBatch]:
    return scripted_city_hour(int(time.time() * 1000))


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory, batches: list[TelemetryBatch]) -> list[Case]:
    """The cases one worker opens when it runs through the scripted hour without a fault."""
    with brokers.tansu() as bootstrap:
        clean = Run(tmp_path_factory.mktemp("clean"), bootstrap, batches)
        worker = clean.start()
        try:
            cases = clean.finish()
        finally:
            worker.terminate()
        assert worker.wait(30) == 0
    assert {case[1] for case in cases} >= {"0406", "0404", "0101", "0102", "0103", "9901", "9902", "9903"}
    return cases


def test_a_worker_killed_mid_stream_ends_with_the_same_cases_as_one_that_ran_through(
    tmp_path_factory: pytest.TempPathFactory, batches: list[TelemetryBatch], expected: list[Case],
) -> None:
    with brokers.tansu() as bootstrap:
        faulty = Run(tmp_path_factory.mktemp("faulty"), bootstrap, batches)
        # Small batches slow this worker down (decisions do not depend on batching), so the kill lands mid-stream.
        faulty.env["GRIDHUB_STREAMS__BATCH_MAX"] = "10"
        total = sum(case[7] for case in expected)
        worker = faulty.start()
        eventually(lambda: faulty.events() >= total // 10, 120, "a tenth of the case events", poll_s=0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert faulty.events() < total, "the kill came too late to test anything"
        worker = faulty.start()
        try:
            assert faulty.finish() == expected
        finally:
            worker.terminate()
            worker.wait(30)


def test_two_workers_split_the_partitions_and_end_with_the_same_cases_as_one(
    tmp_path_factory: pytest.TempPathFactory, batches: list[TelemetryBatch], expected: list[Case],
) -> None:
    with brokers.tansu() as bootstrap:
        pair = Run(tmp_path_factory.mktemp("pair"), bootstrap, batches)
        logs = [pair.state / f"worker-{n}.log" for n in (1, 2)]
        workers = [subprocess.Popen([sys.executable, "-m", "gridhub", "worker"], env=pair.env,
                                    stdout=log.open("wb"), stderr=subprocess.STDOUT) for log in logs]
        try:
            assert pair.finish() == expected
            assignments = [re.findall(r"assigned (\d+) partitions", log.read_text()) for log in logs]
            assert all(found and int(found[-1]) > 0 for found in assignments), assignments  # both took a share
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(30)


def test_a_worker_whose_kafka_is_gone_still_stops_on_sigterm(tmp_path: Path) -> None:
    with brokers.tansu() as bootstrap:
        asyncio.run(kafka.ensure_topics(bootstrap, PARTITIONS))
        env = dict(os.environ, GRIDHUB_STATE_DIR=str(tmp_path), GRIDHUB_KAFKA__BOOTSTRAP=bootstrap)
        worker = start_worker(env, tmp_path / "worker.ready")
    stopping = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        assert worker.wait(30) == 0
    finally:
        worker.kill()
    assert time.monotonic() - stopping < 20
