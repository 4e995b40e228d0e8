"""Cases as JSON: the `gridhub.case-events` record format and whole-case documents.

Every change to a case is one record on `gridhub.case-events`, keyed by the case's grid cell code: the
event (version, action, states, who, when, note, data) and the case as it stands after it, without its
timeline. Consumers deduplicate on (case id, version): delivery is at least once, and a replay after a
worker restart produces the same records again. Times are RFC 3339 strings with their offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from domain.cases import Action, Case, CaseEvent, CaseState, Evidence, Source, Tier
from domain.sla import Clock, SlaTerm

FORMAT_VERSION = 1


class CaseRecordFormatError(ValueError):
    """A record or document that does not decode to a case."""


def event_doc(event: CaseEvent) -> dict[str, Any]:
    """One timeline event as a JSON-ready mapping."""
    return {
        "version": event.version, "action": event.action.value,
        "from_state": event.from_state.value if event.from_state else None, "to_state": event.to_state.value,
        "at": event.at.isoformat(), "actor": event.actor, "note": event.note, "data": dict(event.data),
    }


def case_doc(case: Case, *, with_history: bool = True) -> dict[str, Any]:
    """The case as a JSON-ready mapping; `with_history=False` leaves the timeline out."""
    doc: dict[str, Any] = {
        "id": case.id, "version": case.version, "grid_code": case.grid_code, "category": case.category,
        "source": case.source.value, "state": case.state.value, "reported_at": _time(case.reported_at),
        "severity": case.severity, "urgent": case.urgent, "title": case.title,
        "term": _term(case.term), "department": case.department,
        "tier": case.tier.name.lower() if case.tier else None,
        "filed_at": _time(case.filed_at), "dispatched_at": _time(case.dispatched_at),
        "deadline_at": _time(case.deadline_at), "first_handled_at": _time(case.first_handled_at),
        "handled_at": _time(case.handled_at), "closed_at": _time(case.closed_at),
        "voided_at": _time(case.voided_at), "suspended_at": _time(case.suspended_at),
        "remaining_when_suspended_s": _seconds(case.remaining_when_suspended),
        "suspended_total_s": case.suspended_total.total_seconds(),
        "extensions_on_resume": [_term(term) for term in case.extensions_on_resume],
        "rework_count": case.rework_count, "extension_count": case.extension_count,
        "escalation_count": case.escalation_count, "reassign_count": case.reassign_count,
        "send_back_count": case.send_back_count, "satisfied": case.satisfied,
        "evidence": [
            {"at": e.at.isoformat(), "source_id": e.source_id, "summary": e.summary, "ref": e.ref}
            for e in case.evidence
        ],
    }
    if with_history:
        doc["history"] = [event_doc(event) for event in case.history]
    return doc


def case_from_doc(doc: dict[str, Any]) -> Case:
    """Rebuild a case from `case_doc(case)` (with its history); raise CaseRecordFormatError otherwise."""
    try:
        history = tuple(_event(e) for e in doc["history"])
        case = Case(
            id=str(doc["id"]), grid_code=str(doc["grid_code"]), category=str(doc["category"]),
            source=Source(doc["source"]), state=CaseState(doc["state"]),
            reported_at=datetime.fromisoformat(doc["reported_at"]), severity=str(doc["severity"]),
            urgent=bool(doc["urgent"]), title=str(doc["title"]), term=_parse_term(doc["term"]),
            department=doc["department"], tier=Tier[doc["tier"].upper()] if doc["tier"] else None,
            filed_at=_parse_time(doc["filed_at"]), dispatched_at=_parse_time(doc["dispatched_at"]),
            deadline_at=_parse_time(doc["deadline_at"]), first_handled_at=_parse_time(doc["first_handled_at"]),
            handled_at=_parse_time(doc["handled_at"]), closed_at=_parse_time(doc["closed_at"]),
            voided_at=_parse_time(doc["voided_at"]), suspended_at=_parse_time(doc["suspended_at"]),
            remaining_when_suspended=_parse_seconds(doc["remaining_when_suspended_s"]),
            suspended_total=timedelta(seconds=float(doc["suspended_total_s"])),
            extensions_on_resume=tuple(t for t in map(_parse_term, doc["extensions_on_resume"]) if t),
            rework_count=int(doc["rework_count"]), extension_count=int(doc["extension_count"]),
            escalation_count=int(doc["escalation_count"]), reassign_count=int(doc["reassign_count"]),
            send_back_count=int(doc["send_back_count"]), satisfied=doc["satisfied"],
            evidence=tuple(
                Evidence(datetime.fromisoformat(e["at"]), str(e["source_id"]), str(e["summary"]), str(e["ref"]))
                for e in doc["evidence"]
            ),
            history=history,
        )
        if case.version != int(doc.get("version", case.version)):
            raise CaseRecordFormatError(f"case {case.id}: version {doc.get('version')} but {case.version} events")
    except CaseRecordFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CaseRecordFormatError(f"not a case document: {exc!r}") from None
    return case


def encode_case_event(case: Case, event: CaseEvent) -> bytes:
    """The record for `event`, with the case as it stands after it (without the timeline)."""
    return orjson.dumps({"v": FORMAT_VERSION, "event": event_doc(event), "case": case_doc(case, with_history=False)})


def decode_case_event(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(case document without history, event document) from a record; raise CaseRecordFormatError otherwise."""
    try:
        doc: Any = orjson.loads(data)
        if doc.get("v") != FORMAT_VERSION:
            raise CaseRecordFormatError(f"unsupported case-event format version {doc.get('v')!r}")
        case, event = doc["case"], doc["event"]
        _event(event)
        case_from_doc({**case, "history": [], "version": 0})  # validates every field but the timeline
        if int(case["version"]) != int(event["version"]):
            raise CaseRecordFormatError("the case's version is not the event's")
    except CaseRecordFormatError:
        raise
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CaseRecordFormatError(f"not a case event: {exc!r}") from None
    return case, event


def _event(doc: dict[str, Any]) -> CaseEvent:
    return CaseEvent(
        version=int(doc["version"]), action=Action(doc["action"]),
        from_state=CaseState(doc["from_state"]) if doc["from_state"] else None,
        to_state=CaseState(doc["to_state"]), at=datetime.fromisoformat(doc["at"]), actor=str(doc["actor"]),
        note=str(doc["note"]), data={str(k): str(v) for k, v in doc["data"].items()},
    )


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _seconds(duration: timedelta | None) -> float | None:
    return duration.total_seconds() if duration is not None else None


def _parse_seconds(seconds: float | None) -> timedelta | None:
    return timedelta(seconds=float(seconds)) if seconds is not None else None


def _term(term: SlaTerm | None) -> dict[str, Any] | None:
    return {"seconds": term.duration.total_seconds(), "clock": term.clock.value} if term else None


def _parse_term(doc: dict[str, Any] | None) -> SlaTerm | None:
    return SlaTerm(timedelta(seconds=float(doc["seconds"])), Clock(doc["clock"])) if doc else None


class Command(StrEnum):
    """What an operator can ask of a case through `gridhub.case-commands` (the stream worker applies it)."""

    CONFIRM = "confirm"  # a reported camera detection is real: file (立案) and dispatch it
    DISMISS = "dismiss"  # it is not: void it (注销)


@dataclass(frozen=True, slots=True)
class CaseCommand:
    """An operator's decision on a case, keyed by its grid cell like everything else about the cell."""

    case_id: str
    grid_code: str
    command: Command
    actor: str
    at: datetime
    note: str = ""


def encode_command(command: CaseCommand) -> bytes:
    """The command as compact JSON bytes."""
    return orjson.dumps({
        "v": FORMAT_VERSION, "case_id": command.case_id, "grid_code": command.grid_code,
        "command": command.command.value, "actor": command.actor, "at": command.at.isoformat(),
        "note": command.note,
    })


def decode_command(data: bytes) -> CaseCommand:
    """Parse a record written by `encode_command`; raise CaseRecordFormatError on anything else."""
    try:
        doc: Any = orjson.loads(data)
        if doc.get("v") != FORMAT_VERSION:
            raise CaseRecordFormatError(f"unsupported case-command format version {doc.get('v')!r}")
        at = datetime.fromisoformat(doc["at"])
        if at.tzinfo is None:
            raise CaseRecordFormatError("command time needs a UTC offset")
        return CaseCommand(str(doc["case_id"]), str(doc["grid_code"]), Command(doc["command"]),
                           str(doc["actor"]), at, str(doc.get("note") or ""))
    except CaseRecordFormatError:
        raise
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CaseRecordFormatError(f"not a case command: {exc!r}") from None
