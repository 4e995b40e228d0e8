"""Live case events: one Kafka consumer per API process feeding a bounded buffer that server-sent event streams read.

The consumer joins no group: every API process must see every case event, and a group would split the
partitions between them. It starts at the end of `gridhub.case-events` when the process starts, so a stream
carries what happens from then on; lists of what happened before come from the cases API. Each event gets an id
`<boot>-<sequence>` that increases within a process, so that a client reconnecting with `Last-Event-ID` is
resumed from the buffer, or told to reload (`reset`) when the buffer no longer holds where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from api.routes.cases import CaseEventOut, CaseOut
from core.kafka import CASE_EVENTS
from core.retry import Retry, doubling, wait_or_stop
from domain.case_records import CaseDoc, CaseRecordFormatError, EventDoc, decode_case_event
from domain.cases import Action, CaseState, Source

BUFFER_EVENTS: Final = 10_000
RETRY_S: Final = doubling(0.5, 10.0)
# Tansu answers a fetch only when its wait is over, even if records came meanwhile: measured with 200 records,
# produce-to-SSE took 130 ms median (p95 250) at aiokafka's default 500 ms and 27 ms (p95 51) at 100 ms.
FETCH_WAIT_MS: Final = 100
PROBE_AFTER_S: Final = 5.0  # after this long without records, ask Kafka whether it is still there
#: A camera case's report awaits an operator's review; file and void are the review's decision, reopen takes it back.
DETECTION_ACTIONS: Final = frozenset({Action.REPORT, Action.FILE, Action.VOID, Action.REOPEN})

log = logging.getLogger("gridhub.api.live")


class Kind(StrEnum):
    """The SSE event type of a case event."""

    CASE = "case"
    DETECTION = "detection"  # a camera detection awaiting review, or the operator's decision on it


class FeedStatus(StrEnum):
    """Whether the feed is reading Kafka."""

    CONNECTING = "connecting"  # not yet, or Kafka went away: events are read on from where they stopped
    LIVE = "live"


class LiveCaseEventOut(BaseModel):
    """What a `case` or `detection` event carries: the event and the case as it stands after it."""

    event: CaseEventOut
    case: CaseOut


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One case event in the buffer, with what streams filter on and its SSE data rendered once."""

    seq: int
    kind: Kind
    grid_code: str
    category: str
    state: CaseState
    data: str


class TopicMissing(Exception):
    """The case-events topic does not exist (yet)."""


def kind_of(case: CaseDoc, event: EventDoc) -> Kind:
    """`detection` for a camera case's review steps, `case` for everything else."""
    return Kind.DETECTION if case.source is Source.CAMERA and event.action in DETECTION_ACTIONS else Kind.CASE


def render(case: CaseDoc, event: EventDoc) -> str:
    """The SSE data of a case event: JSON of the event and the case summary, in UTC as the cases API gives them."""
    out = LiveCaseEventOut(event=CaseEventOut.model_validate(msgspec.to_builtins(event)),
                           case=CaseOut.model_validate(msgspec.to_builtins(case)))
    return out.model_dump_json()


class LiveFeed:
    """The last `capacity` case events of `topic` since this process started, read by one group-less consumer."""

    def __init__(self, bootstrap: str, *, topic: str = CASE_EVENTS, capacity: int = BUFFER_EVENTS) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.capacity = capacity
        self.boot = secrets.token_hex(4)
        self.status = FeedStatus.CONNECTING
        self._events: deque[LiveEvent] = deque(maxlen=capacity)
        self._last = 0  # sequence of the newest event, 0 before the first
        self._started_ms = int(time.time() * 1000)
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def last(self) -> int:
        """The sequence of the newest event (0 before the first)."""
        return self._last

    def start(self) -> None:
        """Start reading in the background; the app starts at once even when Kafka is unreachable."""
        self._task = asyncio.create_task(self._run(), name="gridhub-live-feed")

    async def stop(self) -> None:
        """Stop reading and close the consumer."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def event_id(self, seq: int) -> str:
        """The SSE id of a position in this process's sequence."""
        return f"{self.boot}-{seq}"

    def resume_point(self, last_event_id: str) -> tuple[int, str | None]:
        """Where a stream resumes after `last_event_id`: (sequence, None), or (newest, why it cannot resume)."""
        boot, _, seq_text = last_event_id.rpartition("-")
        if boot != self.boot or not seq_text.isdigit():
            return self._last, f"event id {last_event_id!r:.60} is not from this server's run ({self.boot})"
        seq = int(seq_text)
        if seq > self._last:
            return self._last, f"event id {last_event_id!r:.60} is ahead of this server's newest event"
        if seq < self._first() - 1:
            return self._last, f"event id {last_event_id!r:.60} is older than the {len(self._events)} events kept"
        return seq, None

    def after(self, seq: int) -> list[LiveEvent] | None:
        """The events after `seq`, oldest first; None if some of them are no longer kept."""
        if seq < self._first() - 1:
            return None
        # From the right: a stream is usually a few events behind, and deque indexing is linear.
        newer = list(itertools.islice(reversed(self._events), self._last - seq))
        newer.reverse()
        return newer

    def changed(self) -> asyncio.Event:
        """An event set at the next change (new events or a new status); take it before reading, then wait."""
        return self._changed

    def _first(self) -> int:
        return self._events[0].seq if self._events else self._last + 1

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _set_status(self, status: FeedStatus) -> None:
        if status is not self.status:
            self.status = status
            self._notify()

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        # Tansu's ListOffsets under-reports the end of a partition holding several batches (9,248 for 10,000
        # records), so "from the end" may start among older records; their create time tells them apart.
        if record.timestamp < self._started_ms:
            return
        try:
            case, event = decode_case_event(record.value or b"")
        except CaseRecordFormatError as exc:
            log.warning("live events: skipped an undecodable %s record at %d/%d: %s",
                        record.topic, record.partition, record.offset, exc)
            return
        self._last += 1
        self._events.append(LiveEvent(self._last, kind_of(case, event), case.grid_code, case.category, case.state,
                                      render(case, event)))

    async def _run(self) -> None:
        retry = Retry(RETRY_S, log)
        positions: dict[TopicPartition, int] = {}  # kept across reconnections, so nothing is skipped
        while not self._stop.is_set():
            consumer: AIOKafkaConsumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS,
                client_id=f"gridhub-api-live-{self.boot}")
            try:
                await self._attach(consumer, positions)
                retry.recovered("live events: Kafka at %s answers; reading on from where the feed stopped",
                                self.bootstrap)
                self._set_status(FeedStatus.LIVE)
                await self._read(consumer, positions)
            except (KafkaError, TopicMissing, TimeoutError) as exc:
                self._set_status(FeedStatus.CONNECTING)
                delay = retry.failed("live events: Kafka at %s unavailable (%s); retrying", self.bootstrap, exc)
                await wait_or_stop(delay, self._stop)
            finally:
                await consumer.stop()

    async def _attach(self, consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        await consumer.start()
        partitions = consumer.partitions_for_topic(self.topic) if self.topic in await consumer.topics() else None
        if not partitions:
            raise TopicMissing(f"topic {self.topic} does not exist")
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        for tp in assigned:
            if tp in positions:
                consumer.seek(tp, positions[tp])
            else:
                await consumer.seek_to_end(tp)
            positions[tp] = await consumer.position(tp)

    async def _read(self, consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        quiet_since = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    self._take(record)
                positions[tp] = records[-1].offset + 1
            if batches:
                quiet_since = time.monotonic()
                self._notify()
            elif time.monotonic() - quiet_since >= PROBE_AFTER_S:
                # aiokafka retries a lost broker quietly, so silence cannot tell an idle city from a cut-off
                # feed; a metadata request can (it raises KafkaError when no broker answers).
                await asyncio.wait_for(consumer.topics(), PROBE_AFTER_S)
                quiet_since = time.monotonic()


def open_feed(bootstrap: str | None) -> LiveFeed | None:
    """The started feed of this process, or None when the API runs without Kafka."""
    if bootstrap is None:
        return None
    feed = LiveFeed(bootstrap)
    feed.start()
    return feed


async def close_feed(feed: LiveFeed | None) -> None:
    """Stop the feed, if there is one."""
    if feed is not None:
        await feed.stop()
