"""`gridhub store`: consume `gridhub.telemetry` and write it to the telemetry store in batches.

Delivery into the store is at least once and writes are idempotent, so every reading ends up there once:
- a batch's offsets advance only after its rows were written. The SQL backend writes the consumer group's
  next offset per partition in the same transaction as the rows, and on partition assignment the consumer
  seeks there. Offsets are also committed to Kafka, best effort, for lag tools; for InfluxDB (idempotent
  points, no transactions) the Kafka commit is the record of progress;
- a store that is down or locked gets the same batch again with backoff while the partitions are paused;
- a record that does not decode is logged, counted and skipped; its offset advances with the batch.

A status the broker replayed to the gateway (a retained status, resent at every subscribe) is written only
when it differs from the device's latest stored status: the device's state changed while no gateway listened.
Otherwise every gateway restart would add an "online" row for every device.

The embedded Kafka keeps topics in memory: after a restart its logs start again at offset 0 while the
database remembers higher offsets. A stored position therefore carries a fingerprint of the last record
written, and the consumer seeks one record back to compare. If that record is different or absent, the
log is not the one the position belongs to and the partition is read from the beginning.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import multiprocess
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from core import kafka
from core.lifecycle import mark_ready, stop_event
from core.metrics import (
    MULTIPROC_ENV,
    STORE_LAG,
    STORE_REPLAYED_STATUS_SKIPPED,
    STORE_RETRIES,
    STORE_SKIPPED,
    STORE_WRITE_SECONDS,
    STORE_WRITTEN,
    serve_metrics,
)
from core.retry import Retry, wait_or_stop
from core.settings import Settings, TelemetryStoreSettings
from domain.telemetry import TelemetryFormatError, decode_record
from storage.db import connect
from storage.schema import init_db
from storage.telemetry import open_store
from storage.telemetry.base import (
    Position,
    ReadingRow,
    StatusRow,
    StoreBatch,
    StoreUnavailable,
    TelemetryStore,
    reading_row,
    status_row,
)

log = logging.getLogger("gridhub.store")

GROUP = "gridhub-store"
# Measured with the embedded broker (Tansu): a member rejoining a group whose previous member left took
# 41 s with aiokafka's defaults and 3-11 s with these.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 500
REBALANCE_TIMEOUT_MS = 6000
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)
POLL_MS = 500  # longest the loop waits for records before it looks at stop, timers and lag again
CHECK_TIMEOUT_S = 5.0  # a position's last record must be fetched within this, or the log was replaced
LAG_INTERVAL_S = 5.0
LAG_QUERY_TIMEOUT_S = 2.0



def fingerprint(record: Any) -> str:
    """Enough of a record (time, key, value) to tell it from another record at the same offset."""
    key, value = record.key or b"", record.value or b""
    digest = hashlib.blake2b(f"{record.timestamp}:{len(key)}:".encode() + key + value, digest_size=16)
    return digest.hexdigest()


@dataclass
class _Pending:
    """Records fetched but not yet written, decoded into rows."""

    readings: list[ReadingRow] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    replayed: list[StatusRow] = field(default_factory=list)  # retained statuses resent by the broker
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (reason, what and where), logged once written
    last: dict[int, Any] = field(default_factory=dict)  # partition → its last record here
    since: float | None = None  # when the first of these records arrived (monotonic)

    @property
    def rows(self) -> int:
        """Rows waiting to be written."""
        return len(self.readings) + len(self.statuses) + len(self.replayed)


@dataclass
class _Check:
    """A partition sought one record before its stored position, waiting to see that record."""

    offset: int
    last_record: str
    deadline: float


class StoreWriter(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    """One member of the store's consumer group: reads a topic and writes it to a telemetry store."""

    def __init__(
        self, store: TelemetryStore, bootstrap: str, config: TelemetryStoreSettings, *, topic: str = kafka.TELEMETRY,
        group: str = GROUP, lag_interval_s: float = LAG_INTERVAL_S,
    ) -> None:
        self._store = store
        self._bootstrap = bootstrap
        self._topic = topic
        self._group = group
        self._batch_max = config.batch_max
        self._linger_s = config.linger_ms / 1000
        self._lag_interval_s = lag_interval_s
        self._consumer: Any = None
        self._pending = _Pending()
        self._written: dict[TopicPartition, int] = {}  # next offset to write, per partition
        self._fetched_end: dict[TopicPartition, int] = {}  # one past the highest offset fetched
        self._checks: dict[TopicPartition, _Check] = {}
        self._unplaced: set[TopicPartition] = set()  # assigned, but the store could not say where it stopped
        self._place_due = 0.0
        self._lag_due = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and write until `stop` is set, waiting out a broker or store that does not answer."""
        consumer = await self._start(stop)
        if consumer is None:
            return
        try:
            while not stop.is_set():
                await self._step(stop)
            if self._pending.since is not None:
                await self._flush(stop)  # one attempt; whatever is not written is read again next time
        finally:
            for tp in consumer.assignment():
                STORE_LAG.labels(partition=str(tp.partition)).set(0)  # no longer this member's to report
            await consumer.stop()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Forget what was fetched and not written: whoever gets the partitions reads it again."""
        self._pending = _Pending()
        for tp in revoked:
            self._checks.pop(tp, None)
            self._unplaced.discard(tp)
            self._written.pop(tp, None)
            self._fetched_end.pop(tp, None)
            STORE_LAG.labels(partition=str(tp.partition)).set(0)  # the new owner reports it

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Seek to where the store stopped, when the store keeps positions; then this member is consuming."""
        self._pending = _Pending()
        log.info("assigned %s partitions %s", self._topic, sorted(tp.partition for tp in assigned))
        if self._store.keeps_positions:
            await self._place(set(assigned))
        mark_ready()

    async def _start(self, stop: asyncio.Event) -> Any:
        retry = Retry(RETRY_DELAYS_S, log)
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, group_id=self._group, client_id="gridhub-store",
                enable_auto_commit=False, auto_offset_reset="earliest",
                session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
                rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
            )
            try:
                await consumer.start()
            except KafkaError as exc:
                await consumer.stop()
                await wait_or_stop(retry.failed("Kafka at %s does not answer (%s); retrying", self._bootstrap, exc),
                                   stop)
                continue
            consumer.subscribe([self._topic], listener=self)
            self._consumer = consumer
            log.info("consuming %s from %s as group %s into the %s store", self._topic, self._bootstrap,
                     self._group, type(self._store).__name__)
            return consumer
        return None

    async def _step(self, stop: asyncio.Event) -> None:
        since = self._pending.since
        wait_s = POLL_MS / 1000 if since is None else max(0.0, since + self._linger_s - time.monotonic())
        fetched = await self._consumer.getmany(timeout_ms=int(wait_s * 1000), max_records=self._batch_max)
        await self._accept(fetched)
        await self._expire_checks()
        if self._unplaced and time.monotonic() >= self._place_due:
            await self._place(set(self._unplaced))
        pending = self._pending
        if pending.rows >= self._batch_max or (
            pending.since is not None and time.monotonic() - pending.since >= self._linger_s
        ):
            await self._flush(stop)
        await self._report_lag()

    async def _accept(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in fetched.items():
            check = self._checks.pop(tp, None)
            kept = await self._verify(tp, check, records) if check is not None and records else records
            for record in kept:
                self._add(tp, record)

    async def _verify(self, tp: TopicPartition, check: _Check, records: list[Any]) -> list[Any]:
        """Drop the already-written record the partition was sought to, or start over if it is not that one."""
        first = records[0]
        if first.offset != check.offset:
            log.warning("%s[%d]: the broker moved the position from offset %d to %d (log truncated or replaced)",
                        tp.topic, tp.partition, check.offset, first.offset)
            self._written[tp] = first.offset
            return records
        if fingerprint(first) == check.last_record:
            return records[1:]
        log.warning("%s[%d]: the record at offset %d is not the last one the store wrote: the topic was recreated "
                    "(the embedded Kafka keeps topics in memory); reading the partition from the beginning",
                    tp.topic, tp.partition, first.offset)
        self._written.pop(tp, None)
        await self._consumer.seek_to_beginning(tp)
        return []

    def _add(self, tp: TopicPartition, record: Any) -> None:
        pending = self._pending
        if pending.since is None:
            pending.since = time.monotonic()
        self._written.setdefault(tp, record.offset)
        self._fetched_end[tp] = max(self._fetched_end.get(tp, 0), record.offset + 1)
        pending.last[tp.partition] = record
        where = f"{tp.topic}[{tp.partition}]@{record.offset}"
        try:
            batches = decode_record(record.value)
        except TelemetryFormatError as exc:
            pending.skipped.append(("undecodable_record", f"record {where}: {exc}"))
            return
        for batch in batches:
            for reading in batch.readings:
                try:
                    pending.readings.append(reading_row(reading))
                except TelemetryFormatError as exc:
                    pending.skipped.append(("invalid_reading", f"a reading in {where}: {exc}"))
            for status in batch.statuses:
                try:
                    (pending.replayed if status.replayed else pending.statuses).append(status_row(status))
                except TelemetryFormatError as exc:
                    pending.skipped.append(("invalid_status", f"a status change in {where}: {exc}"))

    async def _flush(self, stop: asyncio.Event) -> None:
        pending, self._pending = self._pending, _Pending()
        positions = {p: Position(record.offset + 1, fingerprint(record)) for p, record in pending.last.items()}
        retry = Retry(RETRY_DELAYS_S, log)
        while True:
            started = time.perf_counter()
            try:
                statuses = await asyncio.to_thread(self._write, pending, positions)
                break
            except StoreUnavailable as exc:
                if stop.is_set():
                    log.warning("stopping with %d rows not written (%s); they are read again on the next start",
                                pending.rows, exc)
                    return
                STORE_RETRIES.inc()
                await self._hold(retry.failed("telemetry store unavailable: %s; holding %d rows, offsets not "
                                              "advanced; retrying", exc, pending.rows), stop)
        STORE_WRITE_SECONDS.observe(time.perf_counter() - started)
        if retry.recovered("telemetry store is back: wrote %d rows after %d retries", pending.rows, retry.failures):
            self._resume()
        for reason, what in pending.skipped:
            STORE_SKIPPED.labels(reason=reason).inc()
            log.warning("skipped %s", what)
        for kind, n in collections.Counter(r.kind.value for r in pending.readings).items():
            STORE_WRITTEN.labels(kind=kind).inc(n)
        if statuses:
            STORE_WRITTEN.labels(kind="status").inc(statuses)
        if pending.replayed:
            STORE_REPLAYED_STATUS_SKIPPED.inc(len(pending.statuses) + len(pending.replayed) - statuses)
        partitions = {TopicPartition(self._topic, p): position.next_offset for p, position in positions.items()}
        self._written.update(partitions)
        await self._commit(partitions)

    def _write(self, pending: _Pending, positions: dict[int, Position]) -> int:
        """Write the pending rows (in a thread: the store blocks); return how many status rows were written."""
        statuses = pending.statuses
        if pending.replayed:
            latest = self._store.latest_statuses({row.device_id for row in pending.replayed})
            statuses = news(latest, pending.statuses, pending.replayed)
        self._store.write(StoreBatch(self._group, self._topic, pending.readings, statuses, positions))
        return len(statuses)

    async def _hold(self, seconds: float, stop: asyncio.Event) -> None:
        """Wait with every partition paused, polling all the same so that the group keeps this member."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._consumer.pause(*self._consumer.assignment())
            # Nothing comes from paused partitions, except from ones assigned by a rebalance during this call.
            await self._accept(await self._consumer.getmany(timeout_ms=int(min(left, POLL_MS / 1000) * 1000)))
            await self._report_lag()

    def _resume(self) -> None:
        self._consumer.resume(*(self._consumer.assignment() - self._unplaced))
        deadline = time.monotonic() + CHECK_TIMEOUT_S  # paused partitions could not fetch their check record
        for check in self._checks.values():
            check.deadline = deadline

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.info("could not commit offsets to Kafka (%r); records may be written again after a rebalance "
                     "or restart, which is harmless", exc)

    async def _place(self, partitions: set[TopicPartition]) -> None:
        """Seek partitions to the store's positions; pause them while the store cannot say."""
        try:
            stored = await asyncio.to_thread(self._store.positions, self._group, self._topic)
        except StoreUnavailable as exc:
            if not partitions <= self._unplaced:
                log.warning("cannot read where the store stopped (%s); partitions %s wait until it answers",
                            exc, sorted(tp.partition for tp in partitions))
            self._consumer.pause(*partitions)
            self._unplaced |= partitions
            self._place_due = time.monotonic() + RETRY_DELAYS_S[-1]
            return
        assigned = self._consumer.assignment()
        for tp in partitions & assigned:
            self._unplaced.discard(tp)
            position = stored.get(tp.partition)
            if position is None:
                continue  # never written: Kafka's committed offset applies, else the earliest
            self._written[tp] = position.next_offset
            if position.next_offset == 0:
                self._consumer.seek(tp, 0)
            else:
                self._consumer.seek(tp, position.next_offset - 1)
                self._checks[tp] = _Check(position.next_offset - 1, position.last_record,
                                          time.monotonic() + CHECK_TIMEOUT_S)
        self._consumer.resume(*(partitions & assigned))

    async def _expire_checks(self) -> None:
        now = time.monotonic()
        paused = self._consumer.paused()
        for tp, check in list(self._checks.items()):
            if now < check.deadline or tp in paused:
                continue
            del self._checks[tp]
            log.warning("%s[%d]: the record at offset %d, the last one the store wrote, is not on the broker: the "
                        "topic was recreated (the embedded Kafka keeps topics in memory); reading the partition "
                        "from the beginning", tp.topic, tp.partition, check.offset)
            self._written.pop(tp, None)
            await self._consumer.seek_to_beginning(tp)

    async def _report_lag(self) -> None:
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + self._lag_interval_s
        assigned = self._consumer.assignment()
        if not assigned:
            return
        try:
            ends = await asyncio.wait_for(self._consumer.end_offsets(list(assigned)), LAG_QUERY_TIMEOUT_S)
        except (KafkaError, TimeoutError):
            ends = {}
        for tp in assigned:
            written = self._written.get(tp)
            if written is None:
                continue
            # The embedded broker under-reports the end of a partition that holds several record batches;
            # take the highest of its answer, the fetch high watermark and what was fetched.
            end = max(ends.get(tp, 0), self._consumer.highwater(tp) or 0, self._fetched_end.get(tp, 0))
            STORE_LAG.labels(partition=str(tp.partition)).set(max(0, end - written))


def news(latest: dict[str, bool], live: list[StatusRow], replayed: list[StatusRow]) -> list[StatusRow]:
    """The status rows to write: every live one, and each replayed one that changes its device's latest status."""
    if not replayed:
        return live
    latest = dict(latest)
    rows = []
    merged = sorted([(row.ts_ms, False, row) for row in live] + [(row.ts_ms, True, row) for row in replayed],
                    key=lambda item: (item[0], item[1]))
    for _, is_replay, row in merged:
        if is_replay and latest.get(row.device_id) == row.online:
            continue
        latest[row.device_id] = row.online
        rows.append(row)
    return rows


def serve(settings: Settings, metrics_port: int | None = None) -> int:
    """Run the store writer until SIGINT or SIGTERM; 0 on a clean stop."""
    if metrics_port is not None:
        serve_metrics(settings.metrics.host, metrics_port)

    async def _main() -> None:
        stop = stop_event()
        engine = connect(settings.database_url) if settings.telemetry_store.backend == "sql" else None
        if engine is not None and not await _create_tables(engine, stop):
            return
        store = open_store(settings, engine)
        try:
            await StoreWriter(store, settings.kafka.bootstrap_servers, settings.telemetry_store).run(stop)
        finally:
            store.close()

    try:
        asyncio.run(_main())
    finally:
        if os.environ.get(MULTIPROC_ENV):
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]  # drop its lag gauges
    log.info("store writer stopped")
    return 0


async def _create_tables(engine: Engine, stop: asyncio.Event) -> bool:
    """Upgrade the schema to the newest revision, waiting for the database to answer; False if stopped first."""
    retry = Retry(RETRY_DELAYS_S, log)
    while not stop.is_set():
        try:
            await asyncio.to_thread(init_db, engine)
        except OperationalError as exc:
            await wait_or_stop(retry.failed("database does not answer (%s); retrying", exc.orig or exc), stop)
            continue
        retry.recovered("database answers after %d retries", retry.failures)
        return True
    return False
