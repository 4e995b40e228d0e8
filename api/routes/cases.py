"""Grid cases (案件) as the case sink stored them: a filtered, paged list and one case with its timeline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from api.auth import Principal, Right
from api.commands import raise_for
from api.deps import BusDep, CategoryFilter, CityDep, Commander, EngineDep, EvidenceDep, GridFilter, Reader
from api.routes.telemetry import EARLIEST, LATEST, parse_duration_ms
from domain.case_records import CaseCommand, Command
from domain.cases import ALLOWED_FROM, Action, CaseState, Severity, Source
from domain.epoch import EPOCH
from domain.sla import Clock
from storage.cases import CaseCursor, CaseFilter, CaseOrder, CaseSummary, SinkUnavailable, get_case, list_cases
from storage.evidence import DirectoryEvidence

router = APIRouter(prefix="/api/v1", tags=["cases"])

MAX_LIMIT = 500
#: A cursor names a stored report time, so it fits the database's 64-bit integer column.
_CURSOR_MS = range(-(2**63), 2**63)
T = TypeVar("T")
TierName = Literal["community", "street", "district"]

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
    allowed_actions: list[str] = Field(description="what the caller may do to the case now: the actions of "
                                                   "/actions its state allows and its role grants, and confirm / "
                                                   "dismiss for a camera detection awaiting review")


@router.get("/cases", response_model=CasePageOut)
def cases(
    city: CityDep, engine: EngineDep, caller: Reader, grid: GridFilter, category: CategoryFilter,
    state: Annotated[CaseState | None, Query(alias="status", description="the case's state")] = None,
    source: Annotated[Source | None, Query(description="where the case came from")] = None,
    department: Annotated[str | None, Query(max_length=64, description="the department holding it")] = None,
    tier: Annotated[TierName | None, Query(description="the level handling it")] = None,
    severity: Annotated[Severity | None, Query(description="e.g. urgent, or a rainstorm colour")] = None,
    overdue: Annotated[bool, Query(description="only dispatched cases past their deadline now")] = False,
    reported_from: Annotated[datetime | None, Query(alias="from", description="reported at or after")] = None,
    reported_to: Annotated[datetime | None, Query(alias="to", description="reported before (RFC 3339)")] = None,
    sort: Annotated[CaseOrder, Query(description="-reported (newest first), reported, deadline, -deadline (only "
                                                 "cases with a deadline)")] = (
        CaseOrder.NEWEST),
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="cases per page")] = 100,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page (same sort)")] = None,
) -> Response:
    """Cases in the caller's scope, filtered by every parameter given, sorted; page on with `next_cursor`."""
    for name, moment in (("from", reported_from), ("to", reported_to)):
        if moment is not None and (moment.tzinfo is None or not EARLIEST <= moment <= LATEST):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"`{name}` must be an RFC 3339 time with its offset between {EARLIEST.isoformat()} "
                                f"and {LATEST.isoformat()}")
    after = _cursor(cursor) if cursor is not None else None
    scoped = caller.narrow(grid)
    if scoped is None:  # a prefix outside the caller's scope: nothing it may see
        return _json({"items": [], "next_cursor": None})
    cell = len(scoped) == city.cells.code_length
    where = CaseFilter(
        grid_prefix=None if cell else scoped, grid_code=scoped if cell else None, category=category, state=state,
        source=source, department=department, tier=tier, severity=severity,
        overdue_at_ms=_ms(datetime.now(UTC)) if overdue else None,
        reported_from_ms=_ms(reported_from) if reported_from else None,
        reported_to_ms=_ms(reported_to) if reported_to else None,
    )
    page = _query(lambda: list_cases(engine, where, order=sort, limit=limit, after=after))
    # The busiest route: rows go straight to JSON in the shape of CasePageOut (its schema is the documented
    # one; tests/test_api_cases.py checks the two agree), without building and re-validating a model per case.
    return _json({"items": [_summary_doc(item) for item in page.items],
                  "next_cursor": page.next_cursor.encode() if page.next_cursor else None})


@router.get("/cases/{case_id}", responses={404: {"description": "no such case in the caller's scope"}})
def case(case_id: str, engine: EngineDep, caller: Reader, response: Response) -> CaseDetailOut:
    """One case with its evidence and its timeline of audited events; the ETag is its version."""
    doc, timeline = _scoped_case(engine, caller, case_id)
    response.headers["ETag"] = f'"{doc["version"]}"'
    return CaseDetailOut.model_validate({**doc, "timeline": timeline,
                                         "allowed_actions": allowed_actions(caller, doc["state"], doc["source"])})


class ActionName(StrEnum):
    """The steps of the closed loop a commander takes on a case (reviewing detections is /detections)."""

    FILE = "file"  # 立案
    DISPATCH = "dispatch"  # 派遣
    REASSIGN = "reassign"  # 改派
    RETURN = "return"  # 回退, with a reason; the case goes one level up to be dispatched again
    ESCALATE = "escalate"  # 督办, to the next level
    HANDLE = "handle"  # 处置反馈, optionally with a photo
    VERIFY_PASS = "verify_pass"  # 核查通过: the case is closed (结案)
    VERIFY_FAIL = "verify_fail"  # 核查不通过: back to the department (返工)
    VOID = "void"  # 注销
    SUSPEND = "suspend"  # 缓办
    RESUME = "resume"
    EXTEND = "extend"  # 延期


#: Actions whose note is the reason the state machine requires.
NEEDS_REASON = frozenset({ActionName.RETURN, ActionName.ESCALATE, ActionName.VERIFY_FAIL, ActionName.VOID,
                          ActionName.SUSPEND, ActionName.EXTEND})


class ActionIn(BaseModel):
    """One action on a case, and what it needs."""

    model_config = ConfigDict(extra="forbid")

    action: ActionName
    expected_version: int | None = Field(None, ge=1, description="the version you saw (or send If-Match)")
    note: str = Field("", max_length=2000, description="the reason, for return, escalate, verify_fail, void, "
                                                       "suspend and extend; a remark otherwise")
    department: str | None = Field(None, min_length=1, max_length=64, description="dispatch (default: routing "
                                                                                  "table), reassign (required)")
    tier: TierName | None = Field(None, description="dispatch: the level to handle it")
    extend_by: str | None = Field(None, description="extend: e.g. 2h, 1d (required for extend)")
    clock: Clock | None = Field(None, description="extend: working or natural time (default: the case's own)")
    photo: str | None = Field(None, max_length=200, description="handle: a reference from POST /api/v1/photos")


class ActionOut(BaseModel):
    """What the stream worker did with the action."""

    case_id: str
    version: int = Field(description="the case's version after the action")
    state: CaseState
    outcome: str


@router.post("/cases/{case_id}/actions", responses={
    404: {"description": "no such case in the caller's scope"},
    409: {"description": "the state machine does not allow this action now"},
    412: {"description": "the case changed since `expected_version` (or If-Match)"},
    428: {"description": "no expected version given"},
})
async def act(
    case_id: str, body: ActionIn, engine: EngineDep, caller: Commander, bus: BusDep, evidence: EvidenceDep,
    response: Response, if_match: Annotated[str | None, Header()] = None,
) -> ActionOut:
    """Apply an action through the stream worker (the single writer of cases) and answer with its outcome."""
    expected = _expected_version(body.expected_version, if_match)
    doc, _ = await asyncio.to_thread(_scoped_case, engine, caller, case_id)
    if body.action in NEEDS_REASON and not body.note.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{body.action.value} needs a reason in `note`")
    params = _params(body, evidence)
    command = CaseCommand(case_id, doc["grid_code"], Command(body.action.value), caller.actor, datetime.now(UTC),
                          body.note, expected_version=expected, params=params)
    reply = await bus.send(command)
    raise_for(reply)
    assert reply.state is not None  # an applied command always names the case's new state
    response.headers["ETag"] = f'"{reply.version}"'
    return ActionOut(case_id=reply.case_id, version=reply.version, state=reply.state, outcome=reply.outcome.value)


#: The domain's action behind each of ours, whose allowed states say when it may be taken.
_DOMAIN_ACTION = {
    ActionName.FILE: Action.FILE, ActionName.DISPATCH: Action.DISPATCH, ActionName.REASSIGN: Action.REASSIGN,
    ActionName.RETURN: Action.SEND_BACK, ActionName.ESCALATE: Action.ESCALATE, ActionName.HANDLE: Action.HANDLE,
    ActionName.VERIFY_PASS: Action.VERIFY_PASS, ActionName.VERIFY_FAIL: Action.VERIFY_FAIL,
    ActionName.VOID: Action.VOID, ActionName.SUSPEND: Action.SUSPEND, ActionName.RESUME: Action.RESUME,
    ActionName.EXTEND: Action.EXTEND,
}


def allowed_actions(caller: Principal, state: str, source: str) -> list[str]:
    """What the caller may do to a case in `state` now, in the order of the closed loop."""
    now = CaseState(state)
    allowed = []
    if caller.may(Right.REVIEW) and now is CaseState.REPORTED and source == Source.CAMERA.value:
        allowed += ["confirm", "dismiss"]
    if caller.may(Right.ACT):
        allowed += [name.value for name, action in _DOMAIN_ACTION.items() if now in ALLOWED_FROM[action]]
    return allowed


def _expected_version(given: int | None, if_match: str | None) -> int:
    if given is not None:
        return given
    tag = (if_match or "").strip().removeprefix("W/").strip('"')
    if tag.isdigit():
        return int(tag)
    raise HTTPException(status.HTTP_428_PRECONDITION_REQUIRED,
                        "say which version of the case you act on: `expected_version` or an If-Match ETag")


def _params(body: ActionIn, evidence: DirectoryEvidence) -> dict[str, str]:
    params: dict[str, str] = {}
    if body.department:
        params["department"] = body.department
    if body.tier:
        params["tier"] = body.tier
    if body.action is ActionName.EXTEND:
        ms = parse_duration_ms(body.extend_by or "")
        if not ms or ms % 1000:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                "extend needs `extend_by`, a duration such as 2h or 1d")
        params["by_s"] = str(ms // 1000)
    if body.clock:
        params["clock"] = body.clock.value
    if body.photo:
        if body.action is not ActionName.HANDLE:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "only `handle` takes a photo")
        if not body.photo.startswith("photos/") or evidence.read(body.photo) is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                "`photo` must be a reference returned by POST /api/v1/photos")
        params["photo"] = body.photo
    return params


def _scoped_case(engine: Engine, caller: Principal, case_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    found = _query(lambda: get_case(engine, case_id))
    if found is None or not caller.covers(found[0]["grid_code"]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no case {case_id!r:.80}")
    return found


def _cursor(token: str) -> CaseCursor:
    try:
        after = CaseCursor.decode(token)
    except ValueError:
        after = None
    if after is None or after.value not in _CURSOR_MS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "`cursor` must be the `next_cursor` of a previous page, unchanged")
    return after


def _query(run: Callable[[], T]) -> T:
    try:
        return run()
    except SinkUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"case database unavailable: {exc}") from None


def _summary_doc(row: CaseSummary) -> dict[str, Any]:
    doc = {field: getattr(row, field) for field in _SUMMARY_FIELDS}
    for name, column in _TIME_FIELDS:
        ms = getattr(row, column)
        # fromtimestamp rounds to the microsecond: a stored millisecond comes back exact.
        doc[name] = None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
    return doc


_SUMMARY_FIELDS = ("id", "version", "grid_code", "category", "source", "state", "severity", "urgent", "title",
                   "department", "tier")
_TIME_FIELDS = tuple((f"{name}_at", f"{name}_ms")
                     for name in ("reported", "filed", "dispatched", "deadline", "handled", "closed", "voided"))


def _json(document: dict[str, Any]) -> Response:
    return Response(orjson.dumps(document, option=orjson.OPT_UTC_Z), media_type="application/json")


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else EPOCH + timedelta(milliseconds=ms)


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)
