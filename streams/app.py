"""`gridhub worker`: the Faust app that runs the case engine on the grid cells of its partitions.

Two agents and a timer:
- `decide` reads `gridhub.telemetry`, `gridhub.detections` and `gridhub.case-commands` (all keyed by grid
  cell, so one cell's signals reach one worker) in batches, feeds them to the engine and publishes every
  case change to `gridhub.case-events`;
- `sink` writes `gridhub.case-events` into the case database (upsert by case id and version);
- the timer checks overdue cases, refreshes the device registry and checkpoints.

Delivery is at least once end to end. A batch's records are acknowledged to Faust only after a
checkpoint: the silence rule has seen the ingest clock they advanced, the case events they caused were
delivered to Kafka and the state of their cells was saved (`storage.checkpoints`). Several workers share
the partitions through the consumer group.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import faust
import orjson
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, EventT, StreamT
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from core import kafka
from core.lifecycle import mark_ready
from core.metrics import (
    STREAMS_CASE_EVENTS,
    STREAMS_CHECKPOINT_RETRIES,
    STREAMS_CHECKPOINT_SECONDS,
    STREAMS_READINGS,
    STREAMS_RECORDS,
    STREAMS_SKIPPED,
)
from core.retry import Retry, wait_or_stop
from core.settings import Settings
from domain.case_records import CaseRecordFormatError, CommandReply, decode_command, encode_case_event, encode_reply
from domain.city import City
from domain.detections import DetectionFormatError, decode_detection
from domain.telemetry import TelemetryFormatError, decode_record
from storage.cases import CaseSink, SinkUnavailable, load_case, write_with_retry
from storage.checkpoints import load_cell, save_cells, saved_cells
from storage.devices import load_registry
from streams.engine import CaseEngine, Change, limits_from

log = logging.getLogger("gridhub.streams")
T = TypeVar("T")

REGISTRY_REFRESH_S = 30.0
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
FETCH_MAX_WAIT_MS = 100
STOP_CHECKPOINT_S = 8.0
STOP_GRACE_S = 12.0  # under `gridhub up` the supervisor kills a child that has not stopped after 15 s


class _ShortFetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with a short fetch wait.

    Faust fixes aiokafka's `fetch_max_wait_ms` at 1,500 ms. The embedded Kafka (Tansu) answers a fetch that
    found nothing only when that wait ends, even if records arrive meanwhile: measured here, a record waited
    485 ms (median) to be fetched with 1,500 ms and 14 ms with 100 ms. Two such hops (decide, sink) made a
    case appear a second after its reading. A broker that answers early (Apache Kafka) is unaffected.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by AIOKafkaConsumer.start()
        return consumer


class _ShortFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ShortFetchThread(self, loop=self.loop, beacon=self.beacon)


class _ShortFetchTransport(faust_aiokafka.Transport):
    Consumer = _ShortFetchConsumer


class StreamWorker:
    """The engine, its checkpoint and the Faust app that feeds it."""

    def __init__(self, settings: Settings, city: City, db: Engine) -> None:
        self.settings = settings
        self.city = city
        self.db = db
        conf = settings.streams
        self.engine = CaseEngine(
            limits=limits_from(conf), routing=city.routing, calendar=city.calendar,
            devices=load_registry(db, city).devices,
            load_cell=lambda code: self._read_waiting(lambda: load_cell(db, code), f"the state of cell {code}"),
            load_case=lambda case_id: self._read_waiting(lambda: load_case(db, case_id), f"case {case_id}"),
        )
        self.sink = CaseSink(db)
        self.stopping = asyncio.Event()
        self._held: list[tuple[faust.Stream[Any], EventT[Any]]] = []
        self._replies: list[CommandReply] = []  # answers to commands, sent after the case events they caused
        self._cells_by_tp: dict[TP, set[str]] = defaultdict(set)
        self._assigned: set[TP] = set()
        self._checkpoint_lock = asyncio.Lock()
        self._last_checkpoint = time.monotonic()
        self._last_escalation_check = 0.0
        self._last_registry_refresh = time.monotonic()
        settings.state_dir.mkdir(parents=True, exist_ok=True)  # Faust makes its data directory, not its parents
        self.app = faust.App(
            conf.app_id,
            broker=f"kafka://{settings.kafka.bootstrap_servers}",
            datadir=settings.state_dir / "streams",  # Faust's default is the working directory
            store="memory://",
            autodiscover=False,
            web_enabled=False,
            topic_partitions=settings.kafka.partitions,
            consumer_auto_offset_reset="earliest",
            # A new group's first join takes about half the session timeout on the embedded Kafka (Tansu).
            broker_session_timeout=conf.session_timeout_s,
            broker_heartbeat_interval=min(1.0, conf.session_timeout_s / 6),
            broker_rebalance_timeout=conf.session_timeout_s,
            # Records stay unacknowledged until the next checkpoint; a rebalance must not wait for them.
            stream_wait_empty=False,
            producer_acks=-1,
        )
        self.app.transport = _ShortFetchTransport(self.app.conf.broker_consumer, self.app)
        self.inputs = self.app.topic(kafka.TELEMETRY, kafka.DETECTIONS, kafka.CASE_COMMANDS,
                                     key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        self.case_events = self.app.topic(kafka.CASE_EVENTS, key_type=bytes, value_type=bytes,
                                          key_serializer="raw", value_serializer="raw")
        self.case_replies = self.app.topic(kafka.CASE_REPLIES, key_type=bytes, value_type=bytes,
                                           key_serializer="raw", value_serializer="raw")
        self.app.agent(self.inputs, name="gridhub.decide")(self._decide)
        self.app.agent(self.case_events, name="gridhub.sink")(self._sink)
        self.app.timer(1.0, name="gridhub.tick")(self._tick)
        # Faust's stubs want a handler with a keyword-only `signal`; it passes the partitions positionally.
        self.app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]

    def _read_waiting(self, read: Callable[[], T], what: str) -> T:
        """Read for the engine, waiting out a database outage on the spot.

        The engine loads a cell (or a finished case) in the middle of a batch, with the changes of the records
        before it in hand: had the load failed, the agent would crash with them unpublished and the batch's
        records unacknowledged, and Faust, whose stream goes on past them, would never commit again. So the
        load waits, and the worker's loop with it; there is nothing else to do meanwhile, since the sink and
        the checkpoint need the same database (the consumer thread keeps the group's heartbeat).
        """
        retry = Retry(RETRY_DELAYS_S, log)
        while True:
            try:
                value = read()
            except (OperationalError, InterfaceError, SinkUnavailable) as exc:
                time.sleep(retry.failed("database unavailable to load %s (%s); the batch waits for it", what,
                                        getattr(exc, "orig", None) or exc))
                continue
            retry.recovered("database answers again: loaded %s after %d attempts", what, retry.failures + 1)
            return value

    # --- agents ------------------------------------------------------------------------------------

    async def _decide(self, faust_stream: StreamT[Any]) -> None:
        stream = cast(faust.Stream[Any], faust_stream)  # noack_take is on the class, not the interface
        conf = self.settings.streams
        async for events in stream.noack_take(conf.batch_max, within=conf.linger_ms / 1000):
            # Records fetched before a rebalance took their partition away belong to its new owner now.
            owned = [event for event in events if event.message.tp in self._assigned]
            async with self._checkpoint_lock:  # no checkpoint saves the cells' state before their events are out
                changes: list[Change] = []
                for event in owned:
                    changes.extend(self.apply(event.message.topic, event.message.tp, event.message.value))
                await self._publish(changes)
                self._held.extend((stream, event) for event in owned)
            if time.monotonic() - self._last_checkpoint >= conf.checkpoint_interval_s:
                await self.checkpoint()

    async def _sink(self, faust_stream: StreamT[Any]) -> None:
        stream = cast(faust.Stream[Any], faust_stream)
        async for events in stream.noack_take(1000, within=0.05):
            if await write_with_retry(self.sink, [event.message.value for event in events], self.stopping) is None:
                return  # stopping with the batch unwritten: it stays unacknowledged and is read again
            for event in events:
                await stream.ack(event)

    def apply(self, topic: str, tp: TP | None, value: bytes | None) -> list[Change]:
        """Decode one record and feed it to the engine; an undecodable record is logged, counted and skipped."""
        STREAMS_RECORDS.labels(topic=topic).inc()
        domain = tp.partition if tp is not None else 0
        changes: list[Change] = []
        try:
            if topic == kafka.TELEMETRY:
                batches = decode_record(value or b"")
                for batch in batches:
                    changes.extend(self.engine.apply_telemetry(batch, domain))
                STREAMS_READINGS.inc(sum(len(batch) for batch in batches))
                cells = [batch.grid_code for batch in batches]
            elif topic == kafka.DETECTIONS:
                detection = decode_detection(value or b"")
                changes, cells = self.engine.apply_detection(detection, domain), [detection.grid_code]
            else:
                command = decode_command(value or b"")
                changes, reply = self.engine.apply_command(command, domain)
                cells = [command.grid_code]
                if command.request_id:
                    self._replies.append(reply)
        except (TelemetryFormatError, DetectionFormatError, CaseRecordFormatError) as exc:
            STREAMS_SKIPPED.labels(topic=topic).inc()
            log.warning("skipped a record on %s that does not decode: %s", topic, exc)
            return changes
        if tp is not None:
            self._cells_by_tp[tp].update(cells)
        return changes

    # --- timer, checkpoint, rebalance --------------------------------------------------------------

    async def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_registry_refresh >= REGISTRY_REFRESH_S:
            self._last_registry_refresh = now
            try:
                self.engine.devices = (await asyncio.to_thread(load_registry, self.db, self.city)).devices
            except (OperationalError, InterfaceError) as exc:
                log.warning("could not refresh the device registry (%s); keeping the one loaded", exc)
        if now - self._last_escalation_check >= self.settings.streams.escalation_check_s:
            self._last_escalation_check = now
            async with self._checkpoint_lock:
                await self._publish(self.engine.escalate_overdue(datetime.now(UTC)))
        due = now - self._last_checkpoint >= self.settings.streams.checkpoint_interval_s
        if due and (self._held or self.engine.dirty):
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Check for silent devices, deliver the published case events, save the changed cells, then acknowledge
        their records.

        Only records move the ingest clock, so silence is checked here, before the records that moved it are
        acknowledged: whoever sees them committed (a worker taking over the partition, a test waiting for the
        end of a stream) also finds the 9902 cases they imply delivered.
        """
        async with self._checkpoint_lock:
            started = time.monotonic()
            await self._publish(self.engine.check_silence())
            held, self._held = self._held, []
            states = {code: orjson.dumps(doc) for code, doc in self.engine.take_dirty().items()}
            await self.app.producer.flush()
            retry = Retry(RETRY_DELAYS_S, log)
            while True:
                try:
                    await asyncio.to_thread(save_cells, self.db, states)
                    break
                except (OperationalError, InterfaceError) as exc:
                    STREAMS_CHECKPOINT_RETRIES.inc()
                    if self.stopping.is_set():  # unacknowledged, the records are read again on the next start
                        log.warning("stopping without a checkpoint (%s); %d records will be read again",
                                    exc.orig or exc, len(held))
                        return
                    await wait_or_stop(retry.failed("database unavailable for the checkpoint (%s); holding %d "
                                                    "records and trying again", exc.orig or exc, len(held)),
                                       self.stopping)
            retry.recovered("checkpoint saved after %d attempts", retry.failures + 1)
            for stream, event in held:
                await stream.ack(event)
            self._last_checkpoint = time.monotonic()
            STREAMS_CHECKPOINT_SECONDS.observe(self._last_checkpoint - started)

    async def _publish(self, changes: Sequence[Change]) -> None:
        for change in changes:
            await self.case_events.send(key=change.case.grid_code.encode(),
                                        value=encode_case_event(change.case, change.event))
            STREAMS_CASE_EVENTS.labels(action=change.event.action.value).inc()
        replies, self._replies = self._replies, []
        for reply in replies:
            await self.case_replies.send(key=reply.request_id.encode(), value=encode_reply(reply))

    async def _on_assigned(self, _app: Any, *args: Any, **_: Any) -> None:
        assigned: set[TP] = args[0]
        self._assigned = set(assigned)
        loaded = await self._load_cells({tp for tp in assigned if tp.topic == kafka.TELEMETRY})
        log.info("assigned %d partitions; loaded the saved state of %d grid cells", len(assigned), loaded)
        mark_ready()

    async def _load_cells(self, telemetry: set[TP]) -> int:
        """Load the saved cells of these partitions now: a silent cell must be watched before it speaks again."""
        if not telemetry:
            return 0
        partitions = self.app.consumer.topic_partitions(kafka.TELEMETRY)
        if not partitions:
            log.warning("partition count of %s unknown: cells load when their records arrive", kafka.TELEMETRY)
            return 0
        by_partition = {tp.partition: tp for tp in telemetry}
        codes = await self._saved_cells()
        if codes is None:
            return 0
        loaded = 0
        for code in codes:
            tp = by_partition.get(kafka.partition_of(code, partitions))
            if tp is not None and code not in self.engine.cells:
                await asyncio.to_thread(self.engine.cell, code, tp.partition)
                self._cells_by_tp[tp].add(code)
                loaded += 1
        return loaded

    async def _saved_cells(self) -> list[str] | None:
        """The codes of the saved cells, waiting out a database outage; None if the worker stops meanwhile.

        The partitions are the worker's once this returns: records wait, as they would for the cells'
        states, rather than run with silent cells unwatched (their timers live in the saved state)."""
        retry = Retry(RETRY_DELAYS_S, log)
        while True:
            try:
                codes: list[str] = await asyncio.to_thread(saved_cells, self.db)
            except (OperationalError, InterfaceError) as exc:
                delay = retry.failed("database unavailable to list the saved grid cells (%s); the assigned "
                                     "partitions wait for it", exc.orig or exc)
                if await wait_or_stop(delay, self.stopping):
                    return None
                continue
            retry.recovered("database answers again: listed the saved grid cells after %d attempts",
                            retry.failures + 1)
            return codes

    async def _on_revoked(self, _app: Any, *args: Any, **_: Any) -> None:
        revoked: set[TP] = args[0]
        self._assigned -= revoked
        await self.checkpoint()
        for tp in revoked:
            self.engine.forget(self._cells_by_tp.pop(tp, set()))


def _leave_now() -> None:
    log.warning("Kafka did not let the worker stop within %.0f s; leaving without it", STOP_GRACE_S)
    logging.shutdown()
    os._exit(0)


def serve(settings: Settings, city: City, db: Engine) -> int:
    """Run one worker until SIGINT or SIGTERM (Faust handles the signals); 0 on a clean stop."""
    worker = StreamWorker(settings, city, db)
    faust_worker = faust.Worker(worker.app, loglevel=settings.log_level.upper(), quiet=True)
    if settings.log_level != "debug":
        # Faust and mode narrate every service start and stop at INFO; their warnings are what an operator needs.
        for name in ("faust", "mode", "aiokafka", __name__):  # __name__: the Faust subclasses here
            logging.getLogger(name).setLevel(logging.WARNING)

    @worker.app.on_before_shutdown.connect  # type: ignore[arg-type]  # as in StreamWorker.__init__
    async def _stopping(_app: Any, *_args: Any, **_: Any) -> None:
        worker.stopping.set()
        # Faust's own shutdown can wait forever for a Kafka that is gone; nothing unacknowledged is lost by
        # leaving without it (the records are read again), so a stop ends within STOP_GRACE_S regardless.
        deadline = threading.Timer(STOP_GRACE_S, _leave_now)
        deadline.daemon = True  # a clean stop does not wait for it
        deadline.start()
        try:  # Kafka or the database may be gone: a stop must not wait for them
            await asyncio.wait_for(worker.checkpoint(), STOP_CHECKPOINT_S)
        except TimeoutError:
            log.warning("stopping without a final checkpoint; unacknowledged records will be read again")

    try:
        faust_worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
