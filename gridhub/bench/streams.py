"""`gridhub bench streams`: the rules throughput of one stream worker against a bare aiokafka consumer.

Both read the same records from a fresh Kafka: with `profile` embedded, Tansu, the worker's database SQLite;
with production, Apache Kafka and PostgreSQL (`gridhub.bench.profiles`). The records are what the gateway would have
produced for the demo city's devices reporting at `rate` readings per second: every `linger_ms` it packs
what the cells of each partition sent into one record. The worker runs as
`gridhub worker` does, in its own process with a fresh database; its rate runs from its first reading to
its last, read from its metrics. The baseline is a plain aiokafka consumer in this process that fetches and
decodes the same records and does nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core import kafka
from core.city import load_city
from core.settings import Settings
from domain.registry import Device, DeviceKind
from domain.telemetry import Reading, TelemetryBatch, decode_record, encode_record
from gridhub import localbrokers
from gridhub.bench import BenchResult
from gridhub.bench.profiles import Servers, servers

TARGET_RATE = 10_000
TARGET_RATIO = 0.3


@dataclass(frozen=True, slots=True)
class Record:
    """One record for gridhub.telemetry and the partition the gateway would send it to."""

    partition: int
    value: bytes


def city_records(readings: int, rate: float, linger_ms: int, partitions: int, seed: int = 0) -> list[Record]:
    """`readings` reports of the demo city's devices at `rate` per second, packed as the gateway packs them."""
    rng = random.Random(seed)
    devices = sorted(load_city(Settings()).registry.devices.values(), key=lambda d: d.id)
    start_ms = int(time.time() * 1000) - int(readings / rate * 1000)
    window: dict[str, list[Reading]] = defaultdict(list)
    window_end = start_ms + linger_ms
    records: list[Record] = []

    def pack() -> None:
        by_partition: dict[int, list[TelemetryBatch]] = defaultdict(list)
        for code, cell_readings in window.items():
            by_partition[kafka.partition_of(code, partitions)].append(TelemetryBatch(code, tuple(cell_readings)))
        records.extend(Record(partition, encode_record(batches)) for partition, batches in by_partition.items())
        window.clear()

    for n in range(readings):
        ts = start_ms + int(n / rate * 1000)
        if ts >= window_end:
            pack()
            window_end = ts + linger_ms
        device = devices[n % len(devices)]
        window[device.grid_code].append(_reading(device, ts, n, rng))
    pack()
    return records


def _reading(device: Device, ts: int, seq: int, rng: random.Random) -> Reading:
    if device.kind is DeviceKind.RAIN:
        values: dict[str, float | bool] = {"rain_mm": rng.choice((0.0, 0.0, 0.2, 0.4))}
    elif device.kind is DeviceKind.CROWD:
        assert device.zone_area_m2 is not None
        values = {"count": round(device.zone_area_m2 * rng.uniform(0.1, 1.0))}
    else:
        values = {"tilt_deg": round(rng.uniform(0, 3), 1), "cover_open": False, "water_level_cm": 10.0}
    return Reading(device.id, device.kind, device.grid_code, ts, ts + 5, seq, {**values, "battery_v": 3.7},
                   component_id=str(device.component_id) if device.component_id else None,
                   well_depth_cm=device.well_depth_cm, zone_area_m2=device.zone_area_m2)


async def _preload(bootstrap: str, records: list[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1_048_576)
    await producer.start()
    try:
        for record in records:
            await producer.send(kafka.TELEMETRY, record.value, partition=record.partition)
        await producer.flush()
    finally:
        await producer.stop()


async def bare_consumer(bootstrap: str, readings: int) -> float:
    """Readings per second of a consumer that only fetches and decodes the records."""
    consumer = AIOKafkaConsumer(kafka.TELEMETRY, bootstrap_servers=bootstrap, group_id="gridhub-bench-bare",
                                auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=5000)
    await consumer.start()
    try:
        seen, started = 0, 0.0
        while seen < readings:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                if not started:
                    started = time.perf_counter()
                seen += sum(len(batch) for record in records for batch in decode_record(record.value))
        return readings / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def worker_rate(started: Servers, readings: int, directory: Path) -> tuple[float, dict[str, float]]:
    """Readings per second of one `gridhub worker` process on the servers, from its first reading to its last."""
    port = localbrokers.free_port()
    env = {**os.environ, **started.env, "GRIDHUB_LOG_LEVEL": "warning"}
    with open(directory / "worker.log", "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "gridhub", "worker", "--metrics-port", str(port)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            first = last = 0.0
            deadline = time.monotonic() + 120 + readings / 1000
            while time.monotonic() < deadline:
                done = _metric(port, "gridhub_streams_readings_total")
                now = time.perf_counter()
                if done and not first:
                    first = now
                if done >= readings:
                    last = now
                    break
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited; see {directory / 'worker.log'}")
                time.sleep(0.05)
            if not last:
                raise RuntimeError(f"the worker did not get through {readings} readings in time")
            if last == first:
                raise RuntimeError(f"the worker got through all {readings:,} readings between two looks at its "
                                   "metrics, 50 ms apart: too few to time; ask for more")
            counts = {name: _metric(port, f"gridhub_streams_case_events_total{{action=\"{name}\"}}")
                      for name in ("report", "upgrade", "attach")}
            return readings / (last - first), counts
        finally:
            worker.terminate()
            worker.wait(30)


def _metric(port: int, name: str) -> float:
    with contextlib.suppress(httpx.HTTPError):
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(match[1]) if match else 0.0
    return 0.0


def run(readings: int, rate: float, linger_ms: int, partitions: int, profile: str = "embedded") -> BenchResult:
    """Preload the records on the profile's Kafka, then measure the bare consumer and the worker on them."""
    records = city_records(readings, rate, linger_ms, partitions)
    with tempfile.TemporaryDirectory(prefix="gridhub-bench-streams-") as tmp, \
            servers(profile, Path(tmp) / "state") as started:
        asyncio.run(kafka.ensure_topics(started.bootstrap, partitions))
        asyncio.run(_preload(started.bootstrap, records))
        baseline = asyncio.run(bare_consumer(started.bootstrap, readings))
        value, cases = worker_rate(started, readings, Path(tmp))
    met = value >= TARGET_RATE and value / baseline >= TARGET_RATIO
    return BenchResult(
        name="streams", value=value, unit="readings/s", baseline=baseline,
        target=f">= {TARGET_RATE:,} readings/s per worker and ratio >= {TARGET_RATIO}", met=met,
        details={"readings": readings, "records": len(records),
                 "readings_per_record": round(readings / len(records), 2),
                 "simulated_gateway_rate": rate, "gateway_linger_ms": linger_ms, "partitions": partitions,
                 "cases_opened": int(cases["report"]), "case_upgrades": int(cases["upgrade"]),
                 "evidence_attached": int(cases["attach"]), "servers": started.description},
    )
