"""The production profile under faults: a fleet of C publishers → Mosquitto → two gateways on a shared
subscription → Apache Kafka → two stream workers (one consumer group) → cases in PostgreSQL, and
`gridhub store` → telemetry in InfluxDB 2 (in PostgreSQL, through the SQL store, where PostgreSQL is the fault).

Every test plays the scripted city load (`scripted_city_hour`: ten minutes of the demo city's uploads, the
storm gauges' three-hour backlog with them) from one `mosquitto_pub -l` per device, each logged in with its own
credentials, at QoS 1; a publisher exits 0 only once the broker has acknowledged all it sent. A test's end is
compared with a run without faults: every reading in the telemetry store and in the rules' samples, the same
incidents with one case each, each case in the same final state with a timeline that has every step.

Two gateways on a shared subscription do not keep a device's readings in order (the broker deals them out in
turn, and each gateway produces on its own), let alone across a killed gateway or a Kafka outage. A rule
that fires on a reading arriving before an earlier one opens its case at that reading's time, so a case's
id (which carries the moment it opened) and its number of steps may differ between two runs, faults or not;
the incident (cell and correlation key), its category and where the case ended may not. Nor may the samples
the rules keep, which are keyed by device and time.

Silence (9902, a device offline) runs on the receive clock, which an outage moves on purpose: a reading held
in the broker for 20 s is received 20 s later. So every device reports once an hour here, and no run opens
one; every other decision depends on event time only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OutOfOrderSequenceNumber
from influxdb_client.client.influxdb_client import InfluxDBClient
from sqlalchemy import Engine, select, update

from core import kafka
from core.city import load_city
from core.credentials import demo_secret, password_hash
from core.lifecycle import READY_FILE_ENV
from core.settings import KafkaSettings, load_settings
from domain.telemetry import Reading
from gridhub.localbrokers import free_port
from gridhub.services import InfluxDB, Services
from ingest.gateway import _Producer
from storage.broker_files import write_broker_files
from storage.cases import case_events, list_cases
from storage.checkpoints import cells_table
from storage.db import connect
from storage.devices import devices_table, seed_devices
from storage.schema import init_db
from storage.telemetry.sql import readings
from tests import production
from tests.integration.test_gateway import session_present
from tests.integration.test_streams_pipeline import eventually, uncommitted
from tests.integration.test_streams_restart import scripted_city_hour
from tests.test_services import connected

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PARTITIONS = 4  # what `uncommitted` counts
RATE = 900  # readings a second from the whole fleet: the city's ten minutes in about 20 s
OUTAGE_S = 20.0
REPORT_INTERVAL_S = 3600  # no device falls silent during a run, however long a fault holds its readings
SETTLE_S = 180
INPUTS = (kafka.TELEMETRY, kafka.DETECTIONS, kafka.CASE_COMMANDS)
DECIDED = "gridhub_streams_records_total"  # records a worker decided on, all inputs
Identity = tuple[str, int]  # device, seq
#: A case without the moment it opened: its cell and correlation key, category, state, severity, urgency,
#: department and tier.
Incident = tuple[str, str, str, str, bool, str | None, str | None]


@dataclass(frozen=True)
class CityLoad:
    """The scripted city's uploads as devices send them: each device's topic and JSON lines, in time order."""

    topics: dict[str, str]
    uploads: list[tuple[str, bytes]]
    identities: frozenset[Identity]


@dataclass(frozen=True)
class Outcome:
    """Where a run ended: one incident per case (a repeat is a duplicated case), and each cell's samples."""

    incidents: list[Incident]
    samples: dict[str, Any]
    events: int = field(compare=False)  # case events in all: how far along a run is


def city_load() -> CityLoad:
    """The scripted hour ending now, as JSON lines; times are whole seconds, exact as JSON numbers."""
    batches = scripted_city_hour(int(time.time()) * 1000)
    topics: dict[str, str] = {}
    uploads = []
    for reading in (r for batch in batches for r in batch.readings):
        topics[reading.device_id] = f"gridhub/v1/{reading.kind.value}/{reading.device_id}/telemetry"
        uploads.append((reading.device_id, payload(reading)))
    return CityLoad(topics, uploads, frozenset((device, orjson.loads(line)["seq"]) for device, line in uploads))


def payload(reading: Reading) -> bytes:
    return orjson.dumps({"ts": reading.ts_ms / 1000, "seq": reading.seq, **reading.values})


@pytest.fixture(scope="module")
def load() -> CityLoad:
    return city_load()


@pytest.fixture(scope="module")
def databases() -> Iterator[Services]:
    """PostgreSQL and InfluxDB for the module: each run takes a fresh database and bucket."""
    with production.servers(["postgres", "influxdb"]) as started:
        yield started


class Service:
    """One `gridhub` command as its own process: output in a log file, metrics on a port of its own."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], state: Path,
                 ready: Callable[[Service], bool] | None = None) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_file = state / f"{name}.log"
        self.ready_file = state / f"{name}.ready"
        self.metrics_port = self.starts = 0
        self._ready = ready or (lambda service: service.ready_file.exists())
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it works."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        self.metrics_port = free_port()  # a port of its own each time: a killed one's may not be free at once
        self.ready_file.unlink(missing_ok=True)
        self.starts = self.log().count("subscribed to")
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gridhub", *self.args, "--metrics-port", str(self.metrics_port)],
                env={**self.env, READY_FILE_ENV: str(self.ready_file)}, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        """Wait until it works: a worker or the store has its partitions, a gateway its subscription."""
        eventually(lambda: self._ready(self) or not self.alive(), 60, f"{self.name} to start", poll_s=0.05)
        assert self.alive(), f"{self.name} exited:\n{self.log()[-3000:]}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on the process's own /metrics (0 before its first count)."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))


def subscribed(service: Service) -> bool:
    return service.log().count("subscribed to") > service.starts


class Fleet:
    """The city's devices, one `mosquitto_pub -l` each (its own account, QoS 1), fed the load in time order."""

    def __init__(self, port: int, load: CityLoad, logs: Path, rate: float | None, hold_at: int | None = None) -> None:
        logs.mkdir(exist_ok=True)
        self.processes = {}
        for device, topic in load.topics.items():
            with (logs / f"{device}.log").open("wb") as log:
                self.processes[device] = subprocess.Popen(
                    ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-u", device,
                     "-P", demo_secret(device), "-t", topic, "-l"],
                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, bufsize=0)
        self.logs = logs
        self.sent = 0
        self.total = len(load.uploads)
        self._hold_at = hold_at  # feed this many, then wait for release()
        self._released = threading.Event()
        self._feeder = threading.Thread(target=self._feed, args=(load.uploads, rate), daemon=True)
        self._feeder.start()

    def _feed(self, uploads: list[tuple[str, bytes]], rate: float | None) -> None:
        started = time.monotonic()
        for n, (device, line) in enumerate(uploads, 1):
            if n - 1 == self._hold_at:
                self._released.wait()
                started = time.monotonic() - n / rate if rate is not None else started
            stdin = self.processes[device].stdin
            assert stdin is not None
            stdin.write(line + b"\n")
            self.sent = n
            if rate is not None and n % 50 == 0:
                # pacing the load generator, not waiting for the system under test
                time.sleep(max(0.0, started + n / rate - time.monotonic()))
        for process in self.processes.values():
            assert process.stdin is not None
            process.stdin.close()

    def finished(self) -> bool:
        return self.sent == self.total

    def release(self) -> None:
        """Feed the rest after a hold."""
        self._released.set()

    def wait(self) -> None:
        """Every device sent everything and had every message acknowledged (it exits 0 only then)."""
        self._feeder.join(120)
        assert not self._feeder.is_alive(), "the fleet was not fed within 120 s"
        for device, process in self.processes.items():
            code = process.wait(120)
            assert code == 0, f"mosquitto_pub of {device} exited {code}: {(self.logs / f'{device}.log').read_text()}"

    def kill(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)


class Pipeline:
    """Fresh Kafka and Mosquitto, a fresh database (and bucket), and GridHub's services on them."""

    def __init__(self, state: Path, brokers: Services, databases: Services, store: str) -> None:
        self.state, self.brokers, self.databases, self.store = state, brokers, databases, store
        self.kafka = brokers.kafka.url
        self.database_url = production.fresh_database(databases.postgres)
        self.bucket = f"telemetry_{uuid.uuid4().hex[:8]}"
        asyncio.run(kafka.ensure_topics(self.kafka, PARTITIONS))
        config: dict[str, Any] = {"state_dir": str(state), "database": {"url": self.database_url}}
        config.update(brokers.mosquitto.settings())
        config["kafka"] = {**brokers.kafka.settings()["kafka"], "partitions": PARTITIONS}
        if store == "influxdb":
            config.update(databases.influxdb.settings())
            config["telemetry_store"]["influx_bucket"] = self.bucket
            with influx(databases.influxdb) as client:
                client.buckets_api().create_bucket(bucket_name=self.bucket, org=config["telemetry_store"]["influx_org"])
        self.config_file = state / "gridhub.yaml"
        self.config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.settings = load_settings(self.config_file, environ={})
        self.db = connect(self.database_url)
        init_db(self.db)
        seed_devices(self.db, load_city(self.settings), demo=True)
        with self.db.begin() as conn:
            conn.execute(update(devices_table).values(report_interval_s=REPORT_INTERVAL_S))
        secret = self.settings.mqtt_password()
        assert secret is not None
        write_broker_files(self.db, brokers.mosquitto.auth_dir, {self.settings.mqtt.username: password_hash(secret)})
        brokers.mosquitto.reload()
        device = "rain-0001"  # the broker has read the device accounts once one logs in
        probe = connected(brokers.mosquitto.port, device, demo_secret(device), device)
        probe.disconnect()
        probe.loop_stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        env["GRIDHUB_CONFIG"] = str(self.config_file)
        self.env = env
        self.store_writer = Service("store", ["store"], env, state)
        self.workers = [Service(f"worker-{n}", ["worker"], env, state) for n in (1, 2)]
        self.gateways = [Service(f"gateway-{n}", ["gateway", "--client-id", f"gridhub-gateway-{n}"], env, state,
                                 ready=subscribed) for n in (1, 2)]
        self.services = [self.store_writer, *self.workers, *self.gateways]

    def start(self) -> None:
        """Start the services side by side (each takes seconds to import), then wait until all work."""
        for service in self.services:
            service.launch()
        for service in self.services:
            service.wait_ready()

    def fleet(self, load: CityLoad, rate: float | None, hold_at: int | None = None) -> Fleet:
        return Fleet(self.brokers.mosquitto.port, load, self.state / "publishers", rate, hold_at)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.db.dispose()

    def accepted(self) -> float:
        return sum(gateway.metric("gridhub_gateway_accepted_total") for gateway in self.gateways)

    def stored(self) -> Counter[Identity]:
        """(device, seq) of every reading in the telemetry store, counted."""
        if self.store == "sql":
            with self.db.connect() as conn:
                return Counter((row.device_id, row.seq) for row in conn.execute(select(readings.c.device_id,
                                                                                          readings.c.seq)))
        flux = (f'from(bucket: "{self.bucket}") |> range(start: 0) |> filter(fn: (r) => r._field == "seq")'
                ' |> keep(columns: ["device_id", "_value"])')
        with influx(self.databases.influxdb) as client:
            tables = client.query_api().query(flux)
        return Counter((str(record.values["device_id"]), int(record.values["_value"]))
                       for table in tables for record in table.records)

    def readings_decided(self) -> float:
        return sum(worker.metric("gridhub_streams_readings_total") for worker in self.workers)

    def case_events_in_db(self) -> int:
        with self.db.connect() as conn:
            return len(conn.execute(select(case_events.c.case_id)).all())

    def settle(self, load: CityLoad) -> Outcome:
        """Wait until every reading is in the store and every decision in the database; return the outcome."""
        eventually(lambda: set(self.stored()) >= load.identities, SETTLE_S, "every reading in the telemetry store")
        eventually(lambda: asyncio.run(uncommitted(self.kafka, INPUTS)) == 0, SETTLE_S, "the workers to commit all")
        eventually(lambda: asyncio.run(uncommitted(self.kafka, (kafka.CASE_EVENTS,))) == 0, SETTLE_S,
                   "the sinks to commit every case event")
        return outcome(self.db)


def outcome(db: Engine) -> Outcome:
    """The run's incidents and samples, once every case's timeline is checked to hold each of its steps."""
    cases = list_cases(db, limit=1000).items
    with db.connect() as conn:
        steps = Counter(conn.execute(select(case_events.c.case_id, case_events.c.version)).all())
        saved = conn.execute(select(cells_table.c.grid_code, cells_table.c.state)).all()
    assert set(steps.values()) <= {1}
    assert set(steps) == {(c.id, version) for c in cases for version in range(1, c.version + 1)}, \
        "a case event is missing from the case database"
    incidents = sorted((c.id.rsplit("-", 1)[0], c.category, c.state, c.severity, c.urgent, c.department, c.tier)
                       for c in cases)
    samples = {code: {rule: doc[rule] for rule in ("rain", "crowd", "manhole")}
               for code, doc in ((code, orjson.loads(state)) for code, state in saved)}
    return Outcome(incidents, samples, sum(steps.values()))


@contextlib.contextmanager
def influx(server: InfluxDB) -> Iterator[InfluxDBClient]:
    with InfluxDBClient(url=server.url, token=server.credentials["token"], org="gridhub") as client:
        yield client


@contextlib.contextmanager
def pipeline(tmp_path: Path, databases: Services, store: str = "influxdb") -> Iterator[Pipeline]:
    with production.servers(["kafka", "mosquitto"]) as brokers:
        running = Pipeline(tmp_path, brokers, databases, store)
        try:
            running.start()
            yield running
        finally:
            running.stop()


async def records_on(bootstrap: str, topics: tuple[str, ...]) -> int:
    """Records on the topics, all partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics for p in range(PARTITIONS)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory, databases: Services, load: CityLoad) -> Outcome:
    """Where the scripted city ends on the same pipeline without faults, published as one burst."""
    with pipeline(tmp_path_factory.mktemp("clean"), databases) as clean:
        fleet = clean.fleet(load, rate=None)
        try:
            fleet.wait()
            result = clean.settle(load)
        finally:
            fleet.kill()
    assert {incident[1] for incident in result.incidents} >= {"0406", "0101", "0102", "0103", "9901", "9903"}
    return result


def test_a_gateway_and_a_worker_killed_mid_stream_lose_no_reading_and_change_no_case(
    tmp_path: Path, databases: Services, load: CityLoad, expected: Outcome
) -> None:
    with pipeline(tmp_path, databases) as run:
        fleet = run.fleet(load, rate=RATE)
        try:
            gateway, worker = run.gateways[0], run.workers[0]
            eventually(lambda: gateway.metric("gridhub_gateway_accepted_total") >= 2000, 60, "a share of the load",
                       poll_s=0.05)
            # Frozen first, so that the kill lands with messages delivered to it and not acknowledged: the broker
            # goes on handing it its share of the shared subscription, as the other gateway's count shows.
            assert gateway.process is not None
            gateway.process.send_signal(signal.SIGSTOP)
            other = run.gateways[1].metric("gridhub_gateway_received_total")
            eventually(lambda: run.gateways[1].metric("gridhub_gateway_received_total") >= other + 50, 60,
                       "the broker delivering on while the gateway is frozen", poll_s=0.05)
            gateway.kill()
            assert not fleet.finished(), "the gateway was killed after the load"
            gateway.start()  # the same client id: the broker redelivers what the killed one had not acknowledged

            eventually(lambda: run.readings_decided() >= len(load.uploads) // 2, 120, "half the readings decided",
                       poll_s=0.05)
            decided_by_the_killed = worker.metric(DECIDED)
            worker.kill()
            worker.start()
            fleet.wait()
            result = run.settle(load)
            decided = decided_by_the_killed + sum(w.metric(DECIDED) for w in run.workers)
            redelivered = gateway.metric("gridhub_gateway_redelivered_total")
        finally:
            fleet.kill()
        assert set(run.stored()) == load.identities
        assert result == expected
        # What was in flight at each kill came again: messages the gateway had received and not acknowledged
        # (the broker flags them DUP), and records the worker had decided and not committed (decided twice).
        assert redelivered > 0
        assert decided > asyncio.run(records_on(run.kafka, INPUTS))


def test_a_gateway_killed_mid_stream_and_retired_under_load_hands_its_share_over_and_loses_nothing(
    tmp_path: Path, databases: Services, load: CityLoad, expected: Outcome
) -> None:
    """Removing a gateway for good: stopped, its persistent session would keep its share of every later
    reading queued in the broker; `gridhub gateway --retire` drains the session into Kafka and ends it.

    The retirement starts while the fleet publishes; the fleet's last quarter waits until it has ended, and
    then no reading may be routed to the retired session."""
    last_quarter = len(load.uploads) * 3 // 4
    with pipeline(tmp_path, databases) as run:
        fleet = run.fleet(load, rate=RATE, hold_at=last_quarter)
        try:
            staying, leaving = run.gateways
            eventually(lambda: leaving.metric("gridhub_gateway_accepted_total") >= 1000, 60, "a share of the load",
                       poll_s=0.05)
            leaving.kill()
            assert fleet.sent < last_quarter, "the gateway was killed after the load"
            retire = Service("retire", ["gateway", "--retire", "--client-id", "gridhub-gateway-2"], run.env, run.state)
            retire.launch()
            assert retire.process is not None
            eventually(lambda: "connected to MQTT" in retire.log() or retire.process.poll() is not None, 60,
                       "the retiring gateway to connect", poll_s=0.05)
            assert fleet.sent < last_quarter, "the retiring gateway connected after the load"
            assert retire.process.wait(120) == 0, retire.log()[-3000:]
            eventually(lambda: fleet.sent == last_quarter, 60, "three quarters sent")
            fleet.release()  # the broker has no session of gateway-2 to route any of the rest to
            fleet.wait()
            result = run.settle(load)
        finally:
            fleet.kill()
        assert set(run.stored()) == load.identities
        assert result == expected
        drained = re.search(r"retired gridhub-gateway-2: (\d+) messages drained", retire.log())
        assert drained is not None and int(drained[1]) > 0, retire.log()[-3000:]  # its share while it was away
        assert not session_present(run.brokers.mosquitto.port, "gridhub-gateway-2", run.settings.mqtt.username,
                                   run.settings.mqtt_password())
        assert staying.alive()


def test_kafka_stopped_for_20_s_holds_the_acknowledgements_and_loses_nothing(
    tmp_path: Path, databases: Services, load: CityLoad, expected: Outcome
) -> None:
    with pipeline(tmp_path, databases) as run:
        fleet = run.fleet(load, rate=RATE)
        try:
            eventually(lambda: run.accepted() >= 2000, 60, "a share of the load", poll_s=0.05)
            run.brokers.kafka.stop()
            stopped, accepted, sent = time.monotonic(), run.accepted(), fleet.sent
            time.sleep(max(0.0, stopped + OUTAGE_S - time.monotonic()))  # the outage is the point of the test
            assert run.accepted() == accepted, "a gateway acknowledged messages while Kafka was down"
            assert fleet.sent > sent, "the fleet stopped publishing during the outage"
            assert sum(gateway.metric("gridhub_gateway_inflight") for gateway in run.gateways) > 0
            run.brokers.kafka.start()
            fleet.wait()
            result = run.settle(load)
        finally:
            fleet.kill()
            if not run.brokers.kafka.running():
                run.brokers.kafka.start()
        assert set(run.stored()) == load.identities
        assert result == expected
        assert all(service.alive() for service in run.services), "a service died in the outage"
        assert any("Kafka has acknowledged nothing" in gateway.log() for gateway in run.gateways)
        # The records that failed during the outage are accounted for together: a few lines, not one per record.
        failed_lines = [gateway.log().count("Kafka did not take records") for gateway in run.gateways]
        assert sum(failed_lines) >= 1 and max(failed_lines) <= 5, failed_lines


def test_postgresql_stopped_for_20_s_delays_cases_and_telemetry_and_loses_nothing(
    tmp_path: Path, databases: Services, load: CityLoad, expected: Outcome
) -> None:
    with pipeline(tmp_path, databases, store="sql") as run:
        fleet = run.fleet(load, rate=RATE)
        postgres = databases.postgres
        try:
            eventually(lambda: run.case_events_in_db() >= 10, 60, "the first case events", poll_s=0.05)
            postgres.stop()
            stopped, sent = time.monotonic(), fleet.sent
            time.sleep(max(0.0, stopped + OUTAGE_S - time.monotonic()))  # the outage is the point of the test
            assert fleet.sent > sent, "the fleet stopped publishing during the outage"
            postgres.start()
            fleet.wait()
            result = run.settle(load)
        finally:
            fleet.kill()
            if not postgres.running():
                postgres.start()
        assert set(run.stored()) == load.identities
        assert result == expected
        assert all(service.alive() for service in run.services), "a service died in the outage"
        assert run.store_writer.metric("gridhub_store_write_retries_total") > 0
        # The sink, the checkpoint or the engine's loader, whichever needed the database first.
        assert any("database unavailable" in worker.log() for worker in run.workers)


def test_a_kafka_producer_that_gave_up_is_replaced_and_the_gateway_sends_again(apache_kafka: str) -> None:
    """What the Kafka outage above meets when its restart falls just right: a batch numbered by the idempotent
    producer is lost (it expired while the restarted broker had no leader yet), the broker refuses the next
    number, and aiokafka's producer stops sending for good. Here the lost batch is made on purpose."""
    asyncio.run(kafka.ensure_topics(apache_kafka, PARTITIONS))
    partition = TopicPartition(kafka.TELEMETRY, 0)

    async def scenario() -> None:
        producer = _Producer(KafkaSettings(bootstrap=apache_kafka), asyncio.Event())
        await producer.start()
        try:
            await producer.send_and_wait(kafka.TELEMETRY, b"first", key=None, partition=0)
            producer._current._txn_manager.increment_sequence_number(partition, 3)  # three numbers lost
            with pytest.raises(OutOfOrderSequenceNumber):
                await producer.send_and_wait(kafka.TELEMETRY, b"second", key=None, partition=0)
            await asyncio.wait_for(producer.send_and_wait(kafka.TELEMETRY, b"second", key=None, partition=0), 60)
        finally:
            await producer.stop()

    asyncio.run(scenario())
    assert asyncio.run(records_on(apache_kafka, (kafka.TELEMETRY,))) == 2
