"""The case sink on real SQLite: idempotent upserts by (case id, version), no rollback by older records,
undecodable records skipped, all-or-nothing writes, retries through an outage, and the reads the API serves.

Tests that take the `engine` fixture run on PostgreSQL as well when GRIDHUB_TEST_POSTGRES_URL names a database
to use (e.g. postgresql+psycopg://postgres@127.0.0.1/gridhub_test, with a PostgreSQL driver installed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.exc import OperationalError

from core.city import build_calendar
from core.settings import Settings
from domain.case_records import encode_case_event
from domain.cases import Case, Source, Tier, report
from domain.sla import parse_term
from storage.cases import (
    CaseCursor,
    CaseFilter,
    CaseSink,
    SinkUnavailable,
    case_events,
    cases,
    get_case,
    list_cases,
    write_with_retry,
)
from storage.db import connect
from storage.schema import init_db

CALENDAR = build_calendar(Settings().sla)
T0 = datetime(2024, 6, 3, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday, in working hours
GRID = "310104003001001"
POSTGRES_URL = os.environ.get("GRIDHUB_TEST_POSTGRES_URL")


def record(case: Case) -> bytes:
    """The case-event record of the case's latest step."""
    return encode_case_event(case, case.history[-1])


def lifecycle(case_id: str, *, grid_code: str = GRID, category: str = "0406", at: datetime = T0,
              source: Source = Source.SENSOR) -> list[bytes]:
    """Records of a case reported, filed, dispatched to 水务, handled and closed: versions 1 to 5."""
    case = report(case_id, grid_code=grid_code, category=category, source=source, at=at, actor="rules",
                  title=f"case {case_id}")
    steps = [case]
    steps.append(steps[-1].file(at + timedelta(minutes=1), "rules"))
    steps.append(steps[-1].dispatch(at + timedelta(minutes=2), "rules", department="水务",
                                    term=parse_term("4h working"), calendar=CALENDAR, tier=Tier.STREET))
    steps.append(steps[-1].handle(at + timedelta(hours=1), "水务", "pumped out"))
    steps.append(steps[-1].verify(at + timedelta(hours=2), "operator-7", passed=True))
    return [record(step) for step in steps]


@pytest.fixture(params=["sqlite", *(["postgresql"] if POSTGRES_URL else [])])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    else:
        engine = connect(str(POSTGRES_URL))
        with engine.begin() as conn:  # an empty database: init_db's migrations build every table again
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    init_db(engine)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> tuple[list[Any], list[Any]]:
    """Every row of both tables, in key order."""
    with engine.connect() as conn:
        return (list(conn.execute(select(cases).order_by(cases.c.id))),
                list(conn.execute(select(case_events).order_by(case_events.c.case_id, case_events.c.version))))


def stored_version(engine: Engine, case_id: str) -> tuple[int, str]:
    with engine.connect() as conn:
        row = conn.execute(select(cases.c.version, cases.c.state).where(cases.c.id == case_id)).one()
    return row.version, row.state


def test_writing_the_same_records_twice_changes_nothing(engine: Engine) -> None:
    records = lifecycle("a") + lifecycle("b", at=T0 + timedelta(hours=1))
    first = CaseSink(engine).write(records)
    after_first = tables(engine)
    second = CaseSink(engine).write(records)

    assert first == second
    assert (first.events, first.cases, first.skipped) == (10, 2, 0)
    assert tables(engine) == after_first
    assert len(after_first[0]) == 2 and len(after_first[1]) == 10


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7])
def test_batches_split_differently_give_the_same_tables(tmp_path: Path, batch_size: int) -> None:
    records = [r for pair in zip(lifecycle("a"), lifecycle("b"), strict=True) for r in pair]  # interleaved
    whole, split = (connect(f"sqlite:///{tmp_path / name}") for name in ("whole.db", "split.db"))
    for engine in (whole, split):
        init_db(engine)
    CaseSink(whole).write(records)
    for start in range(0, len(records), batch_size):
        CaseSink(split).write(records[start:start + batch_size])

    assert tables(split) == tables(whole)


def test_any_delivery_order_ends_at_the_latest_version(tmp_path: Path) -> None:
    records = lifecycle("a") + lifecycle("b") + lifecycle("a")  # with a replay of a's records
    reference = connect(f"sqlite:///{tmp_path / 'reference.db'}")
    init_db(reference)
    CaseSink(reference).write(records)
    shuffle = random.Random(4)
    for trial in range(10):
        engine = connect(f"sqlite:///{tmp_path / f'trial-{trial}.db'}")
        init_db(engine)
        delivered = shuffle.sample(records, len(records))
        for start in range(0, len(delivered), 4):
            CaseSink(engine).write(delivered[start:start + 4])
        assert tables(engine) == tables(reference), f"delivery order {trial}"


def test_an_older_record_never_rolls_a_case_back(engine: Engine) -> None:
    records = lifecycle("a")
    CaseSink(engine).write(records)
    before = tables(engine)
    CaseSink(engine).write([records[1]])  # version 2 (filed) arrives again, late
    CaseSink(engine).write([records[2], records[0]])

    assert stored_version(engine, "a") == (5, "closed")
    assert tables(engine) == before


def test_an_undecodable_record_is_skipped_counted_and_logged(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gridhub.sink")
    good = lifecycle("a")[0]
    doc = orjson.loads(good)
    doc["event"]["at"] = "2024-06-03T09:00:00"  # no UTC offset: the instant is unknown
    naive = orjson.dumps(doc)
    result = CaseSink(engine).write([b'{"v": 1, "case": 7', good, b'{"v": 99}', naive, None])

    assert (result.events, result.cases, result.skipped) == (1, 1, 4)
    assert stored_version(engine, "a") == (1, "reported")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4
    assert all(m.startswith("skipped an undecodable gridhub.case-events record") for m in messages)
    assert "unsupported case-event format version 99" in messages[1]
    assert "with a timezone component - at `$.event.at`" in messages[2]
    assert "(0 bytes)" in messages[3]  # a tombstone


def test_a_database_failure_mid_batch_leaves_nothing_written(engine: Engine) -> None:
    def fail_on_cases(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO cases"):  # after the events went in, inside the transaction
            raise OperationalError(statement, {}, sqlite3.OperationalError("disk I/O error"))

    event.listen(engine, "before_cursor_execute", fail_on_cases)
    with pytest.raises(SinkUnavailable, match="disk I/O error"):
        CaseSink(engine).write(lifecycle("a"))
    event.remove(engine, "before_cursor_execute", fail_on_cases)

    assert tables(engine) == ([], [])


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    for _ in range(100):
        if any(text in r.getMessage() for r in caplog.records):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log line with {text!r}")


def locked_sink(path: Path) -> CaseSink:
    """A sink that gives up on a locked database at once instead of waiting for it."""
    init_db(connect(f"sqlite:///{path}"))
    return CaseSink(create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05}))


def stored_keys(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT case_id, version FROM case_events ORDER BY case_id, version").fetchall()


def test_write_with_retry_holds_batches_through_an_outage_without_losing_or_reordering(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gridhub.sink")
    path = tmp_path / "gridhub.db"
    sink = locked_sink(path)
    records = [r for pair in zip(lifecycle("a"), lifecycle("b"), strict=True) for r in pair]
    batches = [records[start:start + 2] for start in range(0, len(records), 2)]
    keys = [sorted((case_id, version) for case_id in ("a", "b") for version in range(1, n + 1))
            for n in range(1, 6)]  # what the table holds after each batch, in order

    async def scenario() -> list[list[tuple[str, int]]]:
        stop = asyncio.Event()
        after_each: list[list[tuple[str, int]]] = []

        async def consume(batches: list[list[bytes]]) -> None:
            # Like a consumer that commits a batch's offsets only once it is written, then takes the next one.
            for batch in batches:
                assert await write_with_retry(sink, batch, stop) is not None
                after_each.append(stored_keys(path))

        await consume(batches[:1])
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the database
        task = asyncio.create_task(consume(batches[1:]))
        await wait_for_log(caplog, "case database unavailable (database: database is locked)")
        await asyncio.sleep(1.0)  # several retries
        assert holder.execute("SELECT count(*) FROM case_events").fetchone() == (2,)
        holder.execute("COMMIT")
        holder.close()
        await asyncio.wait_for(task, 15)
        return after_each

    assert asyncio.run(scenario()) == keys
    messages = [r.getMessage() for r in caplog.records]
    assert sum("case database unavailable" in m for m in messages) == 1  # one warning per outage
    assert any(m.startswith("case database is back: wrote 2 events after") for m in messages)
    assert stored_version(sink._engine, "a") == stored_version(sink._engine, "b") == (5, "closed")


def test_write_with_retry_stopped_during_an_outage_writes_nothing_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gridhub.sink")
    path = tmp_path / "gridhub.db"
    sink = locked_sink(path)

    async def scenario() -> object:
        stop = asyncio.Event()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        task = asyncio.create_task(write_with_retry(sink, lifecycle("a"), stop))
        await wait_for_log(caplog, "case database unavailable")
        stop.set()
        result = await asyncio.wait_for(task, 5)
        holder.execute("COMMIT")
        holder.close()
        return result

    assert asyncio.run(scenario()) is None
    assert stored_keys(path) == []
    assert any("stopping with 5 case-event records not written" in r.getMessage() for r in caplog.records)


@pytest.fixture
def three_cases(engine: Engine) -> Engine:
    """a: 0406 in community 001, closed; b: 0501 camera report in community 001; c: 0406 in community 002."""
    CaseSink(engine).write([
        *lifecycle("a"),
        *lifecycle("b", category="0501", source=Source.CAMERA, grid_code="310104003001003",
                   at=T0 + timedelta(hours=1))[:1],
        *lifecycle("c", grid_code="310104003002001", at=T0 + timedelta(hours=2))[:3],
    ])
    return engine


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, ["c", "b", "a"]),
    ({"grid_prefix": "310104003001"}, ["b", "a"]),
    ({"grid_prefix": "310104003002001"}, ["c"]),
    ({"grid_prefix": "310105"}, []),
    ({"category": "0406"}, ["c", "a"]),
    ({"state": "dispatched"}, ["c"]),
    ({"source": "camera"}, ["b"]),
    ({"grid_prefix": "310104003001", "category": "0406", "state": "closed"}, ["a"]),
])
def test_list_cases_applies_every_filter_given(three_cases: Engine, filters: dict[str, str],
                                               expected: list[str]) -> None:
    page = list_cases(three_cases, CaseFilter(**filters))
    assert [item.id for item in page.items] == expected
    assert page.next_cursor is None


def test_list_cases_summaries_carry_the_stored_columns(three_cases: Engine) -> None:
    a = list_cases(three_cases, CaseFilter(category="0406", state="closed")).items[0]
    assert (a.version, a.grid_code, a.source, a.department, a.tier, a.urgent) == (5, GRID, "sensor", "水务",
                                                                                   "street", False)
    assert a.reported_ms == int(T0.timestamp() * 1000)
    assert a.closed_ms == int((T0 + timedelta(hours=2)).timestamp() * 1000)
    assert a.deadline_ms == int(datetime(2024, 6, 3, 13, 2, tzinfo=T0.tzinfo).timestamp() * 1000)
    assert a.voided_ms is None


def test_list_cases_pages_newest_first_with_the_id_breaking_ties(engine: Engine) -> None:
    # Seven cases, several reported at the same moment: the cursor must neither skip nor repeat any.
    reported = {"p": 0, "q": 1, "r": 1, "s": 1, "t": 2, "u": 3, "v": 3}
    CaseSink(engine).write([lifecycle(case_id, at=T0 + timedelta(minutes=m))[0] for case_id, m in reported.items()])
    pages, cursor = [], None
    while True:
        page = list_cases(engine, limit=3, after=cursor)
        pages.append([item.id for item in page.items])
        if page.next_cursor is None:
            break
        cursor = CaseCursor.decode(page.next_cursor.encode())

    assert pages == [["v", "u", "t"], ["s", "r", "q"], ["p"]]


def test_get_case_returns_the_document_and_its_timeline_in_version_order(three_cases: Engine) -> None:
    found = get_case(three_cases, "a")

    assert found is not None
    doc, timeline = found
    assert (doc["id"], doc["version"], doc["state"], doc["department"]) == ("a", 5, "closed", "水务")
    assert "history" not in doc
    assert [(e["version"], e["action"], e["from_state"], e["to_state"]) for e in timeline] == [
        (1, "report", None, "reported"), (2, "file", "reported", "filed"), (3, "dispatch", "filed", "dispatched"),
        (4, "handle", "dispatched", "handled"), (5, "verify_pass", "handled", "closed"),
    ]
    assert timeline[0]["at"] == "2024-06-03T01:00:00+00:00"
    assert timeline[2]["data"] == {"department": "水务", "tier": "street",
                                   "deadline_at": "2024-06-03T13:02:00+08:00"}
    assert (timeline[3]["actor"], timeline[3]["note"]) == ("水务", "pumped out")


def test_get_case_of_an_unknown_id_is_none(three_cases: Engine) -> None:
    assert get_case(three_cases, "nope") is None


def test_a_cursor_round_trips_and_garbage_is_refused() -> None:
    cursor = CaseCursor(1_717_376_400_000, "case:with:colons")
    assert CaseCursor.decode(cursor.encode()) == cursor
    for garbage in ("", "!!!", "bm90LWEtY3Vyc29y"):  # the last is base64 of "not-a-cursor"
        with pytest.raises(ValueError, match="malformed cursor"):
            CaseCursor.decode(garbage)
