"""The case sink: `gridhub.case-events` records into the case database, and the reads the API serves.

Delivery is at least once and a worker restart replays records, so every write is an upsert that a replay
cannot change: a timeline event by (case id, version), replaced by the same content; a case row only when the
incoming version is at least the stored one, so an older record arriving late never rolls a case back.
Times are epoch milliseconds (UTC) so that filters and ordering behave alike on SQLite and PostgreSQL; the
case's full document (without its timeline) is kept beside the columns as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import msgspec
import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from core.kafka import CASE_EVENTS
from core.retry import Retry, doubling, wait_or_stop
from domain.case_records import CaseRecordFormatError, case_from_doc, decode_case_event
from domain.cases import Case
from domain.epoch import EPOCH
from storage.metadata import metadata

log = logging.getLogger("gridhub.sink")

#: Retry delays through a database outage: the first, doubled after each failure up to the cap.
RETRY_S = doubling(0.2, 5.0)

# Text columns that come from records have no length limit: a record that the domain accepts must never be
# refused by a column width, or the sink would retry it forever and hold every record behind it.
cases = Table(
    "cases",
    metadata,
    Column("id", String, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("grid_code", String, nullable=False),
    Column("category", String, nullable=False),
    Column("source", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("severity", String, nullable=False),
    Column("urgent", Boolean, nullable=False),
    Column("title", Text, nullable=False),
    Column("department", String),
    Column("tier", String(16)),
    Column("reported_ms", BigInteger, nullable=False),
    Column("filed_ms", BigInteger),
    Column("dispatched_ms", BigInteger),
    Column("deadline_ms", BigInteger),
    Column("handled_ms", BigInteger),
    Column("closed_ms", BigInteger),
    Column("voided_ms", BigInteger),
    Column("doc", Text, nullable=False),
    # Newest first, with the id as tie-breaker: the order and keyset of `list_cases`.
    Index("ix_cases_reported", "reported_ms", "id"),
    Index("ix_cases_grid_reported", "grid_code", "reported_ms"),
    Index("ix_cases_state_reported", "state", "reported_ms"),
    Index("ix_cases_deadline", "deadline_ms", "id"),
    Index("ix_cases_state_deadline", "state", "deadline_ms", "id"),
)

case_events = Table(
    "case_events",
    metadata,
    Column("case_id", String, primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("action", String(16), nullable=False),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String, nullable=False),
    Column("note", Text, nullable=False),
    Column("data", Text, nullable=False),
)

#: Errors that mean "the database cannot do this now" (down, locked, read-only, pool exhausted), not a bug.
_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)
_CASE_TIMES = ("reported", "filed", "dispatched", "deadline", "handled", "closed", "voided")


class SinkUnavailable(Exception):
    """The case database cannot take a write or answer a query just now (down, locked, refusing); retry later."""


@dataclass(frozen=True, slots=True)
class SinkResult:
    """What one write did: distinct events and cases in the batch, and records skipped as undecodable."""

    events: int
    cases: int
    skipped: int


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """A case as listed: its columns, times in epoch milliseconds (None when not reached)."""

    id: str
    version: int
    grid_code: str
    category: str
    source: str
    state: str
    severity: str
    urgent: bool
    title: str
    department: str | None
    tier: str | None
    reported_ms: int
    filed_ms: int | None
    dispatched_ms: int | None
    deadline_ms: int | None
    handled_ms: int | None
    closed_ms: int | None
    voided_ms: int | None


class CaseOrder(StrEnum):
    """How a list of cases is sorted; ties are broken by case id in the same direction."""

    NEWEST = "-reported"
    OLDEST = "reported"
    DEADLINE = "deadline"  # soonest deadline first; only cases that have one (dispatched at least once)
    LATEST_DEADLINE = "-deadline"


@dataclass(frozen=True, slots=True)
class CaseCursor:
    """Where a page of cases ended: the last case's sort value and id."""

    value: int
    case_id: str

    def encode(self) -> str:
        """An opaque, URL-safe token for the next page."""
        return base64.urlsafe_b64encode(f"{self.value}:{self.case_id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> CaseCursor:
        """Read a token made by `encode`; raise ValueError for anything else."""
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            value, case_id = text.split(":", 1)
            return cls(int(value), case_id)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError(f"malformed cursor {token!r:.60}") from None


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """What a list of cases is restricted to; None means any."""

    grid_prefix: str | None = None
    grid_code: str | None = None  # one cell: an equality the (grid_code, reported_ms) index answers
    category: str | None = None
    state: str | None = None
    source: str | None = None
    department: str | None = None
    tier: str | None = None
    severity: str | None = None
    overdue_at_ms: int | None = None  # dispatched and past the deadline at this moment
    reported_from_ms: int | None = None
    reported_to_ms: int | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class CasePage:
    """One page of cases and the cursor for the next (None on the last page)."""

    items: list[CaseSummary]
    next_cursor: CaseCursor | None


class CaseSink:
    """Writes case-event records to the `cases` and `case_events` tables."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"the case sink supports SQLite and PostgreSQL, not {dialect}")
        self._engine = engine
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    def write(self, records: Sequence[bytes | None]) -> SinkResult:
        """Upsert the records' events and cases in one transaction; raise SinkUnavailable if it cannot."""
        events: dict[tuple[str, int], dict[str, Any]] = {}
        latest: dict[str, dict[str, Any]] = {}
        skipped = 0
        for record in records:
            try:
                case_row, event_row = _rows(record)
            except CaseRecordFormatError as exc:
                skipped += 1
                log.warning("skipped an undecodable %s record (%d bytes): %s", CASE_EVENTS, len(record or b""), exc)
                continue
            events[(event_row["case_id"], event_row["version"])] = event_row
            held = latest.get(case_row["id"])
            # The highest version in the batch is where applying its records in order would end.
            if held is None or case_row["version"] >= held["version"]:
                latest[case_row["id"]] = case_row
        if events:
            # One row per key per statement (PostgreSQL refuses to update a row twice in one INSERT), in key
            # order so that two sinks writing overlapping batches lock rows in the same order.
            self._upsert([events[key] for key in sorted(events)], [latest[key] for key in sorted(latest)])
        return SinkResult(events=len(events), cases=len(latest), skipped=skipped)

    def _upsert(self, event_rows: list[dict[str, Any]], case_rows: list[dict[str, Any]]) -> None:
        event_insert = self._insert(case_events)
        case_insert = self._insert(cases)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    event_insert.on_conflict_do_update(
                        index_elements=[case_events.c.case_id, case_events.c.version],
                        set_={c.name: event_insert.excluded[c.name] for c in case_events.c if not c.primary_key},
                    ),
                    event_rows,
                )
                conn.execute(
                    case_insert.on_conflict_do_update(
                        index_elements=[cases.c.id],
                        set_={c.name: case_insert.excluded[c.name] for c in cases.c if not c.primary_key},
                        where=cases.c.version <= case_insert.excluded.version,
                    ),
                    case_rows,
                )
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc


async def write_with_retry(
    sink: CaseSink, records: Sequence[bytes | None], stop: asyncio.Event
) -> SinkResult | None:
    """Write the batch, retrying it through a database outage; None if stopped first (keep its offsets)."""
    retry = Retry(RETRY_S, log)
    outage_started = time.monotonic()
    while True:
        try:
            result = await asyncio.to_thread(sink.write, records)
        except SinkUnavailable as exc:
            if not retry.failures:
                outage_started = time.monotonic()
            delay = retry.failed("case database unavailable (%s); holding %d records and retrying until it answers",
                                 exc, len(records))
            if await wait_or_stop(delay, stop):
                log.warning("stopping with %d case-event records not written; they are read again on the next start",
                            len(records))
                return None
            continue
        retry.recovered("case database is back: wrote %d events after %d retries (%.1f s)",
                        result.events, retry.failures, time.monotonic() - outage_started)
        return result


def list_cases(
    engine: Engine, where: CaseFilter = CaseFilter(), *, order: CaseOrder = CaseOrder.NEWEST, limit: int = 100,
    after: CaseCursor | None = None,
) -> CasePage:
    """Cases matching every filter given, in `order`, `limit` at a time from after the cursor."""
    c = cases.c
    query = _filtered(select(*(c[field.name] for field in fields(CaseSummary))), where)
    by_report = order in (CaseOrder.NEWEST, CaseOrder.OLDEST)
    key = c.reported_ms if by_report else c.deadline_ms
    if not by_report:
        query = query.where(c.deadline_ms.is_not(None))
    descending = order in (CaseOrder.NEWEST, CaseOrder.LATEST_DEADLINE)
    if after is not None:
        if descending:
            query = query.where(or_(key < after.value, and_(key == after.value, c.id < after.case_id)))
        else:
            query = query.where(or_(key > after.value, and_(key == after.value, c.id > after.case_id)))
    ordering = (key.desc(), c.id.desc()) if descending else (key.asc(), c.id.asc())
    # One more than asked tells whether a next page exists without counting.
    query = query.order_by(*ordering).limit(limit + 1)
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    except _UNAVAILABLE as exc:
        raise _unavailable(exc) from exc
    items = [CaseSummary(*row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    if last is None:
        return CasePage(items, None)
    value = last.reported_ms if by_report else last.deadline_ms
    assert value is not None  # a deadline sort lists only cases that have one
    return CasePage(items, CaseCursor(value, last.id))


def count_cases(engine: Engine, where: CaseFilter) -> int:
    """How many cases match the filter."""
    try:
        with engine.connect() as conn:
            return int(conn.execute(_filtered(select(func.count()).select_from(cases), where)).scalar_one())
    except _UNAVAILABLE as exc:
        raise _unavailable(exc) from exc


def _filtered(query: Select[Any], where: CaseFilter) -> Select[Any]:
    c = cases.c
    if where.grid_prefix:
        query = query.where(c.grid_code.startswith(where.grid_prefix, autoescape=True))
    if where.grid_code is not None:
        query = query.where(c.grid_code == where.grid_code)
    for column, wanted in ((c.category, where.category), (c.state, where.state), (c.source, where.source),
                           (c.department, where.department), (c.tier, where.tier), (c.severity, where.severity)):
        if wanted is not None:
            query = query.where(column == wanted)
    if where.overdue_at_ms is not None:
        query = query.where(c.state == "dispatched", c.deadline_ms < where.overdue_at_ms)
    if where.reported_from_ms is not None:
        query = query.where(c.reported_ms >= where.reported_from_ms)
    if where.reported_to_ms is not None:
        query = query.where(c.reported_ms < where.reported_to_ms)
    return query


def case_docs(engine: Engine, case_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored documents (without timelines) of these cases, by id; missing ids are left out."""
    if not case_ids:
        return {}
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(cases.c.id, cases.c.doc).where(cases.c.id.in_(list(case_ids)))).all()
    except _UNAVAILABLE as exc:
        raise _unavailable(exc) from exc
    return {row.id: orjson.loads(row.doc) for row in rows}


def get_case(engine: Engine, case_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The case's document and its timeline events in version order; None if there is no such case."""
    e = case_events.c
    try:
        with engine.connect() as conn:
            doc = conn.execute(select(cases.c.doc).where(cases.c.id == case_id)).scalar_one_or_none()
            if doc is None:
                return None
            rows = conn.execute(select(case_events).where(e.case_id == case_id).order_by(e.version)).all()
    except _UNAVAILABLE as exc:
        raise _unavailable(exc) from exc
    timeline = [
        {"version": r.version, "action": r.action, "from_state": r.from_state, "to_state": r.to_state,
         "at": _iso(r.at_ms), "actor": r.actor, "note": r.note, "data": orjson.loads(r.data)}
        for r in rows
    ]
    return orjson.loads(doc), timeline


def load_case(engine: Engine, case_id: str) -> Case | None:
    """The whole case (with its timeline) as the database holds it; None if there is no such case.

    The database follows the worker through the case-event topic, so it may be a version or two behind.
    """
    found = get_case(engine, case_id)
    if found is None:
        return None
    doc, timeline = found
    return case_from_doc({**doc, "history": timeline})


def _rows(record: bytes | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The case row and event row of a record; raise CaseRecordFormatError if it is not one (a tombstone neither)."""
    case, event = decode_case_event(record or b"")  # typed and checked, times with their offsets
    case_row = {
        "id": case.id, "version": case.version, "grid_code": case.grid_code, "category": case.category,
        "source": case.source.value, "state": case.state.value, "severity": case.severity.value,
        "urgent": case.urgent, "title": case.title, "department": case.department, "tier": case.tier,
        **{f"{name}_ms": _ms(getattr(case, f"{name}_at")) for name in _CASE_TIMES},
        "doc": msgspec.json.encode(case).decode(),
    }
    event_row = {
        "case_id": case.id, "version": event.version, "action": event.action.value,
        "from_state": event.from_state.value if event.from_state else None, "to_state": event.to_state.value,
        "at_ms": _ms(event.at), "actor": event.actor, "note": event.note, "data": orjson.dumps(event.data).decode(),
    }
    return case_row, event_row


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else (moment - EPOCH) // timedelta(milliseconds=1)


def _iso(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).isoformat()


def _unavailable(exc: Exception) -> SinkUnavailable:
    return SinkUnavailable(f"database: {getattr(exc, 'orig', None) or exc}")
