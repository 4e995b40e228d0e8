"""Shared fixtures for the domain tests: the Shanghai SLA calendar and a builder of cases in every state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from domain.cases import Case, CaseState, Source, Tier, report
from domain.sla import ChinaWorkdays, SlaCalendar, SlaTerm, parse_term

SHANGHAI = ZoneInfo("Asia/Shanghai")
FOUR_WORKING_HOURS = parse_term("4h working")


@dataclass(frozen=True)
class Timeline:
    """The moments at which `case_in` moves a case, all on Monday 2025-09-22, an ordinary working day."""

    reported_at: datetime = datetime(2025, 9, 22, 9, 0, tzinfo=SHANGHAI)
    voided_at: datetime = datetime(2025, 9, 22, 9, 2, tzinfo=SHANGHAI)
    filed_at: datetime = datetime(2025, 9, 22, 9, 5, tzinfo=SHANGHAI)
    dispatched_at: datetime = datetime(2025, 9, 22, 9, 10, tzinfo=SHANGHAI)
    suspended_at: datetime = datetime(2025, 9, 22, 10, 10, tzinfo=SHANGHAI)
    handled_at: datetime = datetime(2025, 9, 22, 11, 0, tzinfo=SHANGHAI)
    closed_at: datetime = datetime(2025, 9, 22, 11, 30, tzinfo=SHANGHAI)
    term: SlaTerm = FOUR_WORKING_HOURS  # from 09:10 on this Monday: due at 13:10
    department: str = "城管执法"
    grid_code: str = "310104003001001"


CaseBuilder = Callable[..., Case]


@pytest.fixture(scope="session")
def calendar() -> SlaCalendar:
    """Working hours 08:30–17:30 on China's official working days, in Asia/Shanghai (immutable, so shared)."""
    return SlaCalendar(SHANGHAI, [(time(8, 30), time(17, 30))], ChinaWorkdays())


@pytest.fixture(scope="session")
def case_in(calendar: SlaCalendar) -> CaseBuilder:
    """Build a case in the given state by driving the real state machine along the `Timeline`."""
    timeline = Timeline()

    def build(state: CaseState, *, source: Source = Source.PATROL, tier: Tier = Tier.COMMUNITY) -> Case:
        case = report("case-1", grid_code=timeline.grid_code, category="0501", source=source,
                      at=timeline.reported_at, actor="inspector-7", title="street vendor at the crossing")
        if state is CaseState.REPORTED:
            return case
        if state is CaseState.VOIDED:
            return case.void(timeline.voided_at, "operator-1", reason="duplicate of case-0")
        case = case.file(timeline.filed_at, "operator-1")
        if state is CaseState.FILED:
            return case
        case = case.dispatch(timeline.dispatched_at, "operator-1", department=timeline.department, tier=tier,
                             term=timeline.term, calendar=calendar)
        if state is CaseState.DISPATCHED:
            return case
        if state is CaseState.SUSPENDED:
            return case.suspend(timeline.suspended_at, "dept-lead", reason="waiting for the owner",
                                calendar=calendar)
        case = case.handle(timeline.handled_at, "officer-3", note="vendor moved on")
        if state is CaseState.HANDLED:
            return case
        assert state is CaseState.CLOSED, state
        return case.verify(timeline.closed_at, "inspector-7", passed=True)

    return build
