"""Performance figures (评价指标) per department, street, community, grid cell or source, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from api.deps import CityDep, EngineDep, GridFilter, Reader
from api.routes.telemetry import EARLIEST, LATEST
from domain.cases import Case
from domain.city import City
from domain.epoch import EPOCH
from domain.gridcode import Level
from domain.kpi import Dimension, Figures, Period, PeriodKind, counted_in, figures, figures_by, period_containing
from storage.case_history import load_cases
from storage.cases import SinkUnavailable

router = APIRouter(prefix="/api/v1", tags=["kpis"])

MAX_PERIODS = 31
#: Cases are read for at most this much time at once: a daily trend in one read, while a long weekly or monthly
#: one holds about a month of cases at a time (whole cases with their timelines take some 10 kB each).
LOAD_SPAN = timedelta(days=31)

_LEVELS = {Dimension.STREET: Level.STREET, Dimension.COMMUNITY: Level.COMMUNITY, Dimension.GRID: Level.CELL}
_SOURCE_NAMES = {"sensor": "传感器 sensor", "camera": "视频 camera", "citizen": "市民 citizen",
                 "patrol": "网格员 patrol"}
_UNDISPATCHED = "未派遣 not dispatched"


class Format(StrEnum):
    """How the figures are returned."""

    JSON = "json"
    CSV = "csv"


class FiguresOut(BaseModel):
    """The figures of one group of cases over one period; a rate is null when its denominator is empty."""

    due: int = Field(description="应结案数: cases whose deadline falls in the period")
    closed: int = Field(description="已结案数: of those, the ones closed by the end of the period")
    closure_rate: float | None = Field(description="结案率: closed / (due − suspended at the end)")
    on_time_closure_rate: float | None = Field(description="按期结案率: closed by the deadline / (due − suspended)")
    rework_rate: float | None = Field(description="返工率: closed in the period after at least one 返工 / closed")
    extension_rate: float | None = Field(description="延期率: due cases extended at least once / due")
    timely_handling_rate: float | None = Field(description="处置及时率: first handled by the deadline / handled")
    grassroots_rate: float | None = Field(description="基层处置率: closed at community or street level / closed")
    first_time_right_rate: float | None = Field(description="责任到位率: dispatched with no 回退 or 改派 / dispatched")
    satisfaction_rate: float | None = Field(description="结果满意率: satisfied ratings / ratings (citizen cases)")
    mean_time_to_file_s: float | None = Field(description="平均立案时长: report → 立案, cases reported in the period")
    mean_time_to_dispatch_s: float | None = Field(description="平均派遣时长: report → first 派遣")
    mean_time_to_close_s: float | None = Field(description="平均结案时长: report → 结案")


class GroupOut(BaseModel):
    """One group's figures."""

    key: str = Field(description="the department, street, community or cell code, or the source; "
                                 "'' for cases not dispatched yet when grouped by department")
    name: str = Field(description="the department, street, community or cell name")
    figures: FiguresOut


class PeriodOut(BaseModel):
    """The figures of one period: per group and in total."""

    label: str = Field(description="the local day (2025-09-22), ISO week (2025-W39) or month (2025-09)")
    start: datetime = Field(description="first moment of the period, in UTC")
    end: datetime = Field(description="first moment after the period, in UTC")
    groups: list[GroupOut] = Field(description="in key order; empty without `by`")
    total: FiguresOut = Field(description="合计: every case in scope")


class KpisOut(BaseModel):
    """Figures over consecutive periods, oldest first, for the cases under `scope`."""

    by: Dimension | None
    period: PeriodKind
    timezone: str = Field(description="the SLA calendar's time zone, in which days, weeks and months are reckoned")
    scope: str | None = Field(description="the grid code prefix counted: the caller's scope narrowed by `grid`; "
                                          "null when `grid` is outside it (nothing counted)")
    periods: list[PeriodOut]


#: CSV columns: bilingual header, and the cell of a row (period label, group key, group name, figures).
_COLUMNS: list[tuple[str, Callable[[FiguresOut], object]]] = [
    ("应结案数 due", lambda f: f.due),
    ("已结案数 closed", lambda f: f.closed),
    ("结案率 closure_rate", lambda f: f.closure_rate),
    ("按期结案率 on_time_closure_rate", lambda f: f.on_time_closure_rate),
    ("返工率 rework_rate", lambda f: f.rework_rate),
    ("延期率 extension_rate", lambda f: f.extension_rate),
    ("处置及时率 timely_handling_rate", lambda f: f.timely_handling_rate),
    ("基层处置率 grassroots_rate", lambda f: f.grassroots_rate),
    ("责任到位率 first_time_right_rate", lambda f: f.first_time_right_rate),
    ("结果满意率 satisfaction_rate", lambda f: f.satisfaction_rate),
    ("平均立案时长(秒) mean_time_to_file_s", lambda f: f.mean_time_to_file_s),
    ("平均派遣时长(秒) mean_time_to_dispatch_s", lambda f: f.mean_time_to_dispatch_s),
    ("平均结案时长(秒) mean_time_to_close_s", lambda f: f.mean_time_to_close_s),
]
_CSV_HEADER = ["期间 period", "开始 start", "结束 end", "维度 by", "分组 group", "名称 name",
               *(title for title, _ in _COLUMNS)]


@router.get("/kpis", response_model=KpisOut,
            responses={200: {"content": {"text/csv": {}}, "description": "the figures (CSV with `format=csv`)"}})
def kpis(
    city: CityDep, engine: EngineDep, caller: Reader, grid: GridFilter,
    by: Annotated[Dimension | None, Query(description="group by; without it only the total")] = None,
    period: Annotated[PeriodKind, Query(description="local day, ISO week or calendar month")] = PeriodKind.DAY,
    at: Annotated[str | None, Query(description="a date (2025-09-22) or RFC 3339 time in the last period; "
                                                "default now")] = None,
    periods: Annotated[int, Query(ge=1, le=MAX_PERIODS, description="how many periods, ending with the one "
                                                                     "containing `at`")] = 1,
    output: Annotated[Format, Query(alias="format", description="json, or csv for a spreadsheet")] = Format.JSON,
) -> Response | KpisOut:
    """结案率, 按期结案率, 返工率 and the other figures per group and in total, over one or more periods."""
    tz = city.calendar.tz
    spans = _periods(_moment(at, tz), period, periods, tz)
    scope = caller.narrow(grid)
    names = _namer(city, by)
    results = []
    for batch in _batches(spans):
        cases = _load(engine, scope, batch[0].start, batch[-1].end)
        results += [_period(span, _label(span, period, tz), [c for c in cases if counted_in(c, span)], by, names)
                    for span in batch]
    result = KpisOut(by=by, period=period, timezone=str(tz), scope=scope, periods=results)
    return _csv(result) if output is Format.CSV else result


def _batches(spans: list[Period]) -> Iterator[list[Period]]:
    """Consecutive periods in runs of at most `LOAD_SPAN`, each run's cases read at once."""
    batch: list[Period] = []
    for span in spans:
        if batch and span.end - batch[0].start > LOAD_SPAN:
            yield batch
            batch = []
        batch.append(span)
    yield batch


def _load(engine: Engine, scope: str | None, start: datetime, end: datetime) -> list[Case]:
    if scope is None:  # a prefix outside the caller's scope: nothing it may see
        return []
    try:
        return load_cases(engine, grid_prefix=scope, since_ms=_ms(start), until_ms=_ms(end))
    except SinkUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"case database unavailable: {exc}") from None


def _period(span: Period, label: str, counted: list[Case], by: Dimension | None,
            names: Callable[[str], str]) -> PeriodOut:
    """The figures of one period over the cases it counts: a group appears when one of its cases is counted."""
    return PeriodOut(
        label=label, start=span.start.astimezone(UTC), end=span.end.astimezone(UTC),
        groups=[GroupOut(key=key, name=names(key), figures=_out(group))
                for key, group in (figures_by(counted, span, by) if by else {}).items()],
        total=_out(figures(counted, span)),
    )


def _moment(at: str | None, tz: tzinfo) -> datetime:
    if at is None:
        return datetime.now(UTC)
    moment: datetime | None = None
    with suppress(ValueError):
        # Noon rather than midnight: on a day the clocks change, local midnight may not exist.
        moment = datetime.combine(date.fromisoformat(at), time(12), tz)
    if moment is None:
        with suppress(ValueError):
            moment = datetime.fromisoformat(at)
    # Figures start with the epoch (like every stored time) and a period must end before year 9999 ends.
    if moment is not None and moment.tzinfo is not None and EARLIEST + timedelta(days=62) <= moment <= LATEST:
        return moment
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                        f"`at` must be a date (2025-09-22) or an RFC 3339 time with its offset "
                        f"(2025-09-22T10:00:00+08:00) after 1970-03, not {at!r:.40}")


def _periods(moment: datetime, kind: PeriodKind, count: int, tz: tzinfo) -> list[Period]:
    """The `count` periods of `kind` ending with the one containing `moment`, oldest first."""
    try:
        spans = [period_containing(moment, kind, tz)]
        while len(spans) < count:
            spans.append(period_containing(spans[-1].start - timedelta(microseconds=1), kind, tz))
    except (ValueError, OverflowError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"`at` {moment.isoformat()} with {count} periods of a {kind.value} reaches outside "
                            f"the calendar") from None
    return spans[::-1]


def _namer(city: City, by: Dimension | None) -> Callable[[str], str]:
    """How a group's key reads: the name of its street, community or cell, the source, the department."""
    level = _LEVELS.get(by) if by else None
    if level is not None:
        areas = city.cells.areas(level)
        return lambda key: areas.get(key, key)
    if by is Dimension.SOURCE:
        return lambda key: _SOURCE_NAMES.get(key, key)
    return lambda key: key or _UNDISPATCHED


def _label(span: Period, kind: PeriodKind, tz: tzinfo) -> str:
    first = span.start.astimezone(tz).date()
    if kind is PeriodKind.DAY:
        return first.isoformat()
    if kind is PeriodKind.WEEK:
        year, week, _ = first.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{first.year}-{first.month:02d}"


def _out(result: Figures) -> FiguresOut:
    return FiguresOut(
        due=result.due, closed=result.closed, closure_rate=result.closure_rate,
        on_time_closure_rate=result.on_time_closure_rate, rework_rate=result.rework_rate,
        extension_rate=result.extension_rate, timely_handling_rate=result.timely_handling_rate,
        grassroots_rate=result.grassroots_rate, first_time_right_rate=result.first_time_right_rate,
        satisfaction_rate=result.satisfaction_rate, mean_time_to_file_s=_seconds(result.mean_time_to_file),
        mean_time_to_dispatch_s=_seconds(result.mean_time_to_dispatch),
        mean_time_to_close_s=_seconds(result.mean_time_to_close),
    )


def _csv(result: KpisOut) -> Response:
    """One row per (period, group), then the period's total; empty cells for no data."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(_CSV_HEADER)
    for span in result.periods:
        where = [span.label, span.start.isoformat(), span.end.isoformat()]
        for group in span.groups:
            writer.writerow([*where, result.by, group.key, group.name, *_cells(group.figures)])
        writer.writerow([*where, "total", "", "合计 total", *_cells(span.total)])
    last = result.periods[-1].label
    filename = f"gridhub-kpis-{result.by or 'total'}-{result.period.value}-{last}.csv"
    # The byte-order mark makes spreadsheet programs read the Chinese headers as UTF-8.
    return Response("\ufeff" + text.getvalue(), media_type="text/csv; charset=utf-8",
                     headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _cells(values: FiguresOut) -> list[object]:
    return ["" if (value := cell(values)) is None else value for _, cell in _COLUMNS]


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else round(duration.total_seconds(), 3)


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)
