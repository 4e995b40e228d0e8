"""Cases as JSON: the `gridhub.case-events` and `gridhub.case-commands` record formats and whole-case documents.

Every change to a case is one record on `gridhub.case-events`, keyed by the case's grid cell code: the
event (version, action, states, who, when, note, data) and the case as it stands after it, without its
timeline. Consumers deduplicate on (case id, version): delivery is at least once, and a replay after a
worker restart produces the same records again. Times are RFC 3339 strings with their offset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import msgspec

from domain import wire
from domain.cases import Action, Case, CaseEvent, CaseState, Evidence, Severity, Source, Tier
from domain.sla import Clock, SlaTerm

FORMAT_VERSION: Final = 1

# Without its offset the instant of a time is unknown; guessing the local zone would shift it by hours.
_Time = Annotated[datetime, msgspec.Meta(tz=True)]
_TierName = Literal["community", "street", "district"]
_TIERS: dict[_TierName, Tier] = {"community": Tier.COMMUNITY, "street": Tier.STREET, "district": Tier.DISTRICT}
_TIER_NAMES: dict[Tier, _TierName] = {tier: name for name, tier in _TIERS.items()}


class CaseRecordFormatError(ValueError):
    """A record or document that does not decode to a case."""


class _TermDoc(msgspec.Struct, frozen=True):
    seconds: float
    clock: Clock


class _EvidenceDoc(msgspec.Struct, frozen=True, omit_defaults=True):
    at: _Time
    source_id: str
    summary: str
    ref: str
    detail: dict[str, str] = {}


class EventDoc(msgspec.Struct, frozen=True):
    """One timeline event as the records carry it."""

    version: int
    action: Action
    from_state: CaseState | None
    to_state: CaseState
    at: _Time
    actor: str
    note: str
    data: dict[str, str]


class CaseDoc(msgspec.Struct, frozen=True):
    """A case as the records carry it: flat, durations in seconds, the timeline only in whole-case documents."""

    id: str
    version: int
    grid_code: str
    category: str
    source: Source
    state: CaseState
    reported_at: _Time
    severity: Severity
    urgent: bool
    title: str
    term: _TermDoc | None
    department: str | None
    tier: _TierName | None
    filed_at: _Time | None
    dispatched_at: _Time | None
    deadline_at: _Time | None
    first_handled_at: _Time | None
    handled_at: _Time | None
    closed_at: _Time | None
    voided_at: _Time | None
    suspended_at: _Time | None
    remaining_when_suspended_s: float | None
    suspended_total_s: float
    extensions_on_resume: list[_TermDoc]
    rework_count: int
    extension_count: int
    escalation_count: int
    reassign_count: int
    send_back_count: int
    satisfied: bool | None
    evidence: list[_EvidenceDoc]
    history: list[EventDoc] | msgspec.UnsetType = msgspec.UNSET  # left out of case-event records


class _CaseEventRecord(msgspec.Struct, frozen=True):
    v: Literal[1]
    event: EventDoc
    case: CaseDoc


_CASE_EVENT = msgspec.json.Decoder(_CaseEventRecord)


def case_doc(case: Case, *, with_history: bool = True) -> dict[str, Any]:
    """The case as a JSON-ready mapping; `with_history=False` leaves the timeline out."""
    doc: dict[str, Any] = msgspec.to_builtins(_case_doc(case, with_history=with_history))
    return doc


def case_from_doc(doc: dict[str, Any]) -> Case:
    """Rebuild a case from `case_doc(case)` (with its history); raise CaseRecordFormatError otherwise."""
    try:
        parsed = msgspec.convert(doc, CaseDoc)
    except msgspec.ValidationError as exc:
        raise CaseRecordFormatError(f"not a case document: {exc}") from None
    if isinstance(parsed.history, msgspec.UnsetType):
        raise CaseRecordFormatError(f"case {parsed.id}: the document has no history")
    case = _case(parsed, parsed.history)
    if case.version != parsed.version:
        raise CaseRecordFormatError(f"case {case.id}: version {parsed.version} but {case.version} events")
    return case


def encode_case_event(case: Case, event: CaseEvent) -> bytes:
    """The record for `event`, with the case as it stands after it (without the timeline)."""
    return msgspec.json.encode(_CaseEventRecord(FORMAT_VERSION, _event_doc(event), _case_doc(case, with_history=False)))


def decode_case_event(data: bytes) -> tuple[CaseDoc, EventDoc]:
    """(case without history, event) from a record; raise CaseRecordFormatError otherwise."""
    record = wire.decode(_CASE_EVENT, data, CaseRecordFormatError, "case-event", FORMAT_VERSION)
    if record.case.version != record.event.version:
        raise CaseRecordFormatError("the case's version is not the event's")
    return record.case, record.event


def _case_doc(case: Case, *, with_history: bool) -> CaseDoc:
    return CaseDoc(
        id=case.id, version=case.version, grid_code=case.grid_code, category=case.category, source=case.source,
        state=case.state, reported_at=case.reported_at, severity=case.severity, urgent=case.urgent,
        title=case.title, term=_term_doc(case.term), department=case.department,
        tier=_TIER_NAMES[case.tier] if case.tier else None,
        filed_at=case.filed_at, dispatched_at=case.dispatched_at, deadline_at=case.deadline_at,
        first_handled_at=case.first_handled_at, handled_at=case.handled_at, closed_at=case.closed_at,
        voided_at=case.voided_at, suspended_at=case.suspended_at,
        remaining_when_suspended_s=_seconds(case.remaining_when_suspended),
        suspended_total_s=case.suspended_total.total_seconds(),
        extensions_on_resume=[_TermDoc(t.duration.total_seconds(), t.clock) for t in case.extensions_on_resume],
        rework_count=case.rework_count, extension_count=case.extension_count,
        escalation_count=case.escalation_count, reassign_count=case.reassign_count,
        send_back_count=case.send_back_count, satisfied=case.satisfied,
        evidence=[_EvidenceDoc(e.at, e.source_id, e.summary, e.ref, dict(e.detail)) for e in case.evidence],
        history=[_event_doc(event) for event in case.history] if with_history else msgspec.UNSET,
    )


def _case(doc: CaseDoc, history: list[EventDoc]) -> Case:
    return Case(
        id=doc.id, grid_code=doc.grid_code, category=doc.category, source=doc.source, state=doc.state,
        reported_at=doc.reported_at, severity=doc.severity, urgent=doc.urgent, title=doc.title,
        term=_term(doc.term), department=doc.department, tier=_TIERS[doc.tier] if doc.tier else None,
        filed_at=doc.filed_at, dispatched_at=doc.dispatched_at, deadline_at=doc.deadline_at,
        first_handled_at=doc.first_handled_at, handled_at=doc.handled_at, closed_at=doc.closed_at,
        voided_at=doc.voided_at, suspended_at=doc.suspended_at,
        remaining_when_suspended=(timedelta(seconds=doc.remaining_when_suspended_s)
                                  if doc.remaining_when_suspended_s is not None else None),
        suspended_total=timedelta(seconds=doc.suspended_total_s),
        extensions_on_resume=tuple(SlaTerm(timedelta(seconds=t.seconds), t.clock) for t in doc.extensions_on_resume),
        rework_count=doc.rework_count, extension_count=doc.extension_count,
        escalation_count=doc.escalation_count, reassign_count=doc.reassign_count,
        send_back_count=doc.send_back_count, satisfied=doc.satisfied,
        evidence=tuple(Evidence(e.at, e.source_id, e.summary, e.ref, e.detail) for e in doc.evidence),
        history=tuple(CaseEvent(e.version, e.action, e.from_state, e.to_state, e.at, e.actor, e.note, e.data)
                      for e in history),
    )


def _event_doc(event: CaseEvent) -> EventDoc:
    return EventDoc(event.version, event.action, event.from_state, event.to_state, event.at, event.actor, event.note,
                    dict(event.data))


def _seconds(duration: timedelta | None) -> float | None:
    return duration.total_seconds() if duration is not None else None


def _term_doc(term: SlaTerm | None) -> _TermDoc | None:
    return _TermDoc(term.duration.total_seconds(), term.clock) if term else None


def _term(doc: _TermDoc | None) -> SlaTerm | None:
    return SlaTerm(timedelta(seconds=doc.seconds), doc.clock) if doc else None


class Command(StrEnum):
    """What a person (or another system) asks of a case through `gridhub.case-commands`; the stream worker applies it.

    Each maps to one step of the closed loop (domain.cases) except `confirm`, which files and dispatches a camera
    detection (立案 + 派遣 by the routing table), `dismiss`, which voids it and may suppress its zone for a while,
    `undo`, which takes back a confirm or dismiss within the undo window, and `report`, a citizen's report
    (随手拍 / 12345) that opens a case or is fused into the cell's open case of the same code.
    """

    CONFIRM = "confirm"
    DISMISS = "dismiss"
    UNDO = "undo"
    REPORT = "report"
    FILE = "file"
    DISPATCH = "dispatch"
    REASSIGN = "reassign"
    RETURN = "return"  # 回退
    ESCALATE = "escalate"
    HANDLE = "handle"
    VERIFY_PASS = "verify_pass"
    VERIFY_FAIL = "verify_fail"
    VOID = "void"
    SUSPEND = "suspend"
    RESUME = "resume"
    EXTEND = "extend"
    RATE = "rate"


@dataclass(frozen=True, slots=True)
class CaseCommand:
    """A decision on a case (or a citizen report for a cell), keyed by its grid cell like everything about the cell.

    `expected_version` is the case version the caller saw: the worker refuses the command if the case has moved
    on since (optimistic concurrency). `params` carry what the command needs (department, extension, rating,
    photo reference, ...); `request_id` names the reply on `gridhub.case-replies`.
    """

    case_id: str
    grid_code: str
    command: Command
    actor: str
    at: datetime
    note: str = ""
    request_id: str = ""
    expected_version: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)


class _CommandRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    v: Literal[1]
    case_id: str
    grid_code: str
    command: Command
    actor: str
    at: _Time
    note: str = ""
    request_id: str = ""
    expected_version: int | None = None
    params: dict[str, str] = {}


_COMMAND = msgspec.json.Decoder(_CommandRecord)


def encode_command(command: CaseCommand) -> bytes:
    """The command as compact JSON bytes."""
    c = command
    return msgspec.json.encode(_CommandRecord(FORMAT_VERSION, c.case_id, c.grid_code, c.command, c.actor, c.at,
                                              c.note, c.request_id, c.expected_version, dict(c.params)))


def decode_command(data: bytes) -> CaseCommand:
    """Parse a record written by `encode_command`; raise CaseRecordFormatError on anything else."""
    r = wire.decode(_COMMAND, data, CaseRecordFormatError, "case-command", FORMAT_VERSION)
    return CaseCommand(r.case_id, r.grid_code, r.command, r.actor, r.at, r.note, r.request_id, r.expected_version,
                       r.params)


class Outcome(StrEnum):
    """What became of a command."""

    APPLIED = "applied"
    ILLEGAL = "illegal"  # the state machine does not allow it now (HTTP 409)
    STALE = "stale"  # the case moved on since the caller saw it (HTTP 412)
    NOT_FOUND = "not_found"  # no such case in that cell (HTTP 404)
    INVALID = "invalid"  # the command lacks something it needs (HTTP 422)


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The worker's answer to a command, on `gridhub.case-replies` keyed by its request id."""

    request_id: str
    outcome: Outcome
    case_id: str
    version: int  # the case's version after the command (or as it stands, when refused); 0 if unknown
    message: str = ""
    state: CaseState | None = None


class _ReplyRecord(msgspec.Struct, frozen=True):
    v: Literal[1]
    request_id: str
    outcome: Outcome
    case_id: str
    version: int
    message: str
    state: CaseState | None


_REPLY = msgspec.json.Decoder(_ReplyRecord)


def encode_reply(reply: CommandReply) -> bytes:
    """The reply as compact JSON bytes."""
    r = reply
    return msgspec.json.encode(_ReplyRecord(FORMAT_VERSION, r.request_id, r.outcome, r.case_id, r.version, r.message,
                                            r.state))


def decode_reply(data: bytes) -> CommandReply:
    """Parse a record written by `encode_reply`; raise CaseRecordFormatError on anything else."""
    r = wire.decode(_REPLY, data, CaseRecordFormatError, "case-reply", FORMAT_VERSION)
    return CommandReply(r.request_id, r.outcome, r.case_id, r.version, r.message, r.state)
