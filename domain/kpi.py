"""Performance figures (评价) as pure functions over case histories.

Each figure counts a cohort of cases tied to the period by the moment that matters for it:
the deadline for the due-based rates, the closing time for closure-based ones, and so on.
A rate with an empty denominator is None ("no data"), never 0 or 1.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum

from domain.cases import Action, Case, CaseState, Source, Tier
from domain.gridcode import GridCode, Level


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open time interval [start, end)."""

    start: datetime
    end: datetime

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= moment < self.end


class PeriodKind(StrEnum):
    """Reporting periods."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def period_containing(moment: datetime, kind: PeriodKind, tz: tzinfo) -> Period:
    """The local day, ISO week (Monday first) or calendar month that contains `moment`."""
    local = moment.astimezone(tz).date()
    if kind is PeriodKind.DAY:
        first, after = local, local + timedelta(days=1)
    elif kind is PeriodKind.WEEK:
        first = local - timedelta(days=local.weekday())
        after = first + timedelta(days=7)
    else:
        first = local.replace(day=1)
        after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return Period(datetime.combine(first, time.min, tz), datetime.combine(after, time.min, tz))


@dataclass(frozen=True, slots=True)
class Figures:
    """The center's performance figures for one group of cases in one period."""

    due: int
    closed: int
    closure_rate: float | None  # 结案率 = closed / (due − suspended)
    on_time_closure_rate: float | None  # 按期结案率 = closed on time / (due − suspended)
    rework_rate: float | None  # 返工率 = cases with rework / closed
    extension_rate: float | None  # 延期率 = extended / due
    timely_handling_rate: float | None  # 处置及时率 = handled before deadline / handled
    grassroots_rate: float | None  # 基层处置率 = closed at community or street level / closed
    first_time_right_rate: float | None  # 责任到位率 = dispatched with no 回退 or 改派 / dispatched
    satisfaction_rate: float | None  # 结果满意率 = satisfied ratings / ratings (citizen cases)
    mean_time_to_file: timedelta | None
    mean_time_to_dispatch: timedelta | None
    mean_time_to_close: timedelta | None


def figures(cases: Iterable[Case], period: Period) -> Figures:
    """Compute every figure for the cases over `period`; voided (注销) cases are invalid and never counted."""
    cases = [c for c in cases if counted_in(c, period)]
    end = period.end

    due = [c for c in cases if c.deadline_at is not None and c.deadline_at in period]
    suspended = [c for c in due if c.state_at(_just_before(end)) is CaseState.SUSPENDED]
    due_closed = [c for c in due if c.closed_at is not None and c.closed_at < end]
    closed_on_time = [c for c in due_closed if _on_time(c)]
    denominator = len(due) - len(suspended)

    closed_in_period = [c for c in cases if c.closed_at is not None and c.closed_at in period]
    handled = [c for c in cases if c.first_handled_at is not None and c.first_handled_at in period]
    dispatched = [c for c in cases if c.dispatched_at is not None and c.dispatched_at in period]
    rated = [c for c in closed_in_period if c.source is Source.CITIZEN and c.satisfied is not None]
    reported = [c for c in cases if c.reported_at in period]

    return Figures(
        due=len(due),
        closed=len(due_closed),
        closure_rate=_ratio(len(due_closed), denominator),
        on_time_closure_rate=_ratio(len(closed_on_time), denominator),
        rework_rate=_ratio(sum(1 for c in closed_in_period if c.rework_count > 0), len(closed_in_period)),
        extension_rate=_ratio(sum(1 for c in due if c.extension_count > 0), len(due)),
        timely_handling_rate=_ratio(sum(1 for c in handled if _handled_in_time(c)), len(handled)),
        grassroots_rate=_ratio(
            sum(1 for c in closed_in_period if c.tier in (Tier.COMMUNITY, Tier.STREET)), len(closed_in_period)
        ),
        first_time_right_rate=_ratio(
            sum(1 for c in dispatched if _first_time_right(c)), len(dispatched)
        ),
        satisfaction_rate=_ratio(sum(1 for c in rated if c.satisfied), len(rated)),
        mean_time_to_file=_mean(c.filed_at - c.reported_at for c in reported if c.filed_at),
        mean_time_to_dispatch=_mean(c.dispatched_at - c.reported_at for c in reported if c.dispatched_at),
        mean_time_to_close=_mean(c.closed_at - c.reported_at for c in reported if c.closed_at),
    )


def counted_in(case: Case, period: Period) -> bool:
    """Whether a figure over `period` can count the case: it is not voided and one of its cohorts' moments is in it."""
    return case.voided_at is None and any(
        moment in period
        for moment in (case.reported_at, case.dispatched_at, case.first_handled_at, case.deadline_at, case.closed_at)
    )


class Dimension(StrEnum):
    """What the figures can be broken down by."""

    DEPARTMENT = "department"
    STREET = "street"
    COMMUNITY = "community"
    GRID = "grid"
    SOURCE = "source"


_KEYS: dict[Dimension, Callable[[Case], str]] = {
    Dimension.DEPARTMENT: lambda c: c.department or "",
    Dimension.STREET: lambda c: GridCode(c.grid_code).prefix(Level.STREET),
    Dimension.COMMUNITY: lambda c: GridCode(c.grid_code).prefix(Level.COMMUNITY),
    Dimension.GRID: lambda c: c.grid_code,
    Dimension.SOURCE: lambda c: c.source.value,
}


def figures_by(cases: Iterable[Case], period: Period, dimension: Dimension) -> dict[str, Figures]:
    """Figures per department, street, community, grid cell or source (undispatched cases group under '')."""
    groups: dict[str, list[Case]] = defaultdict(list)
    key = _KEYS[dimension]
    for case in cases:
        groups[key(case)].append(case)
    return {name: figures(members, period) for name, members in sorted(groups.items())}


def _on_time(case: Case) -> bool:
    assert case.closed_at is not None and case.deadline_at is not None
    return case.closed_at <= case.deadline_at


def _handled_in_time(case: Case) -> bool:
    assert case.first_handled_at is not None
    return case.deadline_at is None or case.first_handled_at <= case.deadline_at


def _first_time_right(case: Case) -> bool:
    return not any(e.action in (Action.REASSIGN, Action.SEND_BACK) for e in case.history)


def _just_before(moment: datetime) -> datetime:
    return moment - timedelta(microseconds=1)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _mean(durations: Iterable[timedelta]) -> timedelta | None:
    values = list(durations)
    return sum(values, timedelta(0)) / len(values) if values else None
