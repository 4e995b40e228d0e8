"""Performance figures (评价) over case histories driven through the real state machine.

Unless a test says otherwise, the period is Monday 2025-09-22 (local day in Shanghai), and `desk.dispatched(id, t)`
reports a case at t, files it at t + 5 min and dispatches it at t + 10 min with 4 working hours; from 09:00
that gives a 13:10 deadline, and with "2h working" an 11:10 one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.cases import Case, Source, Tier, report
from domain.kpi import Dimension, Figures, Period, PeriodKind, counted_in, figures, figures_by, period_containing
from domain.sla import SlaCalendar, parse_term

SHANGHAI = ZoneInfo("Asia/Shanghai")
MINUTE = timedelta(minutes=1)


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


MONDAY = Period(sh(2025, 9, 22), sh(2025, 9, 23))


@dataclass(frozen=True)
class Desk:
    """Drives cases through the state machine the way the command center would."""

    calendar: SlaCalendar

    def reported(self, case_id: str, at: datetime, *, source: Source = Source.PATROL,
                 grid: str = "310104003001001") -> Case:
        return report(case_id, grid_code=grid, category="0501", source=source, at=at, actor="inspector-7")

    def dispatched(self, case_id: str, at: datetime, *, term: str = "4h working", department: str = "城管执法",
                   tier: Tier = Tier.COMMUNITY, source: Source = Source.PATROL,
                   grid: str = "310104003001001") -> Case:
        case = self.reported(case_id, at, source=source, grid=grid).file(at + 5 * MINUTE, "operator-1")
        return case.dispatch(at + 10 * MINUTE, "operator-1", department=department, tier=tier, term=parse_term(term),
                             calendar=self.calendar)

    @staticmethod
    def closed(case: Case, handled_at: datetime, closed_at: datetime) -> Case:
        return case.handle(handled_at, "officer-3").verify(closed_at, "inspector-7", passed=True)


@pytest.fixture
def desk(calendar: SlaCalendar) -> Desk:
    return Desk(calendar)


# --- closure ---------------------------------------------------------------------------------------------


def test_closure_rate_leaves_cases_suspended_at_the_end_of_the_period_out_of_the_denominator(
    desk: Desk, calendar: SlaCalendar
) -> None:
    closed = desk.closed(desk.dispatched("c1", sh(2025, 9, 22, 9)), sh(2025, 9, 22, 11), sh(2025, 9, 22, 11, 30))
    suspended = desk.dispatched("c2", sh(2025, 9, 22, 9)).suspend(sh(2025, 9, 22, 10), "dept-lead",
                                                                  reason="owner abroad", calendar=calendar)
    still_open = desk.dispatched("c3", sh(2025, 9, 22, 9))

    result = figures([closed, suspended, still_open], MONDAY)

    # All three fall due at 13:10; the suspended one leaves a denominator of 3 − 1 = 2, of which 1 is closed.
    assert (result.due, result.closed) == (3, 1)
    assert result.closure_rate == pytest.approx(1 / 2)
    assert result.on_time_closure_rate == pytest.approx(1 / 2)


def test_a_case_resumed_before_the_end_of_the_period_counts_again(desk: Desk, calendar: SlaCalendar) -> None:
    resumed = (desk.dispatched("c1", sh(2025, 9, 22, 9))
               .suspend(sh(2025, 9, 22, 10), "dept-lead", reason="owner abroad", calendar=calendar)
               .resume(sh(2025, 9, 22, 11), "dept-lead", calendar=calendar))

    result = figures([resumed], MONDAY)

    # Resumed at 11:00 with 3 h 10 min left: due at 14:10, still open.
    assert result.due == 1
    assert result.closure_rate == 0.0


def test_only_suspended_cases_due_leave_the_closure_rates_undefined(desk: Desk, calendar: SlaCalendar) -> None:
    suspended = desk.dispatched("c1", sh(2025, 9, 22, 9)).suspend(sh(2025, 9, 22, 10), "dept-lead", reason="wait",
                                                                  calendar=calendar)

    result = figures([suspended], MONDAY)

    assert result.due == 1
    assert result.closure_rate is None
    assert result.on_time_closure_rate is None


def test_on_time_closure_counts_only_cases_closed_by_their_deadline(desk: Desk) -> None:
    on_time = desk.closed(desk.dispatched("c1", sh(2025, 9, 22, 9)), sh(2025, 9, 22, 11), sh(2025, 9, 22, 11, 30))
    late = desk.closed(desk.dispatched("c2", sh(2025, 9, 22, 9), term="2h working"),  # due 11:10
                       sh(2025, 9, 22, 12), sh(2025, 9, 22, 12, 30))
    at_the_deadline = desk.closed(desk.dispatched("c3", sh(2025, 9, 22, 9)),
                                  sh(2025, 9, 22, 13), sh(2025, 9, 22, 13, 10))

    result = figures([on_time, late, at_the_deadline], MONDAY)

    assert result.closure_rate == 1.0
    assert result.on_time_closure_rate == pytest.approx(2 / 3)


def test_a_case_due_in_the_period_but_closed_after_it_is_not_closed(desk: Desk) -> None:
    case = desk.closed(desk.dispatched("c1", sh(2025, 9, 22, 9)), sh(2025, 9, 23, 9), sh(2025, 9, 23, 9, 30))

    result = figures([case], MONDAY)

    assert (result.due, result.closed, result.closure_rate) == (1, 0, 0.0)


def test_a_case_due_in_the_period_counts_as_closed_even_when_it_was_closed_before(desk: Desk) -> None:
    # Dispatched Friday 16:00: 1.5 working hours on Friday, 2.5 on Monday → due Monday 11:00; closed on Friday.
    case = desk.closed(desk.dispatched("c1", sh(2025, 9, 19, 15, 50)), sh(2025, 9, 19, 16, 30), sh(2025, 9, 19, 17))
    assert case.deadline_at == sh(2025, 9, 22, 11)

    result = figures([case], MONDAY)

    assert (result.due, result.closed, result.closure_rate, result.on_time_closure_rate) == (1, 1, 1.0, 1.0)
    assert result.rework_rate is None  # it was not closed in the period


def test_cases_due_outside_the_period_are_not_due(desk: Desk) -> None:
    # Dispatched Monday 16:00 with 4 working hours: due Tuesday 11:00.
    tomorrow = desk.closed(desk.dispatched("c1", sh(2025, 9, 22, 15, 50)), sh(2025, 9, 22, 16, 30),
                           sh(2025, 9, 22, 17))
    undispatched = desk.reported("c2", sh(2025, 9, 22, 9))

    result = figures([tomorrow, undispatched], MONDAY)

    assert (result.due, result.closed, result.closure_rate) == (0, 0, None)
    assert result.grassroots_rate == 1.0  # but it was closed in the period


# --- rework, extension, handling -------------------------------------------------------------------------


def test_rework_rate_is_cases_closed_after_rework_over_cases_closed(desk: Desk) -> None:
    reworked = desk.closed(
        desk.dispatched("c1", sh(2025, 9, 22, 9)).handle(sh(2025, 9, 22, 10), "officer-3")
        .verify(sh(2025, 9, 22, 10, 30), "inspector-7", passed=False, note="vendor is back"),
        sh(2025, 9, 22, 11), sh(2025, 9, 22, 11, 30),
    )
    clean = desk.closed(desk.dispatched("c2", sh(2025, 9, 22, 9)), sh(2025, 9, 22, 11), sh(2025, 9, 22, 11, 30))
    reworked_but_open = (desk.dispatched("c3", sh(2025, 9, 22, 9)).handle(sh(2025, 9, 22, 10), "officer-3")
                         .verify(sh(2025, 9, 22, 10, 30), "inspector-7", passed=False, note="vendor is back"))

    result = figures([reworked, clean, reworked_but_open], MONDAY)

    assert result.rework_rate == pytest.approx(1 / 2)


def test_extension_rate_is_extended_cases_over_cases_due(desk: Desk, calendar: SlaCalendar) -> None:
    extended = desk.dispatched("c1", sh(2025, 9, 22, 9)).extend(
        sh(2025, 9, 22, 12), "dept-lead", by=parse_term("2h working"), calendar=calendar, reason="permit"
    )  # due 15:10
    plain = desk.dispatched("c2", sh(2025, 9, 22, 9))
    extended_out_of_the_period = desk.dispatched("c3", sh(2025, 9, 22, 9)).extend(
        sh(2025, 9, 22, 12), "dept-lead", by=parse_term("1d working"), calendar=calendar, reason="permit"
    )  # due Tuesday 13:10

    result = figures([extended, plain, extended_out_of_the_period], MONDAY)

    assert result.due == 2
    assert result.extension_rate == pytest.approx(1 / 2)


def test_timely_handling_compares_the_first_handling_with_the_deadline(desk: Desk) -> None:
    before = desk.dispatched("c1", sh(2025, 9, 22, 9)).handle(sh(2025, 9, 22, 11), "officer-3")
    at_the_deadline = desk.dispatched("c2", sh(2025, 9, 22, 9)).handle(sh(2025, 9, 22, 13, 10), "officer-3")
    after = desk.dispatched("c3", sh(2025, 9, 22, 9), term="2h working").handle(sh(2025, 9, 22, 12), "officer-3")
    not_handled = desk.dispatched("c4", sh(2025, 9, 22, 9))

    result = figures([before, at_the_deadline, after, not_handled], MONDAY)

    assert result.timely_handling_rate == pytest.approx(2 / 3)


def test_timely_handling_keeps_the_first_handling_after_rework(desk: Desk) -> None:
    # First handled at 11:00 (before the 11:10 deadline); the rework is handled again at 12:00, too late,
    # but the figure looks at the first handling.
    case = (desk.dispatched("c1", sh(2025, 9, 22, 9), term="2h working").handle(sh(2025, 9, 22, 11), "officer-3")
            .verify(sh(2025, 9, 22, 11, 5), "inspector-7", passed=False, note="vendor is back")
            .handle(sh(2025, 9, 22, 12), "officer-3"))

    assert figures([case], MONDAY).timely_handling_rate == 1.0


# --- level and responsibility ---------------------------------------------------------------------------


def test_grassroots_rate_counts_cases_closed_at_community_or_street_level(desk: Desk) -> None:
    community = desk.closed(desk.dispatched("c1", sh(2025, 9, 22, 9)), sh(2025, 9, 22, 11), sh(2025, 9, 22, 11, 30))
    street = desk.closed(desk.dispatched("c2", sh(2025, 9, 22, 9), tier=Tier.STREET),
                         sh(2025, 9, 22, 11), sh(2025, 9, 22, 11, 30))
    escalated = desk.dispatched("c3", sh(2025, 9, 22, 9))
    for _ in range(2):
        escalated = escalated.escalate(sh(2025, 9, 22, 13, 30), "supervisor", reason="overdue")
    escalated_to_district = desk.closed(escalated, sh(2025, 9, 22, 14), sh(2025, 9, 22, 14, 30))
    open_at_community = desk.dispatched("c4", sh(2025, 9, 22, 9))

    result = figures([community, street, escalated_to_district, open_at_community], MONDAY)

    assert result.grassroots_rate == pytest.approx(2 / 3)


def test_first_time_right_excludes_cases_reassigned_or_sent_back(desk: Desk, calendar: SlaCalendar) -> None:
    right = desk.dispatched("c1", sh(2025, 9, 22, 9))
    reassigned = desk.dispatched("c2", sh(2025, 9, 22, 9)).reassign(sh(2025, 9, 22, 9, 30), "operator-1",
                                                                    department="市场监管")
    sent_back = desk.dispatched("c3", sh(2025, 9, 22, 9)).send_back(sh(2025, 9, 22, 9, 30), "officer-3",
                                                                    reason="not ours")
    redispatched = sent_back.dispatch(sh(2025, 9, 22, 10), "operator-1", department="市场监管", tier=Tier.STREET,
                                      term=parse_term("4h working"), calendar=calendar)
    escalated = desk.dispatched("c4", sh(2025, 9, 22, 9)).escalate(sh(2025, 9, 22, 13, 30), "supervisor",
                                                                   reason="overdue")
    never_dispatched = desk.reported("c5", sh(2025, 9, 22, 9))

    result = figures([right, reassigned, redispatched, escalated, never_dispatched], MONDAY)

    # Escalation (督办) is not a wrong assignment: 2 of the 4 dispatched cases were right the first time.
    assert result.first_time_right_rate == pytest.approx(2 / 4)


# --- satisfaction and mean times ------------------------------------------------------------------------


def test_satisfaction_counts_ratings_of_citizen_cases_closed_in_the_period(desk: Desk) -> None:
    def closed_and_rated(case_id: str, source: Source, satisfied: bool | None) -> Case:
        case = desk.closed(desk.dispatched(case_id, sh(2025, 9, 22, 9), source=source),
                           sh(2025, 9, 22, 11), sh(2025, 9, 22, 11, 30))
        return case if satisfied is None else case.rate(sh(2025, 9, 22, 15), "citizen-1", satisfied=satisfied)

    cases = [
        closed_and_rated("c1", Source.CITIZEN, True),
        closed_and_rated("c2", Source.CITIZEN, True),
        closed_and_rated("c3", Source.CITIZEN, False),
        closed_and_rated("c4", Source.CITIZEN, None),  # not rated: not counted
        closed_and_rated("c5", Source.PATROL, False),  # not a citizen case: not counted
    ]

    assert figures(cases, MONDAY).satisfaction_rate == pytest.approx(2 / 3)


def test_mean_times_run_from_the_report_of_cases_reported_in_the_period(desk: Desk, calendar: SlaCalendar) -> None:
    fast = desk.closed(desk.dispatched("c1", sh(2025, 9, 22, 9)), sh(2025, 9, 22, 11), sh(2025, 9, 22, 11, 30))
    slow = desk.closed(
        desk.reported("c2", sh(2025, 9, 22, 10)).file(sh(2025, 9, 22, 10, 15), "operator-1").dispatch(
            sh(2025, 9, 22, 10, 30), "operator-1", department="城管执法", tier=Tier.COMMUNITY,
            term=parse_term("4h working"), calendar=calendar),
        sh(2025, 9, 22, 13), sh(2025, 9, 22, 14),
    )
    only_reported = desk.reported("c3", sh(2025, 9, 22, 10))
    reported_last_week = desk.closed(desk.dispatched("c4", sh(2025, 9, 19, 9)),
                                     sh(2025, 9, 22, 9), sh(2025, 9, 22, 10))

    result = figures([fast, slow, only_reported, reported_last_week], MONDAY)

    # File: (5 + 15) / 2 min; dispatch: (10 + 30) / 2 min; close: (2 h 30 min + 4 h) / 2.
    assert result.mean_time_to_file == timedelta(minutes=10)
    assert result.mean_time_to_dispatch == timedelta(minutes=20)
    assert result.mean_time_to_close == timedelta(hours=3, minutes=15)


def test_every_rate_and_mean_is_none_without_cases() -> None:
    assert figures([], MONDAY) == Figures(
        due=0, closed=0, closure_rate=None, on_time_closure_rate=None, rework_rate=None, extension_rate=None,
        timely_handling_rate=None, grassroots_rate=None, first_time_right_rate=None, satisfaction_rate=None,
        mean_time_to_file=None, mean_time_to_dispatch=None, mean_time_to_close=None,
    )


def test_cases_only_reported_give_a_time_to_nothing(desk: Desk) -> None:
    result = figures([desk.reported("c1", sh(2025, 9, 22, 9))], MONDAY)

    assert (result.mean_time_to_file, result.mean_time_to_dispatch, result.mean_time_to_close) == (None, None, None)
    assert result.first_time_right_rate is None


# --- which cases a period counts ----------------------------------------------------------------------------


FRIDAY = 19


@pytest.mark.parametrize(("build", "counted"), [
    pytest.param(lambda d: d.reported("c1", sh(2025, 9, 22, 9)), True, id="reported in it"),
    # Dispatched on Friday at 16:00, four working hours run out on Monday at 11:00.
    pytest.param(lambda d: d.dispatched("c1", sh(2025, 9, FRIDAY, 15, 50)), True, id="due in it"),
    pytest.param(lambda d: d.dispatched("c1", sh(2025, 9, FRIDAY, 9)).handle(sh(2025, 9, 22, 9), "officer-3"), True,
                 id="first handled in it"),
    pytest.param(lambda d: d.closed(d.dispatched("c1", sh(2025, 9, FRIDAY, 9), term="3d working"),
                                    sh(2025, 9, FRIDAY, 11), sh(2025, 9, 22, 9)), True, id="closed in it"),
    pytest.param(lambda d: d.dispatched("c1", sh(2025, 9, FRIDAY, 9)), False, id="open, nothing in it"),
    pytest.param(lambda d: d.closed(d.dispatched("c1", sh(2025, 9, FRIDAY, 9)), sh(2025, 9, FRIDAY, 11),
                                    sh(2025, 9, FRIDAY, 12)), False, id="closed before it"),
    pytest.param(lambda d: d.reported("c1", sh(2025, 9, 23, 9)), False, id="reported after it"),
    pytest.param(lambda d: d.reported("c1", sh(2025, 9, 22, 9)).void(sh(2025, 9, 22, 10), "operator-1",
                                                                   reason="duplicate"), False, id="voided"),
])
def test_a_period_counts_a_case_with_a_cohorts_moment_in_it_unless_voided(
    desk: Desk, build: Callable[[Desk], Case], counted: bool
) -> None:
    assert counted_in(build(desk), MONDAY) is counted


# --- breakdowns -------------------------------------------------------------------------------------------


@pytest.fixture
def mixed_cases(desk: Desk) -> list[Case]:
    """Four cases across departments, streets, communities, cells and sources; all due (if at all) at 13:10."""
    a = desk.closed(desk.dispatched("a", sh(2025, 9, 22, 9), source=Source.CITIZEN, grid="310104003001001"),
                    sh(2025, 9, 22, 11), sh(2025, 9, 22, 11, 30))
    b = desk.dispatched("b", sh(2025, 9, 22, 9), department="水务", grid="310104003002001")
    c = desk.closed(desk.dispatched("c", sh(2025, 9, 22, 9), grid="310104004001001"),
                    sh(2025, 9, 22, 11), sh(2025, 9, 22, 11, 30))
    d = desk.reported("d", sh(2025, 9, 22, 9), source=Source.CITIZEN, grid="310104003001002")
    return [a, b, c, d]


@pytest.mark.parametrize(
    ("dimension", "closure_by_key"),
    [
        # Closure rate per group: a and c closed, b open, d never dispatched (no deadline, so no rate).
        (Dimension.DEPARTMENT, {"": None, "城管执法": 1.0, "水务": 0.0}),
        (Dimension.STREET, {"310104003": 0.5, "310104004": 1.0}),
        (Dimension.COMMUNITY, {"310104003001": 1.0, "310104003002": 0.0, "310104004001": 1.0}),
        (Dimension.GRID, {"310104003001001": 1.0, "310104003001002": None, "310104003002001": 0.0,
                          "310104004001001": 1.0}),
        (Dimension.SOURCE, {"citizen": 1.0, "patrol": 0.5}),
    ],
)
def test_figures_by_groups_cases_by_each_dimension_in_key_order(
    mixed_cases: list[Case], dimension: Dimension, closure_by_key: dict[str, float | None]
) -> None:
    result = figures_by(mixed_cases, MONDAY, dimension)

    assert list(result) == sorted(closure_by_key)
    assert {key: figs.closure_rate for key, figs in result.items()} == closure_by_key


@pytest.mark.parametrize("dimension", list(Dimension))
def test_each_group_gets_the_figures_of_its_own_cases(mixed_cases: list[Case], dimension: Dimension) -> None:
    result = figures_by(mixed_cases, MONDAY, dimension)

    assert sum(f.due for f in result.values()) == figures(mixed_cases, MONDAY).due == 3
    assert sum(f.closed for f in result.values()) == 2


def test_figures_by_without_cases_has_no_groups() -> None:
    assert figures_by([], MONDAY, Dimension.STREET) == {}


# --- periods ------------------------------------------------------------------------------------------------


def test_a_period_includes_its_start_and_excludes_its_end() -> None:
    assert sh(2025, 9, 22) in MONDAY
    assert sh(2025, 9, 22, 23, 59) in MONDAY
    assert sh(2025, 9, 23) not in MONDAY
    assert sh(2025, 9, 21, 23, 59) not in MONDAY
    assert "2025-09-22" not in MONDAY


@pytest.mark.parametrize(
    ("moment", "kind", "start", "end"),
    [
        (sh(2025, 9, 22, 15), PeriodKind.DAY, sh(2025, 9, 22), sh(2025, 9, 23)),
        (sh(2025, 9, 22), PeriodKind.DAY, sh(2025, 9, 22), sh(2025, 9, 23)),
        # 20:00 UTC on Sunday is already 04:00 on Monday in Shanghai.
        (datetime(2025, 9, 21, 20, tzinfo=UTC), PeriodKind.DAY, sh(2025, 9, 22), sh(2025, 9, 23)),
        (sh(2025, 12, 31, 23, 59), PeriodKind.DAY, sh(2025, 12, 31), sh(2026, 1, 1)),
        # Weeks run Monday to Sunday.
        (sh(2025, 9, 24, 12), PeriodKind.WEEK, sh(2025, 9, 22), sh(2025, 9, 29)),
        (sh(2025, 9, 22), PeriodKind.WEEK, sh(2025, 9, 22), sh(2025, 9, 29)),
        (sh(2025, 9, 28, 23, 59), PeriodKind.WEEK, sh(2025, 9, 22), sh(2025, 9, 29)),
        (sh(2026, 1, 1, 12), PeriodKind.WEEK, sh(2025, 12, 29), sh(2026, 1, 5)),
        (sh(2025, 9, 15), PeriodKind.MONTH, sh(2025, 9, 1), sh(2025, 10, 1)),
        (sh(2025, 11, 30, 23), PeriodKind.MONTH, sh(2025, 11, 1), sh(2025, 12, 1)),
        (sh(2025, 12, 31, 23, 59), PeriodKind.MONTH, sh(2025, 12, 1), sh(2026, 1, 1)),
        (sh(2026, 1, 1), PeriodKind.MONTH, sh(2026, 1, 1), sh(2026, 2, 1)),
        (sh(2024, 2, 29, 12), PeriodKind.MONTH, sh(2024, 2, 1), sh(2024, 3, 1)),
        # 16:30 UTC on 30 November is 00:30 on 1 December in Shanghai.
        (datetime(2025, 11, 30, 16, 30, tzinfo=UTC), PeriodKind.MONTH, sh(2025, 12, 1), sh(2026, 1, 1)),
    ],
)
def test_period_containing_finds_the_local_day_week_or_month(
    moment: datetime, kind: PeriodKind, start: datetime, end: datetime
) -> None:
    period = period_containing(moment, kind, SHANGHAI)

    assert (period.start, period.end) == (start, end)
    assert moment in period
