"""The review queue (审核): camera detections awaiting an operator's confirmation, and the operator's decisions.

A detection below the auto-filing confidence opens a case in state `reported` with the camera's snapshots as
evidence. Confirming it files the case (立案) and the routing table dispatches it; dismissing it voids it (注销)
with a reason, and may silence the same camera zone for a while. A dismissal as "not a stall" or "not dust"
may also teach the camera's detector for a while (`teach_for_s`): a mask over the stall's box, or a higher bar
for dust in that zone (`domain.detector_feedback`). An operator can take back their latest decision within the
undo window, lesson and all. Every decision is a command to the stream worker, like any case action; a lesson
goes to the detectors on `gridhub.detector-feedback`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal
from api.commands import raise_for
from api.deps import BusDep, CityDep, EngineDep, GridFilter, Reader, Reviewer
from api.routes.cases import MAX_LIMIT, ActionOut, UtcTime, _cursor, _query, _scoped_case
from core import kafka
from domain.case_records import CaseCommand, Command, CommandReply
from domain.cases import CaseState, Source
from domain.detections import DetectionKind
from domain.detector_feedback import LESSON_FOR, Lesson, LessonKind, encode_lesson
from storage.cases import CaseFilter, CaseOrder, case_docs, count_cases, list_cases

router = APIRouter(prefix="/api/v1", tags=["review"])

DECISION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such detection in the caller's scope"},
    409: {"description": "it is no longer awaiting review"},
    412: {"description": "it changed since `expected_version`"},
}

log = logging.getLogger("gridhub.api.review")

#: Longest suppression of a camera zone, or lesson to its detector, a dismissal may ask for: a week.
MAX_SUPPRESS_S = 7 * 24 * 3600
#: The reason a dismissal must give to teach the detector of each kind.
TEACHING_REASON = {DetectionKind.STALL: "not_stall", DetectionKind.DUST: "not_dust"}
#: A stall's mask reaches this share of the box's size beyond it on every side: the same stall set up again is
#: rarely in exactly the same place.
MASK_MARGIN = 0.25


class SnapshotOut(BaseModel):
    """A snapshot of the detection, with the box and zone drawn on it."""

    at: UtcTime
    url: str = Field(description="GET it with the same bearer token (image/jpeg)")
    phase: str = Field(description="start, update or end of the detection")


class DetectionOut(BaseModel):
    """A camera detection awaiting review, as its case holds it."""

    case_id: str
    version: int = Field(description="send it back as `expected_version` with the decision")
    grid_code: str
    category: str = Field(description="taxonomy code: 0501 vending, 0504 shop spill-out, 0302 dust")
    kind: str = Field(description="stall or dust")
    camera_id: str
    zone_id: str
    zone_kind: str | None = Field(description="no_vending, shopfront or construction")
    zone_polygon: list[list[float]] = Field(description="the zone in source pixels")
    frame_size: list[int] = Field(description="[width, height] of the source frame the polygon and box are in")
    confidence: float = Field(description="the highest confidence of its phases so far")
    bbox: list[int] | None = Field(description="[x, y, w, h] of the stall in source pixels, from the latest phase")
    reported_at: UtcTime
    title: str
    snapshots: list[SnapshotOut] = Field(description="oldest first; the box is drawn on each")


class DetectionPageOut(BaseModel):
    """Pending detections, oldest first (the order an operator works through them)."""

    items: list[DetectionOut]
    next_cursor: str | None
    remaining: int = Field(description="pending detections in the caller's scope, this page included")


class DecisionIn(BaseModel):
    """A decision on a pending detection."""

    model_config = ConfigDict(extra="forbid")

    expected_version: int = Field(ge=1, description="the version the operator saw")
    note: str = Field("", max_length=2000, description="a remark (confirm) or the reason (dismiss, required)")
    reason: Literal["not_stall", "not_dust", "licensed", "duplicate", "other"] | None = Field(
        None, description="dismiss: the reason from the console's short list")
    suppress_for_s: int | None = Field(None, ge=60, le=MAX_SUPPRESS_S,
                                       description="dismiss: ignore new detections in the same camera zone this long")
    teach_for_s: int | None = Field(None, ge=60, le=MAX_SUPPRESS_S, description=(
        "dismiss with reason not_stall or not_dust: teach the camera's detector this long — a stall's box is "
        "masked, or dust in the zone must be stronger than this detection to be reported"))


class DecisionOut(ActionOut):
    """What the stream worker did with the decision, and what the detector was taught."""

    taught_until: UtcTime | None = Field(None, description="when the lesson to the detector ends, if one was sent")
    teaching_error: str | None = Field(None, description="why the lesson could not be sent (the decision stands)")


@router.get("/detections")
def detections(
    engine: EngineDep, city: CityDep, caller: Reader,
    grid: GridFilter,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> DetectionPageOut:
    """Camera detections awaiting review in the caller's scope, oldest first, with their snapshots."""
    scoped = caller.narrow(grid)
    if scoped is None:
        return DetectionPageOut(items=[], next_cursor=None, remaining=0)
    where = CaseFilter(grid_prefix=scoped, source=Source.CAMERA.value, state=CaseState.REPORTED.value)
    after = _cursor(cursor) if cursor is not None else None
    page = _query(lambda: list_cases(engine, where, order=CaseOrder.OLDEST, limit=limit, after=after))
    docs = _query(lambda: case_docs(engine, [item.id for item in page.items]))
    remaining = _query(lambda: count_cases(engine, where))
    items = [_detection(docs[item.id], city) for item in page.items if item.id in docs]
    return DetectionPageOut(items=items, next_cursor=page.next_cursor.encode() if page.next_cursor else None,
                            remaining=remaining)


@router.post("/detections/{case_id}/confirm", responses=DECISION_RESPONSES)
async def confirm(case_id: str, body: DecisionIn, request: Request, engine: EngineDep, caller: Reviewer,
                  bus: BusDep) -> DecisionOut:
    """It is real: file the case (立案); the routing table dispatches it."""
    if body.teach_for_s is not None or body.reason is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "`reason` and `teach_for_s` go with a dismissal")
    reply, _ = await _decide(request, engine, caller, bus, case_id, Command.CONFIRM, body, {})
    return DecisionOut(**_out(reply).model_dump())


@router.post("/detections/{case_id}/dismiss", responses=DECISION_RESPONSES)
async def dismiss(case_id: str, body: DecisionIn, request: Request, engine: EngineDep, caller: Reviewer,
                  bus: BusDep) -> DecisionOut:
    """It is not: void the case (注销) with the reason, optionally silencing the camera zone for a while and
    teaching its detector (`teach_for_s`)."""
    if not body.note.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a dismissal needs the reason in `note`")
    params = {"suppress_s": str(body.suppress_for_s)} if body.suppress_for_s else {}
    doc, _ = await asyncio.to_thread(_scoped_case, engine, caller, case_id)
    # A case that is no camera detection gets _decide's 404, whatever it asks to teach.
    lesson = _lesson(doc, body) if body.teach_for_s is not None and doc["source"] == Source.CAMERA.value else None
    reply, _ = await _decide(request, engine, caller, bus, case_id, Command.DISMISS, body, params, lesson)
    out = DecisionOut(**_out(reply).model_dump())
    if lesson is not None:
        error = await _send_lesson(bus, lesson)
        out.taught_until, out.teaching_error = (None, error) if error else (_time(lesson.until_ms), None)
    return out


@router.post("/detections/undo", responses={
    404: {"description": "the caller has no decision to undo"},
    409: {"description": "the decision is older than the undo window, or the case moved on since"},
})
async def undo(request: Request, engine: EngineDep, caller: Reviewer, bus: BusDep) -> ActionOut:
    """Take back the caller's latest decision (confirm or dismiss) within the undo window: back to pending."""
    last: tuple[str, str, int, Lesson | None] | None = request.app.state.last_decisions.get(caller.token_id)
    if last is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no decision of yours to undo (since this API started)")
    case_id, grid_code, version, lesson = last
    reply = await bus.send(CaseCommand(case_id, grid_code, Command.UNDO, caller.actor, datetime.now(UTC),
                                       expected_version=version))
    raise_for(reply)
    request.app.state.last_decisions.pop(caller.token_id, None)
    if lesson is not None:
        error = await _send_lesson(bus, lesson.withdrawal())
        if error:
            log.error("case %s: the detector's lesson could not be withdrawn (%s); it ends by itself at %s",
                      case_id, error, _time(lesson.until_ms).isoformat())
    return _out(reply)


async def _decide(request: Request, engine: EngineDep, caller: Principal, bus: BusDep, case_id: str,
                  verb: Command, body: DecisionIn, params: dict[str, str],
                  lesson: Lesson | None = None) -> tuple[CommandReply, dict[str, Any]]:
    doc, _ = await asyncio.to_thread(_scoped_case, engine, caller, case_id)
    if doc["source"] != Source.CAMERA.value:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"case {case_id!r:.80} is not a camera detection")
    reply = await bus.send(CaseCommand(case_id, doc["grid_code"], verb, caller.actor, datetime.now(UTC), body.note,
                                       expected_version=body.expected_version, params=params))
    raise_for(reply)
    request.app.state.last_decisions[caller.token_id] = (case_id, doc["grid_code"], reply.version, lesson)
    return reply, doc


def _lesson(doc: dict[str, Any], body: DecisionIn) -> Lesson:
    """What dismissing this detection with `body` teaches its detector; 422 if it cannot teach anything."""
    assert body.teach_for_s is not None
    detail = _camera_detail(doc)
    try:
        kind = DetectionKind(detail.get("kind", ""))
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"case {doc['id']} holds no camera detection to teach from") from None
    if body.reason != TEACHING_REASON[kind]:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"teach_for_s needs the reason {TEACHING_REASON[kind]} for a {kind.value} detection")
    until_ms = int((datetime.now(UTC) + timedelta(seconds=body.teach_for_s)).timestamp() * 1000)
    confidences = [float(e["detail"].get("confidence", 0)) for e in doc["evidence"] if e.get("detail", {}).get("kind")]
    bbox = None
    if LESSON_FOR[kind] is LessonKind.MASK:
        if not detail.get("bbox"):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"case {doc['id']}: the detection has no box to mask")
        x, y, w, h = (int(v) for v in detail["bbox"].split(","))
        dx, dy = round(w * MASK_MARGIN), round(h * MASK_MARGIN)
        bbox = (max(0, x - dx), max(0, y - dy), w + 2 * dx, h + 2 * dy)
    return Lesson(doc["id"], detail["camera_id"], detail["zone_id"], kind, LESSON_FOR[kind], until_ms, bbox,
                  min(1.0, max(confidences, default=0.0)))


async def _send_lesson(bus: BusDep, lesson: Lesson) -> str | None:
    """Send a lesson to the detectors; what went wrong, if it could not be sent."""
    try:
        await bus.publish(kafka.DETECTOR_FEEDBACK, lesson.camera_id.encode(), encode_lesson(lesson))
    except Exception as exc:  # the decision stands without the lesson: say so, do not fail the request
        log.warning("case %s: the lesson to camera %s's detector was not sent: %s", lesson.lesson_id,
                    lesson.camera_id, exc)
        return f"not sent to the detectors: {exc}"
    return None


def _time(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


def _camera_detail(doc: dict[str, Any]) -> dict[str, Any]:
    """The detail of the case's latest camera evidence (camera, zone, kind, box, confidence), or {}."""
    details = [e["detail"] for e in doc["evidence"] if e.get("detail", {}).get("camera_id")]
    return details[-1] if details else {}


def _out(reply: CommandReply) -> ActionOut:
    assert reply.state is not None  # an applied command always names the case's new state
    return ActionOut(case_id=reply.case_id, version=reply.version, state=reply.state, outcome=reply.outcome.value)


def _detection(doc: dict[str, Any], city: CityDep) -> DetectionOut:
    camera_evidence = [(i, e) for i, e in enumerate(doc["evidence"]) if e.get("detail", {}).get("camera_id")]
    detail = _camera_detail(doc)
    camera = city.registry.cameras.get(detail.get("camera_id", ""))
    zone = next((z for z in camera.zones if z.id == detail.get("zone_id")), None) if camera else None
    bbox = [int(v) for v in detail["bbox"].split(",")] if detail.get("bbox") else None
    return DetectionOut(
        case_id=doc["id"], version=doc["version"], grid_code=doc["grid_code"], category=doc["category"],
        kind=detail.get("kind", ""), camera_id=detail.get("camera_id", ""), zone_id=detail.get("zone_id", ""),
        zone_kind=zone.kind.value if zone else None,
        zone_polygon=[[x, y] for x, y in zone.polygon] if zone else [],
        frame_size=[camera.width, camera.height] if camera else [],
        confidence=max((float(e["detail"].get("confidence", 0)) for _, e in camera_evidence), default=0.0),
        bbox=bbox, reported_at=doc["reported_at"], title=doc["title"],
        snapshots=[SnapshotOut(at=e["at"], url=f"/api/v1/cases/{doc['id']}/evidence/{i}",
                               phase=e["detail"].get("phase", "")) for i, e in camera_evidence if e.get("ref")],
    )
