"""Cases as JSON: whole-case documents (the worker's snapshots) and the gridhub.case-events and
gridhub.case-commands record formats, records written before the formats moved to msgspec, and rejection of
anything else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import orjson
import pytest

from domain.case_records import (
    CaseCommand,
    CaseRecordFormatError,
    Command,
    CommandReply,
    EventDoc,
    Outcome,
    case_doc,
    case_from_doc,
    decode_case_event,
    decode_command,
    decode_reply,
    encode_case_event,
    encode_command,
    encode_reply,
)
from domain.cases import Case, CaseEvent, CaseState, Evidence, Severity, Source, Tier, report
from domain.sla import SlaCalendar, parse_term

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2025, 9, 22, 9, 0, tzinfo=SHANGHAI)
M = timedelta(minutes=1)


def json_trip(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as it comes back from JSON bytes."""
    back: dict[str, Any] = orjson.loads(orjson.dumps(doc))
    return back


def closed_loop(calendar: SlaCalendar) -> Iterator[Case]:
    """A sensor case through every kind of step, yielded after each one."""
    case = report("310104003001007-0406-20250922T010000000", grid_code="310104003001007", category="0406",
                  source=Source.SENSOR, at=MONDAY, actor="gridhub-streams", severity=Severity.SHORT_HEAVY_RAIN,
                  title="rain short_heavy_rain: 21.0 mm/1h")
    yield case
    steps: list[Callable[[Case], Case]] = [
        lambda c: c.attach(Evidence(MONDAY, "rain-0004", "21.0 mm in 1 h", "evidence/r.json"), "gridhub-streams"),
        lambda c: c.file(MONDAY + M, "gridhub-streams", "filed automatically"),
        lambda c: c.dispatch(MONDAY + 2 * M, "gridhub-streams", department="水务", tier=Tier.COMMUNITY,
                             term=parse_term("4h working"), calendar=calendar),
        lambda c: c.upgrade(MONDAY + 3 * M, "gridhub-streams", severity=Severity.ORANGE, urgent=True, note="orange"),
        lambda c: c.suspend(MONDAY + 4 * M, "dept-lead", reason="pumps on the way", calendar=calendar),
        lambda c: c.extend(MONDAY + 5 * M, "dept-lead", by=parse_term("30min natural"), calendar=calendar,
                           reason="crane"),
        lambda c: c.resume(MONDAY + 60 * M, "dept-lead", calendar=calendar),
        lambda c: c.extend(MONDAY + 61 * M, "dept-lead", by=parse_term("1h working"), calendar=calendar,
                           reason="more water"),
        lambda c: c.send_back(MONDAY + 62 * M, "水务", reason="needs the street's pumps"),
        lambda c: c.dispatch(MONDAY + 63 * M, "operator-1", department="水务", term=parse_term("4h working"),
                             calendar=calendar),
        lambda c: c.reassign(MONDAY + 64 * M, "operator-1", department="排水公司"),
        lambda c: c.escalate(MONDAY + 9 * 60 * M, "gridhub-streams", reason="overdue"),
        lambda c: c.handle(MONDAY + 10 * 60 * M, "officer-3", note="pumped dry"),
        lambda c: c.verify(MONDAY + 10 * 60 * M + 5 * M, "inspector-7", passed=False, note="still 10 cm"),
        lambda c: c.handle(MONDAY + 11 * 60 * M, "officer-3", note="drain cleared"),
        lambda c: c.verify(MONDAY + 11 * 60 * M + 5 * M, "inspector-7", passed=True),
        lambda c: c.rate(MONDAY + 12 * 60 * M, "citizen", satisfied=True, note="quick"),
    ]
    for step in steps:
        case = step(case)
        yield case


def test_a_case_survives_a_json_round_trip_after_every_step_of_its_closed_loop(calendar: SlaCalendar) -> None:
    cases = list(closed_loop(calendar))
    assert cases[-1].state is CaseState.CLOSED
    assert (cases[-1].rework_count, cases[-1].extension_count, cases[-1].escalation_count) == (1, 2, 1)
    for case in cases:
        assert case_from_doc(json_trip(case_doc(case))) == case, case.history[-1].action


def test_a_voided_case_survives_a_json_round_trip(case_in: Callable[..., Case]) -> None:
    voided = case_in(CaseState.VOIDED)
    assert case_from_doc(json_trip(case_doc(voided))) == voided


def test_a_document_without_history_leaves_the_timeline_out(case_in: Callable[..., Case]) -> None:
    doc = case_doc(case_in(CaseState.DISPATCHED), with_history=False)
    assert "history" not in doc
    assert doc["version"] == 3


def test_a_case_document_with_a_version_other_than_its_timeline_is_rejected(case_in: Callable[..., Case]) -> None:
    doc = json_trip(case_doc(case_in(CaseState.FILED)))
    doc["version"] = 7
    with pytest.raises(CaseRecordFormatError, match="version 7 but 2 events"):
        case_from_doc(doc)


@pytest.mark.parametrize(("field", "value"), [
    ("state", "lost"), ("source", "rumour"), ("tier", "galaxy"), ("reported_at", "yesterday"),
    ("term", {"seconds": 60}), ("history", None), ("evidence", [{"at": "2025-09-22T09:00:00+08:00"}]),
])
def test_a_case_document_with_a_bad_field_is_rejected(case_in: Callable[..., Case], field: str, value: Any) -> None:
    doc = json_trip(case_doc(case_in(CaseState.DISPATCHED)))
    doc[field] = value
    with pytest.raises(CaseRecordFormatError):
        case_from_doc(doc)


def test_a_case_document_missing_a_field_is_rejected(case_in: Callable[..., Case]) -> None:
    doc = json_trip(case_doc(case_in(CaseState.DISPATCHED)))
    del doc["deadline_at"]
    with pytest.raises(CaseRecordFormatError, match="deadline_at"):
        case_from_doc(doc)


@pytest.mark.parametrize("version", ["three", None])
def test_a_case_document_with_a_non_integer_version_is_rejected(case_in: Callable[..., Case], version: Any) -> None:
    doc = json_trip(case_doc(case_in(CaseState.FILED)))
    doc["version"] = version
    with pytest.raises(CaseRecordFormatError):
        case_from_doc(doc)


def test_a_case_event_record_decodes_to_the_case_and_the_event(calendar: SlaCalendar) -> None:
    for case in closed_loop(calendar):
        event = case.history[-1]
        decoded_case, decoded_event = decode_case_event(encode_case_event(case, event))
        assert msgspec.to_builtins(decoded_case) == case_doc(case, with_history=False)
        assert decoded_event == event_doc(event)


def event_doc(event: CaseEvent) -> EventDoc:
    return EventDoc(event.version, event.action, event.from_state, event.to_state, event.at, event.actor, event.note,
                    dict(event.data))


def test_a_case_event_record_carries_the_format_version(case_in: Callable[..., Case]) -> None:
    case = case_in(CaseState.FILED)
    assert orjson.loads(encode_case_event(case, case.history[-1]))["v"] == 1


#: The record of `closed_loop`'s extension (version 7) as the encoder wrote it before the move to msgspec.
CASE_EVENT_BEFORE_MSGSPEC = (
    '{"v":1,"event":{"version":7,"action":"extend","from_state":"suspended","to_state":"suspended",'
    '"at":"2025-09-22T09:05:00+08:00","actor":"dept-lead","note":"crane","data":{"by":"30min natural",'
    '"applies":"on resume"}},"case":{"id":"310104003001007-0406-20250922T010000000","version":7,'
    '"grid_code":"310104003001007","category":"0406","source":"sensor","state":"suspended",'
    '"reported_at":"2025-09-22T09:00:00+08:00","severity":"orange","urgent":true,'
    '"title":"rain short_heavy_rain: 21.0 mm/1h","term":{"seconds":14400.0,"clock":"working"},'
    '"department":"水务","tier":"community","filed_at":"2025-09-22T09:01:00+08:00",'
    '"dispatched_at":"2025-09-22T09:02:00+08:00","deadline_at":"2025-09-22T13:02:00+08:00",'
    '"first_handled_at":null,"handled_at":null,"closed_at":null,"voided_at":null,'
    '"suspended_at":"2025-09-22T09:04:00+08:00","remaining_when_suspended_s":14280.0,"suspended_total_s":0.0,'
    '"extensions_on_resume":[{"seconds":1800.0,"clock":"natural"}],"rework_count":0,"extension_count":1,'
    '"escalation_count":0,"reassign_count":0,"send_back_count":0,"satisfied":null,'
    '"evidence":[{"at":"2025-09-22T09:00:00+08:00","source_id":"rain-0004","summary":"21.0 mm in 1 h",'
    '"ref":"evidence/r.json"}]}}'
).encode()


def test_a_case_event_record_written_before_msgspec_decodes(calendar: SlaCalendar) -> None:
    extended = list(closed_loop(calendar))[6]
    case, event = decode_case_event(CASE_EVENT_BEFORE_MSGSPEC)
    assert msgspec.to_builtins(case) == case_doc(extended, with_history=False)
    assert event == event_doc(extended.history[-1])


def test_a_case_event_record_is_written_as_before_msgspec(calendar: SlaCalendar) -> None:
    extended = list(closed_loop(calendar))[6]
    assert encode_case_event(extended, extended.history[-1]) == CASE_EVENT_BEFORE_MSGSPEC


def event_record(case_in: Callable[..., Case], **changes: Any) -> bytes:
    """A dispatched case's latest record with top-level `changes` ({"case": {...}} patches the case)."""
    case = case_in(CaseState.DISPATCHED)
    doc = orjson.loads(encode_case_event(case, case.history[-1]))
    for key, value in changes.items():
        doc[key] = {**doc[key], **value} if isinstance(value, dict) and key in ("case", "event") else value
    return orjson.dumps(doc)


@pytest.mark.parametrize("changes", [
    pytest.param({"v": 2}, id="unknown format version"),
    pytest.param({"case": {"version": 2}}, id="case version is not the event's"),
    pytest.param({"event": {"version": 4}}, id="event version is not the case's"),
    pytest.param({"event": {"action": "teleport"}}, id="unknown action"),
    pytest.param({"event": {"at": "09:10"}}, id="event time without a date"),
    pytest.param({"case": {"state": "lost"}}, id="unknown state"),
    pytest.param({"case": {"urgent": None, "category": None, "reported_at": 5}}, id="wrong types"),
    pytest.param({"case": None}, id="no case"),
])
def test_a_malformed_case_event_record_is_rejected(case_in: Callable[..., Case], changes: dict[str, Any]) -> None:
    with pytest.raises(CaseRecordFormatError):
        decode_case_event(event_record(case_in, **changes))


def test_a_case_event_time_without_an_offset_is_rejected_naming_the_field(case_in: Callable[..., Case]) -> None:
    with pytest.raises(CaseRecordFormatError, match=r"timezone component - at `\$\.event\.at`"):
        decode_case_event(event_record(case_in, event={"at": "2025-09-22T09:10:00"}))


def test_a_case_event_record_of_another_format_version_is_rejected_naming_it(case_in: Callable[..., Case]) -> None:
    with pytest.raises(CaseRecordFormatError, match="unsupported case-event format version 2"):
        decode_case_event(event_record(case_in, v=2))


@pytest.mark.parametrize("data", [b"", b"{", b"null", b"[]", b'"case"', b'{"v": 1}', b'{"v": 1, "case": {}}'])
def test_bytes_that_are_not_a_case_event_record_are_rejected(data: bytes) -> None:
    with pytest.raises(CaseRecordFormatError):
        decode_case_event(data)


CONFIRM = CaseCommand("310104003001002-0501-20250922T010000000", "310104003001002", Command.CONFIRM, "operator-3",
                      MONDAY, "seen on camera")


#: A confirmation (offset +08:00) and a dismissal (UTC, milliseconds) as written before the move to msgspec.
COMMAND_BEFORE_MSGSPEC = (
    b'{"v":1,"case_id":"310104003001002-0501-20250922T010000000","grid_code":"310104003001002",'
    b'"command":"confirm","actor":"operator-3","at":"2025-09-22T09:00:00+08:00","note":"seen on camera"}'
)
UTC_COMMAND_BEFORE_MSGSPEC = (
    b'{"v":1,"case_id":"310104003001002-0501-20250922T010000000","grid_code":"310104003001002",'
    b'"command":"dismiss","actor":"operator-3","at":"2025-09-22T01:00:00.123000+00:00","note":""}'
)


def test_commands_written_before_msgspec_decode() -> None:
    assert decode_command(COMMAND_BEFORE_MSGSPEC) == CONFIRM
    assert decode_command(UTC_COMMAND_BEFORE_MSGSPEC) == CaseCommand(
        CONFIRM.case_id, CONFIRM.grid_code, Command.DISMISS, "operator-3", datetime(2025, 9, 22, 1, 0, 0, 123000, UTC))


def test_a_command_is_written_as_before_msgspec() -> None:
    assert encode_command(CONFIRM) == COMMAND_BEFORE_MSGSPEC


def test_a_command_round_trips() -> None:
    assert decode_command(encode_command(CONFIRM)) == CONFIRM
    dismiss = CaseCommand(CONFIRM.case_id, CONFIRM.grid_code, Command.DISMISS, "operator-3", MONDAY)
    assert decode_command(encode_command(dismiss)) == dismiss


def test_a_command_with_a_request_id_expected_version_and_parameters_round_trips() -> None:
    extend = CaseCommand(CONFIRM.case_id, CONFIRM.grid_code, Command.EXTEND, "center-1", MONDAY, "permit pending",
                         "rq-7", 4, {"by_s": "7200", "clock": "working"})
    assert decode_command(encode_command(extend)) == extend


def test_a_reply_round_trips() -> None:
    reply = CommandReply("rq-7", Outcome.STALE, CONFIRM.case_id, 5, "someone changed it", CaseState.DISPATCHED)
    assert decode_reply(encode_reply(reply)) == reply


def test_a_command_without_a_note_gets_an_empty_one() -> None:
    doc = orjson.loads(encode_command(CONFIRM))
    del doc["note"]
    assert decode_command(orjson.dumps(doc)).note == ""


def test_a_command_time_without_an_offset_is_rejected() -> None:
    doc = orjson.loads(encode_command(CONFIRM))
    doc["at"] = "2025-09-22T09:00:00"
    with pytest.raises(CaseRecordFormatError, match="timezone"):
        decode_command(orjson.dumps(doc))


@pytest.mark.parametrize("changes", [
    pytest.param({"v": 2}, id="unknown format version"),
    pytest.param({"command": "approve"}, id="unknown command"),
    pytest.param({"at": "soon"}, id="not a time"),
    pytest.param({"at": None}, id="no time"),
])
def test_a_malformed_command_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(CaseRecordFormatError):
        decode_command(orjson.dumps(orjson.loads(encode_command(CONFIRM)) | changes))


def test_a_command_without_a_case_id_is_rejected() -> None:
    doc = orjson.loads(encode_command(CONFIRM))
    del doc["case_id"]
    with pytest.raises(CaseRecordFormatError, match="case_id"):
        decode_command(orjson.dumps(doc))


@pytest.mark.parametrize("data", [b"", b"not json", b"null", b"[]", b'{"v": 1}'])
def test_bytes_that_are_not_a_command_are_rejected(data: bytes) -> None:
    with pytest.raises(CaseRecordFormatError):
        decode_command(data)
