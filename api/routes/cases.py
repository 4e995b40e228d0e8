"""Grid cases (案件) as the case sink stored them: a filtered, paged list and one case with its timeline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AfterValidator, BaseModel, Field

from api.deps import CityDep, EngineDep, Reader
from domain.cases import CaseState, Source
from domain.epoch import EPOCH
from storage.cases import CaseCursor, CaseSummary, SinkUnavailable, get_case, list_cases

router = APIRouter(prefix="/api/v1", tags=["cases"])

MAX_LIMIT = 500
#: A cursor names a stored report time, so it fits the database's 64-bit integer column.
_CURSOR_MS = range(-(2**63), 2**63)
T = TypeVar("T")

#: Every time the API returns is in UTC, whichever offset the worker wrote it with.
UtcTime = Annotated[datetime, AfterValidator(lambda moment: moment.astimezone(UTC))]


class CaseOut(BaseModel):
    """A case as listed: where it is, what it is, where it stands and its milestones."""

    id: str = Field(description="deterministic case id (the same signals never open a second case)")
    version: int = Field(description="number of events in the case's timeline so far")
    grid_code: str = Field(description="the grid cell (单元网格) code")
    category: str = Field(description="taxonomy code, e.g. 0406 道路积水 waterlogging")
    source: Source = Field(description="where the case came from")
    state: CaseState = Field(description="where the case stands in the closed loop")
    severity: str = Field(description="e.g. normal, or a rainstorm colour (blue, yellow, orange, red)")
    urgent: bool = Field(description="urgent cases run on natural time, day and night")
    title: str
    department: str | None = Field(description="the department holding the case once dispatched (派遣)")
    tier: str | None = Field(description="the level handling it: community, street or district")
    reported_at: UtcTime = Field(description="发现上报")
    filed_at: UtcTime | None = Field(description="立案")
    dispatched_at: UtcTime | None = Field(description="first dispatch (派遣); the SLA clock starts")
    deadline_at: UtcTime | None = Field(description="when the department's time runs out")
    handled_at: UtcTime | None = Field(description="latest 处置 feedback from the department")
    closed_at: UtcTime | None = Field(description="结案")
    voided_at: UtcTime | None = Field(description="注销 (invalid or duplicate)")


class CasePageOut(BaseModel):
    """A page of cases, newest report first."""

    items: list[CaseOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class EvidenceOut(BaseModel):
    """A signal attached to the case: a device reading or a camera snapshot."""

    at: UtcTime
    source_id: str = Field(description="the device or camera")
    summary: str
    ref: str = Field(description="a reference to the reading or snapshot, if any")


class CaseEventOut(BaseModel):
    """One audited step of the case: who did what, when."""

    version: int = Field(description="1 for the report, then one more per step")
    action: str = Field(description="e.g. report, file, dispatch, escalate, handle, verify_pass, attach")
    from_state: CaseState | None = Field(description="null for the report that opened the case")
    to_state: CaseState
    at: UtcTime
    actor: str = Field(description="the operator, department or GridHub component that acted")
    note: str
    data: dict[str, Any] = Field(description="the step's details, e.g. the department and deadline of a dispatch")


class CaseDetailOut(CaseOut):
    """A case with its evidence, its counters and its timeline."""

    first_handled_at: UtcTime | None = Field(description="the department's first 处置 feedback")
    suspended_at: UtcTime | None = Field(description="缓办 since, while suspended")
    rework_count: int = Field(description="核查 failures sent back to the department (返工)")
    extension_count: int = Field(description="deadline extensions (延期)")
    escalation_count: int = Field(description="督办 escalations")
    reassign_count: int = Field(description="改派 to another department")
    send_back_count: int = Field(description="回退 by a department")
    satisfied: bool | None = Field(description="the reporter's rating (评价), if given")
    evidence: list[EvidenceOut]
    timeline: list[CaseEventOut] = Field(description="every event, in version order")


@router.get("/cases")
def cases(
    city: CityDep, engine: EngineDep, caller: Reader,
    grid: Annotated[str | None, Query(
        description="grid code prefix: a district (6 digits), street (9), community (12) or cell")] = None,
    category: Annotated[str | None, Query(description="taxonomy code, e.g. 0406")] = None,
    state: Annotated[CaseState | None, Query(alias="status", description="the case's state")] = None,
    source: Annotated[Source | None, Query(description="where the case came from")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="cases per page")] = 100,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> CasePageOut:
    """Cases newest report first, filtered by every parameter given; page on with `next_cursor`."""
    code_length = city.cells.code_length
    if grid is not None and not (grid.isascii() and grid.isdigit() and len(grid) <= code_length):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"`grid` must be a grid code prefix of up to {code_length} digits (e.g. 310104 for a "
                            f"district), not {grid!r:.40}")
    if category is not None and category not in city.taxonomy:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"`category` {category!r:.40} is not a taxonomy code; known: "
                            f"{', '.join(c.code for c in city.taxonomy)}")
    before = _cursor(cursor) if cursor is not None else None
    scoped = caller.narrow(grid)
    if scoped is None:  # a prefix outside the caller's scope: nothing it may see
        return CasePageOut(items=[], next_cursor=None)
    page = _query(lambda: list_cases(engine, grid_prefix=scoped, category=category, state=state, source=source,
                                     limit=limit, before=before))
    return CasePageOut(items=[_summary(item) for item in page.items],
                       next_cursor=page.next_cursor.encode() if page.next_cursor else None)


@router.get("/cases/{case_id}", responses={404: {"description": "no such case"}})
def case(case_id: str, engine: EngineDep, caller: Reader) -> CaseDetailOut:
    """One case with its evidence and its timeline of audited events."""
    found = _query(lambda: get_case(engine, case_id))
    if found is None or not caller.covers(found[0]["grid_code"]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no case {case_id!r:.80}")
    doc, timeline = found
    return CaseDetailOut.model_validate({**doc, "timeline": timeline})


def _cursor(token: str) -> CaseCursor:
    try:
        before = CaseCursor.decode(token)
    except ValueError:
        before = None
    if before is None or before.reported_ms not in _CURSOR_MS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "`cursor` must be the `next_cursor` of a previous page, unchanged")
    return before


def _query(run: Callable[[], T]) -> T:
    try:
        return run()
    except SinkUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"case database unavailable: {exc}") from None


def _summary(row: CaseSummary) -> CaseOut:
    return CaseOut(
        id=row.id, version=row.version, grid_code=row.grid_code, category=row.category,
        source=Source(row.source), state=CaseState(row.state), severity=row.severity, urgent=row.urgent,
        title=row.title, department=row.department, tier=row.tier, reported_at=_time(row.reported_ms),
        filed_at=_time(row.filed_ms), dispatched_at=_time(row.dispatched_ms), deadline_at=_time(row.deadline_ms),
        handled_at=_time(row.handled_ms), closed_at=_time(row.closed_ms), voided_at=_time(row.voided_ms),
    )


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else EPOCH + timedelta(milliseconds=ms)
