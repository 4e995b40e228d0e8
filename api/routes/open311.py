"""Open311 GeoReport v2 (/open311/v2/): the city's services, its requests mapped from cases, citizens' reports.

Reading is public, as GeoReport intends (citizens' apps and open-data portals have no account), so a request
shows only what a citizen may see: what and where to the grid cell (the cell's centroid, never the reporter's
own point), which department holds it, its times and the note of its latest step along the loop — not its
evidence, its actors, escalations (督办) or ratings. A machine alarm nobody confirmed (a camera or sensor case
never filed) is not a public fact, and GridHub's own device-health cases (9902, 9903) are no city service;
neither is shown. `media_url` names the case's first image on the scoped evidence route: camera snapshots show
people, so the image itself needs a reader's token.

Reporting (随手拍 / 12345) is anonymous too and rate limited per client address; another system (the 12345
hotline) sends its bearer token and is limited per token. A report becomes a `report` command: the stream worker
opens a citizen case awaiting 立案, or fuses the report into the cell's open case of the same code. The answer
carries a rating token, the reporter's only key to rate (评价) the result once the case is closed: POST
/open311/v2/requests/{id}/rating, GridHub's extension of GeoReport. Ratings feed 结果满意率.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from api.auth import Principal
from api.commands import CommandBus, raise_for
from api.deps import CityDep, EngineDep, EvidenceDep, authenticate
from api.photos import check_photo
from domain.case_records import CaseCommand, Command
from domain.cases import Action, CaseState, Source
from domain.city import City
from domain.epoch import EPOCH
from domain.taxonomy import DEVICE_OFFLINE, LOW_BATTERY, TaxonomyError
from storage.cases import CaseFilter, CaseSummary, SinkUnavailable, get_case, list_cases
from storage.citizen import CitizenReport, get_report, save_report
from storage.tokens import token_hash

router = APIRouter(prefix="/open311/v2", tags=["open311"])

#: Taxonomy codes GridHub files about its own devices: no citizen reports them, and the public does not see them.
INTERNAL_CODES = frozenset({DEVICE_OFFLINE, LOW_BATTERY})
#: Steps whose note tells a citizen what became of the request; other notes are internal (督办, evidence, 评价).
PUBLIC_NOTES = frozenset({Action.FILE, Action.DISPATCH, Action.HANDLE, Action.VERIFY_PASS, Action.VERIFY_FAIL,
                          Action.SUSPEND, Action.RESUME, Action.EXTEND, Action.VOID})
MAX_DESCRIPTION = 1000  # characters; the description becomes the case's title for 立案 review
MAX_COMMENT = 500
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
#: GeoReport's search window: at most 90 days, the latest 90 by default.
WINDOW = timedelta(days=90)
EARLIEST, LATEST = EPOCH, datetime(9999, 1, 1, tzinfo=UTC)
_SCAN = 500  # cases read per query while filtering a page
CITIZEN_PREFIX = "citizen/"  # evidence source id of a citizen report: citizen/<report id>

T = TypeVar("T")
_bearer = HTTPBearer(auto_error=False)


class ServiceOut(BaseModel):
    """A GeoReport service: one code of the city's taxonomy (部件事件分类)."""

    service_code: str = Field(description="taxonomy code, e.g. 0406")
    service_name: str = Field(description="the Chinese name, e.g. 道路积水")
    description: str = Field(description="the English name")
    metadata: bool = Field(False, description="always false: no extra attributes are asked for")
    type: Literal["realtime"] = "realtime"
    keywords: str = Field(description="the Chinese and English names, comma separated")
    group: str = Field(description="component (部件, a physical object) or event (事件)")


class ServiceRequestOut(BaseModel):
    """A GeoReport service request: a case as the public sees it."""

    service_request_id: str = Field(description="the case id")
    status: Literal["open", "closed"] = Field(description="closed once the case is closed (结案) or voided (注销)")
    status_notes: str | None = Field(description="the note of the case's latest step along the loop, if any")
    service_name: str
    service_code: str
    description: str = Field(description="the case's title: the citizen's words, or what a sensor or camera saw")
    agency_responsible: str | None = Field(description="the department holding the case once dispatched (派遣)")
    service_notice: str | None = None
    requested_datetime: datetime = Field(description="reported (上报)")
    updated_datetime: datetime = Field(description="the case's latest step")
    expected_datetime: datetime | None = Field(description="the department's deadline")
    address: str | None = Field(description="the grid cell's name")
    address_id: str = Field(description="the grid cell (单元网格) code")
    lat: float | None = Field(description="the grid cell's centroid, not the reporter's own point")
    long: float | None
    media_url: str | None = Field(description="the case's first image; serving it needs a reader's bearer token")


class ReceiptOut(BaseModel):
    """GeoReport's answer to a new request, with GridHub's rating token."""

    service_request_id: str = Field(description="the case the report is on: a new one, or the cell's open case")
    token: str = Field(description="keep it: the only key to rate the result (POST …/requests/{id}/rating)")
    service_notice: str
    account_id: None = None


class RatingOut(BaseModel):
    """A rating recorded on a closed case."""

    service_request_id: str
    satisfied: bool


@router.get("/services.json")
def services(city: CityDep) -> list[ServiceOut]:
    """The services citizens can report: the city's taxonomy without GridHub's own device-health codes."""
    return [ServiceOut(service_code=c.code, service_name=c.name_zh, description=c.name_en,
                       keywords=f"{c.name_zh},{c.name_en}", group=c.kind.value)
            for c in city.taxonomy if c.code not in INTERNAL_CODES]


@router.get("/requests.json", responses={400: {"description": "a malformed parameter"}})
def service_requests(
    request: Request, city: CityDep, engine: EngineDep,
    service_request_id: Annotated[str | None, Query(
        description="case ids, comma separated (at most the page size); overrides every other parameter")] = None,
    service_code: Annotated[str | None, Query(description="a service code, e.g. 0406")] = None,
    status_: Annotated[str | None, Query(alias="status", description="open, closed or open,closed")] = None,
    start_date: Annotated[str | None, Query(description="reported at or after (RFC 3339, with offset)")] = None,
    end_date: Annotated[str | None, Query(description="reported before; at most 90 days after start_date")] = None,
    page_size: Annotated[str | None, Query(description=f"requests per page, 1 to {MAX_PAGE_SIZE}")] = None,
    page: Annotated[str | None, Query(description="page number, from 1")] = None,
) -> list[ServiceRequestOut]:
    """Requests newest first: the latest 90 days unless start_date or end_date says otherwise."""
    size = _whole("page_size", page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if service_request_id is not None:
        named = [part.strip() for part in service_request_id.split(",") if part.strip()]
        if len(named) > size:
            raise _bad(f"at most {size} `service_request_id`s at once (page_size), not {len(named)}")
        return [out for case_id in named if (out := _public_request(request, city, engine, case_id)) is not None]
    if service_code is not None and not _is_service(city, service_code):
        raise _bad(_unknown_service(city, service_code))
    statuses = _statuses(status_)
    start, end = _window(_moment("start_date", start_date), _moment("end_date", end_date))
    skip = (_whole("page", page, 1, None) - 1) * size
    where = CaseFilter(category=service_code, reported_from_ms=_ms(start), reported_to_ms=_ms(end))
    ids: list[str] = []
    after = None
    while len(ids) < size:
        batch = _query(partial(list_cases, engine, where, limit=_SCAN, after=after))
        for summary in batch.items:
            if _visible(summary) and _status(summary.state) in statuses and len(ids) < size:
                if skip:
                    skip -= 1
                else:
                    ids.append(summary.id)
        if batch.next_cursor is None:
            break
        after = batch.next_cursor
    return [out for case_id in ids if (out := _public_request(request, city, engine, case_id)) is not None]


@router.get("/requests/{service_request_id}.json", responses={404: {"description": "no such public request"}})
def request_detail(service_request_id: str, request: Request, city: CityDep,
                   engine: EngineDep) -> list[ServiceRequestOut]:
    """One request, as GeoReport's one-element list."""
    out = _public_request(request, city, engine, service_request_id)
    if out is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no request {service_request_id!r:.80}")
    return [out]


@router.post("/requests.json", status_code=status.HTTP_201_CREATED, responses={
    400: {"description": "an unknown service code, a point outside the city, a missing or too long description"},
    413: {"description": "the body is over the upload limit"},
    415: {"description": "`media` is not a JPEG or PNG image"},
    422: {"description": "`media` is truncated, corrupt or too many pixels"},
    429: {"description": "too many reports from this address (or token)"},
})
async def report(
    request: Request, city: CityDep, engine: EngineDep, evidence: EvidenceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    service_code: Annotated[str | None, Form(description="a code of services.json")] = None,
    lat: Annotated[str | None, Form(description="WGS84 latitude of the problem")] = None,
    long: Annotated[str | None, Form(description="WGS84 longitude")] = None,
    description: Annotated[str | None, Form(description=f"what is wrong, up to {MAX_DESCRIPTION} characters")] = None,
    media: Annotated[UploadFile | None, File(description="a photo, JPEG or PNG (multipart/form-data)")] = None,
) -> list[ReceiptOut]:
    """A citizen's report (随手拍 / 12345): it opens a case awaiting 立案 or joins the cell's open case of its code."""
    caller = await asyncio.to_thread(_reporter, request, engine, credentials)  # a token is a database read
    if service_code is None or not _is_service(city, service_code):
        raise _bad(_unknown_service(city, service_code))
    latitude, longitude = _coordinate("lat", lat, 90), _coordinate("long", long, 180)
    cell = city.cells.locate(longitude, latitude)
    if cell is None:
        raise _bad(f"the point lat {latitude:g}, long {longitude:g} is in no grid cell of {city.name}")
    grid_code = cell.code.digits
    if caller is not None and not caller.covers(grid_code):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"this token covers {caller.scope}, not grid cell {grid_code} where the point is")
    words = (description or "").strip()
    if not 0 < len(words) <= MAX_DESCRIPTION:
        raise _bad(f"`description` must say what is wrong in 1 to {MAX_DESCRIPTION} characters, not {len(words)}")
    data = await media.read() if media is not None else b""
    photo = await asyncio.to_thread(check_photo, data) if data else None  # an empty file input sends an empty part
    bus = _command_bus(request)  # before the photo is stored: nothing is kept of a report that cannot go on
    photo_ref = await asyncio.to_thread(evidence.put_new, "citizen", photo.suffix, photo.data) if photo else ""
    report_id = secrets.token_hex(16)
    params = {"category": service_code, "report_id": report_id, **({"photo": photo_ref} if photo_ref else {})}
    now = datetime.now(UTC)
    command = CaseCommand("", grid_code, Command.REPORT, caller.actor if caller else "citizen", now, words,
                          params=params)
    reply = await bus.send(command)
    raise_for(reply)
    rating_token = secrets.token_urlsafe(32)
    row = CitizenReport(report_id, reply.case_id, grid_code, service_code, latitude, longitude, words,
                        photo_ref or None, token_hash(rating_token), now)
    try:
        await asyncio.to_thread(save_report, engine, row)
    except SQLAlchemyError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"the report is on case {reply.case_id}, but its rating token could not be stored: "
                            f"database: {getattr(exc, 'orig', None) or exc}") from None
    notice = (f"received in grid cell {cell.name} ({grid_code}); case {reply.case_id} is "
              f"{reply.state.value if reply.state else 'open'}. Keep the token to rate the result once it is closed.")
    return [ReceiptOut(service_request_id=reply.case_id, token=rating_token, service_notice=notice)]


@router.post("/requests/{service_request_id}/rating", responses={
    403: {"description": "the token was not given for a report on this case"},
    404: {"description": "no such case"},
    409: {"description": "the case is not closed, or already rated"},
})
async def rate(
    service_request_id: str, request: Request, engine: EngineDep,
    token: Annotated[str | None, Form(description="the token POST requests.json returned")] = None,
    satisfied: Annotated[str | None, Form(description="true (满意) or false (不满意)")] = None,
    comment: Annotated[str | None, Form(description=f"up to {MAX_COMMENT} characters")] = None,
) -> RatingOut:
    """评价: the reporter rates a closed case, once, with the token their report was given (GeoReport extension)."""
    _limit_address(request)
    verdict = {"true": True, "false": False}.get((satisfied or "").strip().lower())
    if verdict is None:
        raise _bad(f"`satisfied` must be true (满意) or false (不满意), not {satisfied!r:.40}")
    note = (comment or "").strip()
    if len(note) > MAX_COMMENT:
        raise _bad(f"`comment` must be at most {MAX_COMMENT} characters, not {len(note)}")
    if not token:
        raise _bad("`token` is required: the one your report's answer gave")
    found = await asyncio.to_thread(_query, lambda: get_case(engine, service_request_id))
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no request {service_request_id!r:.80}")
    doc, _ = found
    reporter = await asyncio.to_thread(_token_holder, engine, doc, token)
    if reporter is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"this token was not given for a report on request {service_request_id}")
    if doc["state"] != CaseState.CLOSED:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"request {service_request_id} is {doc['state']}: it can be rated once it is closed (结案)")
    if doc["satisfied"] is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"request {service_request_id} is already rated")
    command = CaseCommand(service_request_id, doc["grid_code"], Command.RATE, f"{CITIZEN_PREFIX}{reporter.id}",
                          datetime.now(UTC), note, expected_version=doc["version"],
                          params={"satisfied": str(verdict).lower()})
    raise_for(await _command_bus(request).send(command))
    return RatingOut(service_request_id=service_request_id, satisfied=verdict)


@router.api_route("/{anything:path}", methods=["GET", "POST"], include_in_schema=False)
def elsewhere(anything: str) -> None:
    """406 for GeoReport's XML forms (this server answers JSON only); 404 for anything else under /open311/v2/."""
    if anything.endswith(".xml"):
        raise HTTPException(status.HTTP_406_NOT_ACCEPTABLE,
                            f"this Open311 server answers JSON only: ask for {anything.removesuffix('.xml')}.json")
    raise HTTPException(status.HTTP_404_NOT_FOUND,
                        f"no Open311 resource {anything!r:.80}; see /open311/v2/services.json")


def _reporter(request: Request, engine: Engine, credentials: HTTPAuthorizationCredentials | None) -> Principal | None:
    """The system behind a bearer token (limited per token), or None for an anonymous citizen (per address)."""
    if credentials is None:
        _limit_address(request)
        return None
    caller = authenticate(engine, credentials.credentials)
    request.app.state.write_limiter.check(caller.token_id, "writes for this token")
    return caller


def _limit_address(request: Request) -> None:
    address = request.client.host if request.client else "unknown"
    request.app.state.citizen_limiter.check(address, "citizen reports and ratings from this address")


def _command_bus(request: Request) -> CommandBus:
    # Looked up after the report is checked, so that a malformed one is told so even while Kafka is away.
    bus: CommandBus | None = request.app.state.bus
    if bus is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "citizen reports need Kafka: this API runs without `kafka.bootstrap`")
    return bus


def _token_holder(engine: Engine, doc: dict[str, Any], token: str) -> CitizenReport | None:
    """The citizen report on the case that was given this token, comparing hashes in constant time."""
    presented = token_hash(token)
    for item in doc["evidence"]:
        source: str = item["source_id"]
        if source.startswith(CITIZEN_PREFIX):
            found = get_report(engine, source.removeprefix(CITIZEN_PREFIX))
            if found is not None and hmac.compare_digest(presented, found.token_sha256):
                return found
    return None


def _public_request(request: Request, city: City, engine: Engine, case_id: str) -> ServiceRequestOut | None:
    found = _query(lambda: get_case(engine, case_id))
    if found is None:
        return None
    doc, timeline = found
    if doc["category"] in INTERNAL_CODES or (doc["source"] != Source.CITIZEN and doc["filed_at"] is None):
        return None
    cell = city.cells.get(doc["grid_code"])
    centroid = cell.polygon.centroid if cell is not None else None
    notes = [e["note"] for e in timeline if e["action"] in PUBLIC_NOTES and e["note"]]
    image = next((i for i, item in enumerate(doc["evidence"]) if item.get("ref")), None)
    return ServiceRequestOut(
        service_request_id=doc["id"], status=_status(doc["state"]), status_notes=notes[-1] if notes else None,
        service_name=_service_name(city, doc["category"]), service_code=doc["category"],
        description=doc["title"], agency_responsible=doc["department"],
        requested_datetime=_utc(doc["reported_at"]),
        updated_datetime=_utc(timeline[-1]["at"] if timeline else doc["reported_at"]),
        expected_datetime=_utc(doc["deadline_at"]) if doc["deadline_at"] else None,
        address=cell.name if cell is not None else None, address_id=doc["grid_code"],
        lat=round(centroid.y, 6) if centroid is not None else None,
        long=round(centroid.x, 6) if centroid is not None else None,
        media_url=str(request.url_for("evidence_image", case_id=doc["id"], index=image)) if image is not None else None,
    )


def _service_name(city: City, code: str) -> str:
    try:
        return city.taxonomy[code].name_zh
    except TaxonomyError:  # a code the city's table has since dropped
        return code


def _visible(summary: CaseSummary) -> bool:
    return summary.category not in INTERNAL_CODES and (summary.source == Source.CITIZEN or summary.filed_ms is not None)


def _status(state: str) -> Literal["open", "closed"]:
    return "open" if CaseState(state).is_open else "closed"


def _statuses(text: str | None) -> set[str]:
    wanted = {part.strip() for part in (text or "open,closed").split(",")}
    if not wanted or not wanted <= {"open", "closed"}:
        raise _bad(f"`status` must be open, closed or open,closed, not {text!r:.40}")
    return wanted


def _is_service(city: City, code: str) -> bool:
    return code in city.taxonomy and code not in INTERNAL_CODES


def _unknown_service(city: City, code: str | None) -> str:
    known = ", ".join(c.code for c in city.taxonomy if c.code not in INTERNAL_CODES)
    if code is None:
        return f"`service_code` is required: one of {known} (services.json)"
    return f"`service_code` {code!r:.40} is not a service of this city; known: {known} (services.json)"


def _coordinate(name: str, text: str | None, bound: float) -> float:
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > bound:
        raise _bad(f"`{name}` must be a WGS84 degree between -{bound:g} and {bound:g}, not {text!r:.40}")
    return value


def _whole(name: str, text: str | None, default: int, most: int | None) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:  # also more digits than Python converts
        value = 0
    if value < 1 or (most is not None and value > most):
        raise _bad(f"`{name}` must be a whole number from 1{f' to {most}' if most else ''}, not {text!r:.40}")
    return value


def _moment(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or not EARLIEST <= moment <= LATEST:
        raise _bad(f"`{name}` must be an RFC 3339 time with its offset (e.g. 2026-03-10T08:00:00+08:00) between "
                   f"{EARLIEST.date()} and {LATEST.date()}, not {text!r:.40}")
    return moment


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """GeoReport's search window: the latest 90 days by default, 90 days from either end given, never longer."""
    if start is None:
        end = end or datetime.now(UTC)
        return max(EARLIEST, end - WINDOW), end
    if end is None:
        return start, min(LATEST, start + WINDOW)
    if not timedelta(0) <= end - start <= WINDOW:
        raise _bad("`end_date` must be after `start_date` and at most 90 days later")
    return start, end


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _bad(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail)


def _query(run: Callable[[], T]) -> T:
    try:
        return run()
    except SinkUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"case database unavailable: {exc}") from None
