"""The figures endpoint `/api/v1/kpis` and the case histories it reads back from the case tables.

Cases are driven through the real state machine and stored as the stream worker's case-event records (one per
step, with the case as it stands after it). Unless a test says otherwise, the period is Monday 2025-09-22 in
Shanghai and `desk.dispatched(id, t)` reports a case at t, files it at t + 5 min and dispatches it at t + 10 min
with 4 working hours: from 09:00 that is due at 13:10.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, text

from core.city import build_calendar
from core.settings import Settings
from domain.case_records import encode_case_event
from domain.cases import Case, Source, Tier, report
from domain.epoch import EPOCH
from domain.sla import SlaCalendar, parse_term
from storage.case_history import load_cases
from storage.cases import CaseSink, SinkUnavailable, case_events
from storage.db import connect
from storage.schema import init_db
from tests.tokens import bearer, mint

SHANGHAI = ZoneInfo("Asia/Shanghai")
MINUTE = timedelta(minutes=1)
CELL = "310104003001001"  # 天平路街道 宛南社区


def sh(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A moment in Shanghai in September 2025 (the 22nd is a Monday and a working day)."""
    return datetime(2025, 9, day, hour, minute, tzinfo=SHANGHAI)


def ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


@dataclass
class Desk:
    """Drives cases through the state machine as the command center would, keeping every step's record."""

    calendar: SlaCalendar
    records: list[bytes] = field(default_factory=list)

    def keep(self, case: Case) -> Case:
        """Record the case's latest event with the case after it, as the stream worker publishes it."""
        self.records.append(encode_case_event(case, case.history[-1]))
        return case

    def reported(self, case_id: str, at: datetime, *, grid: str = CELL, source: Source = Source.PATROL) -> Case:
        return self.keep(report(case_id, grid_code=grid, category="0501", source=source, at=at, actor="inspector-7"))

    def dispatched(self, case_id: str, at: datetime, *, term: str = "4h working", department: str = "城管执法",
                   grid: str = CELL, source: Source = Source.PATROL) -> Case:
        case = self.keep(self.reported(case_id, at, grid=grid, source=source).file(at + 5 * MINUTE, "operator-1"))
        return self.keep(case.dispatch(at + 10 * MINUTE, "operator-1", department=department, tier=Tier.COMMUNITY,
                                       term=parse_term(term), calendar=self.calendar))

    def closed(self, case: Case, handled_at: datetime, closed_at: datetime) -> Case:
        case = self.keep(case.handle(handled_at, "officer-3"))
        return self.keep(case.verify(closed_at, "inspector-7", passed=True))

    def store(self, engine: Engine) -> None:
        """Write the records through the case sink, as the stream worker's sink does."""
        CaseSink(engine).write(self.records)


@pytest.fixture
def desk() -> Desk:
    return Desk(build_calendar(Settings().sla))


@pytest.fixture
def engine(client: TestClient) -> Engine:
    db: Engine = client.app.state.engine  # type: ignore[attr-defined]
    return db


def kpis(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/kpis", headers=headers, params={"at": "2025-09-22", **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- figures -----------------------------------------------------------------------------------------------


def test_the_total_carries_every_figure_of_the_domain_with_times_in_seconds(
    client: TestClient, viewer: dict[str, str], desk: Desk, engine: Engine
) -> None:
    desk.closed(desk.dispatched("on-time", sh(22, 9)), sh(22, 11), sh(22, 11, 30))
    desk.closed(desk.dispatched("late", sh(22, 9)), sh(22, 12), sh(22, 15))
    desk.dispatched("open", sh(22, 9))
    desk.store(engine)

    body = kpis(client, viewer)

    assert (body["by"], body["period"], body["timezone"], body["scope"]) == (None, "day", "Asia/Shanghai", "310104")
    [period] = body["periods"]
    assert period["groups"] == []
    # Three due at 13:10, two closed (one by then); both handled by 13:10; closing took 2.5 h and 6 h.
    assert period["total"] == {
        "due": 3, "closed": 2, "closure_rate": pytest.approx(2 / 3), "on_time_closure_rate": pytest.approx(1 / 3),
        "rework_rate": 0.0, "extension_rate": 0.0, "timely_handling_rate": 1.0, "grassroots_rate": 1.0,
        "first_time_right_rate": 1.0, "satisfaction_rate": None,
        "mean_time_to_file_s": 300.0, "mean_time_to_dispatch_s": 600.0, "mean_time_to_close_s": 15300.0,
    }


def test_figures_by_department_name_each_department_and_the_cases_not_dispatched(
    client: TestClient, viewer: dict[str, str], desk: Desk, engine: Engine
) -> None:
    desk.closed(desk.dispatched("a", sh(22, 9)), sh(22, 11), sh(22, 11, 30))
    desk.dispatched("b", sh(22, 9), department="水务")
    desk.reported("c", sh(22, 9))
    desk.store(engine)

    period = kpis(client, viewer, by="department")["periods"][0]

    assert [(g["key"], g["name"], g["figures"]["due"], g["figures"]["on_time_closure_rate"])
            for g in period["groups"]] == [
        ("", "未派遣 not dispatched", 0, None),
        ("城管执法", "城管执法", 1, 1.0),
        ("水务", "水务", 1, 0.0),
    ]
    assert period["total"]["on_time_closure_rate"] == 0.5


def test_figures_by_street_name_each_street_from_the_city(
    client: TestClient, viewer: dict[str, str], desk: Desk, engine: Engine
) -> None:
    desk.closed(desk.dispatched("a", sh(22, 9)), sh(22, 11), sh(22, 11, 30))
    desk.dispatched("b", sh(22, 9), grid="310104004001001")
    desk.store(engine)

    period = kpis(client, viewer, by="street")["periods"][0]

    assert [(g["key"], g["name"], g["figures"]["due"], g["figures"]["closed"]) for g in period["groups"]] == [
        ("310104003", "天平路街道", 1, 1),
        ("310104004", "湖南路街道", 1, 0),
    ]


@pytest.mark.parametrize(("token_scope", "grid", "scope", "due"), [
    ("310104", None, "310104", 2),
    ("310104", "310104003002", "310104003002", 1),
    ("310104003001", None, "310104003001", 1),
    ("310104003001", "310104", "310104003001", 1),
    ("310104003001", "310104003002", None, 0),
])
def test_figures_count_only_cases_in_the_callers_scope_narrowed_by_grid(
    client: TestClient, tmp_path: Path, desk: Desk, engine: Engine,
    token_scope: str, grid: str | None, scope: str | None, due: int,
) -> None:
    desk.dispatched("in-001", sh(22, 9))
    desk.dispatched("in-002", sh(22, 9), grid="310104003002001")
    desk.store(engine)
    caller = bearer(mint(tmp_path, "viewer", token_scope))

    body = kpis(client, caller, by="community", **({"grid": grid} if grid else {}))

    assert body["scope"] == scope
    assert body["periods"][0]["total"]["due"] == due
    assert sum(g["figures"]["due"] for g in body["periods"][0]["groups"]) == due


def test_a_case_closed_before_the_period_but_due_in_it_is_counted(
    client: TestClient, viewer: dict[str, str], desk: Desk, engine: Engine
) -> None:
    # One working day from Monday 09:10 runs out on Tuesday at 09:10; the case was closed on Monday.
    desk.closed(desk.dispatched("early", sh(22, 9), term="1d working"), sh(22, 11), sh(22, 11, 30))
    desk.store(engine)

    total = kpis(client, viewer, at="2025-09-23")["periods"][0]["total"]

    assert (total["due"], total["closed"], total["on_time_closure_rate"]) == (1, 1, 1.0)


def test_periods_are_consecutive_oldest_first_ending_with_the_one_containing_at(
    client: TestClient, viewer: dict[str, str], desk: Desk, engine: Engine
) -> None:
    desk.dispatched("monday", sh(22, 9))
    desk.dispatched("tuesday", sh(23, 9))
    desk.store(engine)

    body = kpis(client, viewer, at="2025-09-24", periods=3)

    assert [(p["label"], p["total"]["due"]) for p in body["periods"]] == [
        ("2025-09-22", 1), ("2025-09-23", 1), ("2025-09-24", 0),
    ]


def test_a_long_trend_counts_every_period_though_its_cases_are_read_a_month_at_a_time(
    client: TestClient, viewer: dict[str, str], desk: Desk, engine: Engine
) -> None:
    desk.dispatched("july", datetime(2025, 7, 15, 9, tzinfo=SHANGHAI))
    desk.dispatched("reported-in-july-due-in-august", datetime(2025, 7, 31, 9, tzinfo=SHANGHAI), term="30d natural")
    desk.dispatched("september", sh(22, 9))
    desk.store(engine)

    body = kpis(client, viewer, period="month", periods=3)

    assert [(p["label"], p["total"]["due"], p["total"]["mean_time_to_dispatch_s"]) for p in body["periods"]] == [
        ("2025-07", 1, 600.0), ("2025-08", 1, None), ("2025-09", 1, 600.0),
    ]


@pytest.mark.parametrize(("period", "label", "start", "end"), [
    ("day", "2025-09-24", "2025-09-23T16:00:00Z", "2025-09-24T16:00:00Z"),
    ("week", "2025-W39", "2025-09-21T16:00:00Z", "2025-09-28T16:00:00Z"),
    ("month", "2025-09", "2025-08-31T16:00:00Z", "2025-09-30T16:00:00Z"),
])
def test_a_period_is_the_local_day_week_or_month_containing_at_given_in_utc(
    client: TestClient, viewer: dict[str, str], period: str, label: str, start: str, end: str
) -> None:
    [span] = kpis(client, viewer, period=period, at="2025-09-24T23:30:00+08:00")["periods"]

    assert (span["label"], span["start"], span["end"]) == (label, start, end)


def test_csv_export_has_bilingual_headers_and_a_row_per_group_counted_then_the_total_for_each_period(
    client: TestClient, viewer: dict[str, str], desk: Desk, engine: Engine
) -> None:
    desk.closed(desk.dispatched("a", sh(22, 9)), sh(22, 11), sh(22, 11, 30))
    desk.dispatched("b", sh(22, 9), department="水务")
    desk.store(engine)

    response = client.get("/api/v1/kpis", headers=viewer,
                          params={"by": "department", "at": "2025-09-22", "periods": 2, "format": "csv"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        'attachment; filename="gridhub-kpis-department-day-2025-09-22.csv"')
    assert response.content.startswith("\ufeff".encode())
    header, *rows = csv.reader(io.StringIO(response.content.decode("utf-8-sig")))
    assert header[:8] == ["期间 period", "开始 start", "结束 end", "维度 by", "分组 group", "名称 name",
                          "应结案数 due", "已结案数 closed"]
    assert header[8:11] == ["结案率 closure_rate", "按期结案率 on_time_closure_rate", "返工率 rework_rate"]
    assert header[-1] == "平均结案时长(秒) mean_time_to_close_s"
    assert [row[:9] for row in rows] == [
        ["2025-09-21", "2025-09-20T16:00:00+00:00", "2025-09-21T16:00:00+00:00", "total", "", "合计 total",
         "0", "0", ""],
        ["2025-09-22", "2025-09-21T16:00:00+00:00", "2025-09-22T16:00:00+00:00", "department", "城管执法",
         "城管执法", "1", "1", "1.0"],
        ["2025-09-22", "2025-09-21T16:00:00+00:00", "2025-09-22T16:00:00+00:00", "department", "水务",
         "水务", "1", "0", "0.0"],
        ["2025-09-22", "2025-09-21T16:00:00+00:00", "2025-09-22T16:00:00+00:00", "total", "", "合计 total",
         "2", "1", "0.5"],
    ]
    assert all(len(row) == len(header) for row in rows)


@pytest.mark.parametrize(("params", "complaint"), [
    ({"by": "floor"}, "department"),
    ({"period": "year"}, "month"),
    ({"at": "yesterday"}, "`at` must be a date"),
    ({"at": "2025-09-22T10:00:00"}, "with its offset"),
    ({"periods": 0}, "greater than or equal to 1"),
    ({"periods": 32}, "less than or equal to 31"),
    ({"grid": "31010x"}, "grid code prefix"),
    ({"format": "xlsx"}, "csv"),
    ({"at": "0001-01-01", "periods": 2}, "after 1970-03"),
])
def test_a_bad_parameter_is_refused_with_422_naming_it(
    client: TestClient, viewer: dict[str, str], params: dict[str, Any], complaint: str
) -> None:
    response = client.get("/api/v1/kpis", headers=viewer, params=params)

    assert response.status_code == 422
    assert complaint in str(response.json()["detail"])


def test_figures_need_a_bearer_token(client: TestClient) -> None:
    assert client.get("/api/v1/kpis").status_code == 401


def test_figures_answer_503_when_the_case_database_cannot(
    client: TestClient, viewer: dict[str, str], engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE case_events"))

    response = client.get("/api/v1/kpis", headers=viewer)

    assert response.status_code == 503
    assert response.json()["detail"].startswith("case database unavailable: database: ")


# --- the case histories behind them ------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Engine]:
    db = connect(Settings(state_dir=tmp_path).database_url)
    init_db(db)
    yield db
    db.dispose()


def test_cases_come_back_whole_with_their_history(desk: Desk, database: Engine) -> None:
    closed = desk.closed(desk.dispatched("a", sh(22, 9)), sh(22, 11), sh(22, 11, 30))
    desk.store(database)

    assert load_cases(database, grid_prefix="310104", since_ms=ms(sh(22)), until_ms=ms(sh(23))) == [closed]


@pytest.mark.parametrize(("build", "wanted"), [
    pytest.param(lambda d: d.reported("x", sh(23, 9)), True, id="reported in the period"),
    pytest.param(lambda d: d.closed(d.dispatched("x", sh(22, 9), term="1d working"), sh(22, 11), sh(22, 12)), True,
                 id="closed before the period, due in it"),
    pytest.param(lambda d: d.dispatched("x", sh(22, 9), term="1d working"), True,
                 id="open since before the period, due in it"),
    pytest.param(lambda d: d.dispatched("x", sh(22, 9), term="3d working"), False,
                 id="open since before the period, due after it"),
    pytest.param(lambda d: d.keep(d.dispatched("x", sh(22, 9)).handle(sh(23, 10), "officer-3")), True,
                 id="open since before the period, handled in it"),
    pytest.param(lambda d: d.closed(d.dispatched("x", sh(22, 9)), sh(22, 11), sh(22, 12)), False,
                 id="closed before the period, due before it"),
    pytest.param(lambda d: d.dispatched("x", sh(22, 9)), False, id="open since before the period, nothing since"),
    pytest.param(lambda d: d.reported("x", sh(24, 9)), False, id="reported after the period"),
    pytest.param(lambda d: d.keep(d.reported("x", sh(23, 9)).void(sh(23, 10), "operator-1", reason="duplicate")),
                 False, id="voided"),
    pytest.param(lambda d: d.reported("x", sh(23, 9), grid="310104004001001"), False, id="outside the grid prefix"),
])
def test_the_loader_reads_exactly_the_cases_a_figure_of_the_period_can_count(
    desk: Desk, database: Engine, build: Callable[[Desk], Case], wanted: bool
) -> None:
    build(desk)
    desk.store(database)

    found = load_cases(database, grid_prefix="310104003", since_ms=ms(sh(23)), until_ms=ms(sh(24)))

    assert [case.id for case in found] == (["x"] if wanted else [])


def test_events_written_after_the_case_was_read_are_left_out_of_its_history(desk: Desk, database: Engine) -> None:
    dispatched = desk.dispatched("a", sh(22, 9))
    desk.store(database)
    # The handling's event without its case row: what the loader's second read sees when the sink commits the
    # handling between its two reads.
    with database.begin() as conn:
        conn.execute(insert(case_events).values(case_id="a", version=4, action="handle", from_state="dispatched",
                                                to_state="handled", at_ms=ms(sh(22, 11)), actor="officer-3",
                                                note="", data="{}"))

    assert load_cases(database, grid_prefix="310104", since_ms=ms(sh(22)), until_ms=ms(sh(23))) == [dispatched]


def test_the_loader_raises_sink_unavailable_when_the_database_cannot_answer(database: Engine) -> None:
    with database.begin() as conn:
        conn.execute(text("DROP TABLE case_events"))

    with pytest.raises(SinkUnavailable, match="case_events"):
        load_cases(database, grid_prefix="310104", since_ms=0, until_ms=1)
