"""The case state machine (发现上报 → 立案 → 派遣 → 处置 → 核查 → 结案 → 评价), transition by transition.

Cases come from `case_in` (conftest.py): reported 09:00, voided 09:02 or filed 09:05, dispatched 09:10 to 城管执法
at community level with 4 working hours (deadline 13:10), suspended 10:10, handled 11:00, closed 11:30, all on
Monday 2025-09-22.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.cases import (
    ALLOWED_FROM,
    Action,
    Case,
    CaseEvent,
    CaseState,
    Evidence,
    IllegalTransition,
    Severity,
    Source,
    Tier,
    report,
)
from domain.sla import SlaCalendar, parse_term

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOON = datetime(2025, 9, 22, 12, 0, tzinfo=SHANGHAI)
H = timedelta(hours=1)


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


Perform = Callable[[Case, SlaCalendar, str], Case]

#: Each action performed with valid arguments at noon, by `actor`.
PERFORM: dict[Action, Perform] = {
    Action.FILE: lambda c, cal, actor: c.file(NOON, actor),
    Action.DISPATCH: lambda c, cal, actor: c.dispatch(
        NOON, actor, department="水务", tier=Tier.STREET, term=parse_term("2h working"), calendar=cal
    ),
    Action.REASSIGN: lambda c, cal, actor: c.reassign(NOON, actor, department="市场监管"),
    Action.SEND_BACK: lambda c, cal, actor: c.send_back(NOON, actor, reason="not ours"),
    Action.ESCALATE: lambda c, cal, actor: c.escalate(NOON, actor, reason="overdue"),
    Action.HANDLE: lambda c, cal, actor: c.handle(NOON, actor),
    Action.VERIFY_PASS: lambda c, cal, actor: c.verify(NOON, actor, passed=True),
    Action.VERIFY_FAIL: lambda c, cal, actor: c.verify(NOON, actor, passed=False, note="vendor is back"),
    Action.SUSPEND: lambda c, cal, actor: c.suspend(NOON, actor, reason="owner abroad", calendar=cal),
    Action.RESUME: lambda c, cal, actor: c.resume(NOON, actor, calendar=cal),
    Action.EXTEND: lambda c, cal, actor: c.extend(
        NOON, actor, by=parse_term("2h working"), calendar=cal, reason="needs a permit"
    ),
    Action.VOID: lambda c, cal, actor: c.void(NOON, actor, reason="duplicate"),
    Action.RATE: lambda c, cal, actor: c.rate(NOON, actor, satisfied=True),
    Action.UPGRADE: lambda c, cal, actor: c.upgrade(NOON, actor, severity=Severity.RED),
    Action.ATTACH: lambda c, cal, actor: c.attach(Evidence(NOON, "rain-0001", "12 mm in 1 h"), actor),
    Action.REOPEN: lambda c, cal, actor: c.reopen(NOON, actor, window=timedelta(days=30)),
}

#: Where each action leaves the case; None means it stays where it was.
TARGET: dict[Action, CaseState | None] = {
    Action.FILE: CaseState.FILED,
    Action.DISPATCH: CaseState.DISPATCHED,
    Action.REASSIGN: CaseState.DISPATCHED,
    Action.SEND_BACK: CaseState.FILED,
    Action.ESCALATE: CaseState.DISPATCHED,
    Action.HANDLE: CaseState.HANDLED,
    Action.VERIFY_PASS: CaseState.CLOSED,
    Action.VERIFY_FAIL: CaseState.DISPATCHED,
    Action.SUSPEND: CaseState.SUSPENDED,
    Action.RESUME: CaseState.DISPATCHED,
    Action.EXTEND: None,
    Action.VOID: CaseState.VOIDED,
    Action.RATE: CaseState.CLOSED,
    Action.UPGRADE: None,
    Action.ATTACH: None,
    Action.REOPEN: CaseState.REPORTED,
}

ALLOWED = [(action, state) for action, states in ALLOWED_FROM.items() for state in sorted(states)]
FORBIDDEN = [(action, state) for action, states in ALLOWED_FROM.items() for state in CaseState if state not in states]
OPEN_STATES = [s for s in CaseState if s.is_open]


def last_event(case: Case) -> CaseEvent:
    return case.history[-1]


# --- the table itself --------------------------------------------------------------------------------


def test_every_action_except_report_has_allowed_states_and_a_test_driver() -> None:
    assert set(ALLOWED_FROM) == set(Action) - {Action.REPORT}
    assert set(PERFORM) == set(ALLOWED_FROM) == set(TARGET)


def test_closed_and_voided_are_the_only_final_states() -> None:
    assert {s for s in CaseState if not s.is_open} == {CaseState.CLOSED, CaseState.VOIDED}


@pytest.mark.parametrize("state", list(CaseState))
def test_the_case_builder_reaches_every_state(case_in: Callable[..., Case], state: CaseState) -> None:
    assert case_in(state).state is state


@pytest.mark.parametrize(("action", "state"), ALLOWED, ids=[f"{a.value}-from-{s.value}" for a, s in ALLOWED])
def test_an_action_works_from_each_allowed_state_and_is_audited(
    case_in: Callable[..., Case], calendar: SlaCalendar, action: Action, state: CaseState
) -> None:
    before = case_in(state)

    after = PERFORM[action](before, calendar, "actor-9")

    expected_state = TARGET[action] or state
    assert after.state is expected_state
    assert after.version == before.version + 1
    assert after.history[:-1] == before.history
    event = last_event(after)
    assert (event.version, event.action, event.from_state, event.to_state, event.at, event.actor) == (
        before.version + 1, action, state, expected_state, NOON, "actor-9",
    )


@pytest.mark.parametrize(("action", "state"), FORBIDDEN, ids=[f"{a.value}-from-{s.value}" for a, s in FORBIDDEN])
def test_an_action_raises_from_every_state_it_is_not_allowed_from(
    case_in: Callable[..., Case], calendar: SlaCalendar, action: Action, state: CaseState
) -> None:
    case = case_in(state)

    with pytest.raises(IllegalTransition, match=f"cannot {action.value} case case-1 in state {state.value} "):
        PERFORM[action](case, calendar, "actor-9")


def test_an_illegal_transition_names_the_states_the_action_is_allowed_from(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    with pytest.raises(IllegalTransition, match=r"\(allowed from: dispatched, suspended\)$"):
        PERFORM[Action.EXTEND](case_in(CaseState.FILED), calendar, "actor-9")


def test_a_transition_returns_a_new_case_and_leaves_the_old_one_unchanged(case_in: Callable[..., Case]) -> None:
    dispatched = case_in(CaseState.DISPATCHED)

    dispatched.handle(NOON, "officer-3")

    assert dispatched.state is CaseState.DISPATCHED
    assert dispatched.handled_at is None
    assert dispatched.version == 3


@pytest.mark.parametrize(("action", "state"), [(a, sorted(s)[0]) for a, s in ALLOWED_FROM.items()],
                         ids=[a.value for a in ALLOWED_FROM])
def test_every_action_needs_an_actor(
    case_in: Callable[..., Case], calendar: SlaCalendar, action: Action, state: CaseState
) -> None:
    with pytest.raises(IllegalTransition, match=f"{action.value} on case case-1 needs an actor"):
        PERFORM[action](case_in(state), calendar, "")


REASONED: dict[Action, tuple[CaseState, Callable[[Case, SlaCalendar, str], Case]]] = {
    Action.SEND_BACK: (CaseState.DISPATCHED, lambda c, cal, why: c.send_back(NOON, "officer-3", reason=why)),
    Action.ESCALATE: (CaseState.DISPATCHED, lambda c, cal, why: c.escalate(NOON, "supervisor", reason=why)),
    Action.SUSPEND: (CaseState.DISPATCHED,
                     lambda c, cal, why: c.suspend(NOON, "dept-lead", reason=why, calendar=cal)),
    Action.EXTEND: (CaseState.DISPATCHED, lambda c, cal, why: c.extend(
        NOON, "dept-lead", by=parse_term("2h working"), calendar=cal, reason=why)),
    Action.VOID: (CaseState.REPORTED, lambda c, cal, why: c.void(NOON, "operator-1", reason=why)),
    Action.VERIFY_FAIL: (CaseState.HANDLED,
                         lambda c, cal, why: c.verify(NOON, "inspector-7", passed=False, note=why)),
}


@pytest.mark.parametrize("reason", ["", "   "], ids=["empty", "blank"])
@pytest.mark.parametrize("action", list(REASONED), ids=[a.value for a in REASONED])
def test_actions_that_need_a_reason_refuse_an_empty_one(
    case_in: Callable[..., Case], calendar: SlaCalendar, action: Action, reason: str
) -> None:
    state, perform = REASONED[action]

    with pytest.raises(IllegalTransition, match=f"{action.value} on case case-1 needs a reason"):
        perform(case_in(state), calendar, reason)


# --- report and file -----------------------------------------------------------------------------------


def test_report_creates_a_reported_case_with_its_first_audited_event() -> None:
    at = sh(2025, 9, 22, 9)
    evidence = (Evidence(at, "cam-tianping-01", "stall in no-vending zone", "snap/1.jpg"),)

    case = report("case-9", grid_code="310104003001002", category="0501", source=Source.CAMERA, at=at,
                  actor="detector", title="unlicensed vending", evidence=evidence)

    assert case.state is CaseState.REPORTED
    assert (case.id, case.grid_code, case.category, case.source, case.reported_at) == (
        "case-9", "310104003001002", "0501", Source.CAMERA, at,
    )
    assert (case.severity, case.urgent, case.title, case.evidence) == ("normal", False, "unlicensed vending", evidence)
    assert case.version == 1
    assert case.history == (CaseEvent(1, Action.REPORT, None, CaseState.REPORTED, at, "detector", "unlicensed vending",
                                      {"grid_code": "310104003001002", "category": "0501", "source": "camera"}),)


def test_report_keeps_severity_and_urgency() -> None:
    case = report("case-9", grid_code="310104003001002", category="0103", source=Source.SENSOR,
                  at=sh(2025, 9, 22, 3), actor="manhole-0001", severity=Severity.URGENT, urgent=True)

    assert (case.severity, case.urgent) == ("urgent", True)


@pytest.mark.parametrize("scale", [
    [Severity.NORMAL, Severity.WARNING, Severity.URGENT],
    [Severity.NORMAL, Severity.SHORT_HEAVY_RAIN, Severity.BLUE, Severity.YELLOW, Severity.ORANGE, Severity.RED],
], ids=["crowds and covers", "rainstorm signals"])
def test_each_severity_scale_ranks_higher_as_it_rises(scale: list[Severity]) -> None:
    assert all(lower.rank < higher.rank for lower, higher in itertools.pairwise(scale))


def test_severities_travel_as_these_strings_on_the_wire_and_in_the_database() -> None:
    assert {s.value for s in Severity} == {
        "normal", "warning", "urgent", "short_heavy_rain", "blue", "yellow", "orange", "red",
    }


def test_report_needs_an_actor() -> None:
    with pytest.raises(IllegalTransition, match="report of case case-9 needs an actor"):
        report("case-9", grid_code="310104003001002", category="0501", source=Source.CAMERA,
               at=sh(2025, 9, 22, 9), actor="")


def test_file_accepts_a_report_as_a_case(case_in: Callable[..., Case]) -> None:
    case = case_in(CaseState.REPORTED).file(sh(2025, 9, 22, 9, 5), "operator-1", note="confirmed on video")

    assert case.state is CaseState.FILED
    assert case.filed_at == sh(2025, 9, 22, 9, 5)
    assert last_event(case) == CaseEvent(2, Action.FILE, CaseState.REPORTED, CaseState.FILED,
                                         sh(2025, 9, 22, 9, 5), "operator-1", "confirmed on video", {})


# --- dispatch, reassign, send back, escalate ----------------------------------------------------------


def test_dispatch_assigns_department_and_level_and_starts_the_clock(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    term = parse_term("4h working")

    case = case_in(CaseState.FILED).dispatch(sh(2025, 9, 22, 9, 10), "operator-1", department="城管执法",
                                             tier=Tier.COMMUNITY, term=term, calendar=calendar, note="vendor")

    assert case.state is CaseState.DISPATCHED
    assert (case.department, case.tier, case.term) == ("城管执法", Tier.COMMUNITY, term)
    assert case.dispatched_at == sh(2025, 9, 22, 9, 10)
    # 09:10 + 4 working hours, all inside Monday's 08:30–17:30.
    assert case.deadline_at == sh(2025, 9, 22, 13, 10)
    assert last_event(case) == CaseEvent(
        3, Action.DISPATCH, CaseState.FILED, CaseState.DISPATCHED, sh(2025, 9, 22, 9, 10), "operator-1", "vendor",
        {"department": "城管执法", "tier": "community", "deadline_at": "2025-09-22T13:10:00+08:00"},
    )


def test_dispatch_of_an_urgent_term_counts_natural_time(case_in: Callable[..., Case], calendar: SlaCalendar) -> None:
    # Saturday night: an open manhole cover still has 2 hours, day or night.
    case = case_in(CaseState.FILED).dispatch(sh(2025, 9, 20, 23), "system", department="水务", tier=Tier.STREET,
                                             term=parse_term("2h natural"), calendar=calendar)

    assert case.deadline_at == sh(2025, 9, 21, 1)


def test_reassign_moves_the_case_to_another_department_and_keeps_the_deadline(case_in: Callable[..., Case]) -> None:
    dispatched = case_in(CaseState.DISPATCHED)

    case = dispatched.reassign(NOON, "operator-1", department="市场监管", note="licensed shop")

    assert case.state is CaseState.DISPATCHED
    assert case.department == "市场监管"
    assert case.reassign_count == 1
    assert case.deadline_at == dispatched.deadline_at == sh(2025, 9, 22, 13, 10)
    assert last_event(case) == CaseEvent(4, Action.REASSIGN, CaseState.DISPATCHED, CaseState.DISPATCHED, NOON,
                                         "operator-1", "licensed shop",
                                         {"from_department": "城管执法", "department": "市场监管"})


def test_reassign_to_the_same_department_raises(case_in: Callable[..., Case]) -> None:
    with pytest.raises(IllegalTransition, match="case-1 is already with 城管执法"):
        case_in(CaseState.DISPATCHED).reassign(NOON, "operator-1", department="城管执法")


def test_send_back_returns_the_case_to_filed_one_level_up(case_in: Callable[..., Case]) -> None:
    case = case_in(CaseState.DISPATCHED).send_back(NOON, "officer-3", reason="a street-level matter")

    assert case.state is CaseState.FILED
    assert case.tier is Tier.STREET
    assert case.send_back_count == 1
    assert last_event(case) == CaseEvent(4, Action.SEND_BACK, CaseState.DISPATCHED, CaseState.FILED, NOON,
                                         "officer-3", "a street-level matter",
                                         {"from_department": "城管执法", "tier": "street"})


def test_send_back_from_the_district_stays_at_the_district(case_in: Callable[..., Case]) -> None:
    case = case_in(CaseState.DISPATCHED, tier=Tier.DISTRICT).send_back(NOON, "officer-3", reason="not ours")

    assert case.tier is Tier.DISTRICT
    assert last_event(case).data["tier"] == "district"


def test_a_case_sent_back_without_a_level_goes_to_the_street(case_in: Callable[..., Case]) -> None:
    untiered = dataclasses.replace(case_in(CaseState.DISPATCHED), tier=None, department=None)

    case = untiered.send_back(NOON, "officer-3", reason="not ours")

    assert case.tier is Tier.STREET
    assert last_event(case).data == {"from_department": "", "tier": "street"}


def test_dispatch_after_send_back_keeps_the_first_dispatch_time_and_restarts_the_deadline(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    sent_back = case_in(CaseState.DISPATCHED).send_back(sh(2025, 9, 22, 10), "officer-3", reason="not ours")

    case = sent_back.dispatch(sh(2025, 9, 22, 10, 30), "operator-1", department="市场监管", tier=Tier.STREET,
                              term=parse_term("2h working"), calendar=calendar)

    assert case.dispatched_at == sh(2025, 9, 22, 9, 10)
    assert case.deadline_at == sh(2025, 9, 22, 12, 30)  # 10:30 + 2 working hours
    assert case.department == "市场监管"


def test_escalate_supervises_the_case_from_one_level_up(case_in: Callable[..., Case]) -> None:
    dispatched = case_in(CaseState.DISPATCHED)

    case = dispatched.escalate(sh(2025, 9, 22, 13, 30), "supervisor", reason="overdue")

    assert case.state is CaseState.DISPATCHED
    assert case.tier is Tier.STREET
    assert case.escalation_count == 1
    assert (case.department, case.deadline_at) == (dispatched.department, dispatched.deadline_at)
    assert last_event(case) == CaseEvent(4, Action.ESCALATE, CaseState.DISPATCHED, CaseState.DISPATCHED,
                                         sh(2025, 9, 22, 13, 30), "supervisor", "overdue",
                                         {"from_tier": "community", "tier": "street"})


def test_escalation_climbs_to_the_district_and_stays_there(case_in: Callable[..., Case]) -> None:
    case = case_in(CaseState.DISPATCHED)
    tiers = []
    for _ in range(3):
        case = case.escalate(NOON, "supervisor", reason="overdue")
        tiers.append(case.tier)

    assert tiers == [Tier.STREET, Tier.DISTRICT, Tier.DISTRICT]
    assert case.escalation_count == 3
    assert last_event(case).data == {"from_tier": "district", "tier": "district"}


def test_a_case_escalated_without_a_level_goes_to_the_street(case_in: Callable[..., Case]) -> None:
    untiered = dataclasses.replace(case_in(CaseState.DISPATCHED), tier=None)

    case = untiered.escalate(NOON, "supervisor", reason="overdue")

    assert case.tier is Tier.STREET
    assert last_event(case).data == {"from_tier": "", "tier": "street"}


@pytest.mark.parametrize(("tier", "up"), [(Tier.COMMUNITY, Tier.STREET), (Tier.STREET, Tier.DISTRICT),
                                          (Tier.DISTRICT, Tier.DISTRICT)])
def test_each_tier_goes_up_one_level_and_the_district_stays(tier: Tier, up: Tier) -> None:
    assert tier.up() is up


# --- handle and verify ---------------------------------------------------------------------------------


def test_handle_records_the_department_feedback(case_in: Callable[..., Case]) -> None:
    case = case_in(CaseState.DISPATCHED).handle(sh(2025, 9, 22, 11), "officer-3", note="vendor moved on")

    assert case.state is CaseState.HANDLED
    assert case.handled_at == case.first_handled_at == sh(2025, 9, 22, 11)
    assert last_event(case) == CaseEvent(4, Action.HANDLE, CaseState.DISPATCHED, CaseState.HANDLED,
                                         sh(2025, 9, 22, 11), "officer-3", "vendor moved on", {})


def test_verify_passed_closes_the_case(case_in: Callable[..., Case]) -> None:
    case = case_in(CaseState.HANDLED).verify(sh(2025, 9, 22, 11, 30), "inspector-7", passed=True, note="gone")

    assert case.state is CaseState.CLOSED
    assert case.closed_at == sh(2025, 9, 22, 11, 30)
    assert last_event(case) == CaseEvent(5, Action.VERIFY_PASS, CaseState.HANDLED, CaseState.CLOSED,
                                         sh(2025, 9, 22, 11, 30), "inspector-7", "gone", {})


def test_verify_failed_sends_the_case_back_for_rework_with_the_same_deadline(case_in: Callable[..., Case]) -> None:
    handled = case_in(CaseState.HANDLED)

    case = handled.verify(sh(2025, 9, 22, 11, 30), "inspector-7", passed=False, note="vendor is back")

    assert case.state is CaseState.DISPATCHED
    assert case.rework_count == 1
    assert case.deadline_at == handled.deadline_at == sh(2025, 9, 22, 13, 10)
    assert case.closed_at is None
    assert last_event(case) == CaseEvent(5, Action.VERIFY_FAIL, CaseState.HANDLED, CaseState.DISPATCHED,
                                         sh(2025, 9, 22, 11, 30), "inspector-7", "vendor is back", {})


def test_rework_counts_every_failed_verification_and_keeps_the_first_handling_time(
    case_in: Callable[..., Case],
) -> None:
    case = case_in(CaseState.HANDLED)  # first handled at 11:00
    case = case.verify(sh(2025, 9, 22, 11, 30), "inspector-7", passed=False, note="vendor is back")
    case = case.handle(sh(2025, 9, 22, 12), "officer-3")
    case = case.verify(sh(2025, 9, 22, 12, 30), "inspector-7", passed=False, note="back again")
    case = case.handle(sh(2025, 9, 22, 13), "officer-3")

    assert case.rework_count == 2
    assert case.first_handled_at == sh(2025, 9, 22, 11)
    assert case.handled_at == sh(2025, 9, 22, 13)


# --- suspend, resume, extend ----------------------------------------------------------------------------


def test_suspend_pauses_the_clock_and_keeps_the_working_time_left(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    case = case_in(CaseState.DISPATCHED).suspend(sh(2025, 9, 22, 10, 10), "dept-lead", reason="owner abroad",
                                                 calendar=calendar)

    assert case.state is CaseState.SUSPENDED
    assert case.suspended_at == sh(2025, 9, 22, 10, 10)
    # 10:10 → 13:10 deadline: 3 working hours left.
    assert case.remaining_when_suspended == 3 * H
    assert last_event(case) == CaseEvent(4, Action.SUSPEND, CaseState.DISPATCHED, CaseState.SUSPENDED,
                                         sh(2025, 9, 22, 10, 10), "dept-lead", "owner abroad",
                                         {"remaining_s": "10800"})


def test_a_case_suspended_after_its_deadline_has_no_time_left(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    case = case_in(CaseState.DISPATCHED).suspend(sh(2025, 9, 22, 14), "dept-lead", reason="late", calendar=calendar)

    assert case.remaining_when_suspended == timedelta(0)
    assert last_event(case).data == {"remaining_s": "0"}


def test_resume_restarts_the_clock_with_the_time_that_was_left(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    suspended = case_in(CaseState.SUSPENDED)  # at Monday 10:10 with 3 working hours left

    case = suspended.resume(sh(2025, 9, 24, 16, 30), "dept-lead", calendar=calendar, note="owner back")

    assert case.state is CaseState.DISPATCHED
    # 1 h on Wednesday until 17:30, 2 h on Thursday from 08:30.
    assert case.deadline_at == sh(2025, 9, 25, 10, 30)
    assert (case.suspended_at, case.remaining_when_suspended) == (None, None)
    # Monday 10:10 → Wednesday 16:30 in natural time.
    assert case.suspended_total == timedelta(days=2, hours=6, minutes=20)
    assert last_event(case) == CaseEvent(5, Action.RESUME, CaseState.SUSPENDED, CaseState.DISPATCHED,
                                         sh(2025, 9, 24, 16, 30), "dept-lead", "owner back",
                                         {"deadline_at": "2025-09-25T10:30:00+08:00"})


def test_resuming_over_a_holiday_skips_it(case_in: Callable[..., Case], calendar: SlaCalendar) -> None:
    suspended = case_in(CaseState.SUSPENDED)  # 3 working hours left

    case = suspended.resume(sh(2025, 9, 30, 16, 30), "dept-lead", calendar=calendar)

    # 1 h on 09-30, National Day 10-01..10-08 off, 2 h on Thursday 10-09.
    assert case.deadline_at == sh(2025, 10, 9, 10, 30)


def test_suspended_time_adds_up_over_several_suspensions(case_in: Callable[..., Case], calendar: SlaCalendar) -> None:
    case = case_in(CaseState.SUSPENDED)  # at 10:10
    case = case.resume(sh(2025, 9, 22, 10, 40), "dept-lead", calendar=calendar)  # 30 min
    case = case.suspend(sh(2025, 9, 22, 11), "dept-lead", reason="again", calendar=calendar)
    case = case.resume(sh(2025, 9, 22, 12), "dept-lead", calendar=calendar)  # 60 min

    assert case.suspended_total == timedelta(minutes=90)


def test_a_case_resumed_with_no_time_left_is_due_at_once(case_in: Callable[..., Case], calendar: SlaCalendar) -> None:
    late = case_in(CaseState.DISPATCHED).suspend(sh(2025, 9, 22, 14), "dept-lead", reason="late", calendar=calendar)

    case = late.resume(sh(2025, 9, 23, 9), "dept-lead", calendar=calendar)

    assert case.deadline_at == sh(2025, 9, 23, 9)
    assert case.is_overdue(sh(2025, 9, 23, 9, 1))


def test_extend_while_dispatched_moves_the_deadline(case_in: Callable[..., Case], calendar: SlaCalendar) -> None:
    case = case_in(CaseState.DISPATCHED).extend(NOON, "dept-lead", by=parse_term("2h working"), calendar=calendar,
                                                reason="needs a permit")

    assert case.state is CaseState.DISPATCHED
    assert case.deadline_at == sh(2025, 9, 22, 15, 10)  # 13:10 + 2 working hours
    assert case.extension_count == 1
    assert last_event(case) == CaseEvent(4, Action.EXTEND, CaseState.DISPATCHED, CaseState.DISPATCHED, NOON,
                                         "dept-lead", "needs a permit",
                                         {"by": "2h working", "deadline_at": "2025-09-22T15:10:00+08:00"})


def test_extend_by_a_working_day_lands_at_the_same_time_next_working_day(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    case = case_in(CaseState.DISPATCHED)
    for _ in range(2):
        case = case.extend(NOON, "dept-lead", by=parse_term("1d working"), calendar=calendar, reason="permit")

    assert case.deadline_at == sh(2025, 9, 24, 13, 10)
    assert case.extension_count == 2


def test_extend_while_suspended_is_kept_for_when_the_case_resumes(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    suspended = case_in(CaseState.SUSPENDED)  # 3 working hours left, deadline 13:10

    case = suspended.extend(NOON, "dept-lead", by=parse_term("1d working"), calendar=calendar, reason="permit")

    assert case.state is CaseState.SUSPENDED
    assert case.remaining_when_suspended == 3 * H
    assert case.extensions_on_resume == (parse_term("1d working"),)
    assert case.deadline_at == suspended.deadline_at
    assert case.extension_count == 1
    assert last_event(case) == CaseEvent(5, Action.EXTEND, CaseState.SUSPENDED, CaseState.SUSPENDED, NOON,
                                         "dept-lead", "permit", {"by": "9h working", "applies": "on resume"})


def test_a_suspended_extension_counts_once_the_case_resumes(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    case = case_in(CaseState.SUSPENDED).extend(NOON, "dept-lead", by=parse_term("1d working"), calendar=calendar,
                                               reason="permit")

    case = case.resume(sh(2025, 9, 23, 8, 30), "dept-lead", calendar=calendar)

    # 12 working hours from Tuesday 08:30: 9 h on Tuesday, 3 h on Wednesday.
    assert case.deadline_at == sh(2025, 9, 24, 11, 30)


def test_extending_a_suspended_case_and_resuming_equals_resuming_and_extending(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    # Suspended with 3 working hours left; resumed Monday 13:00, so the clock would run out at 16:00.
    # Extending by 24 natural hours must then give Tuesday 16:00 either way round.
    by = parse_term("24h natural")
    resume_at = sh(2025, 9, 22, 13)
    suspended = case_in(CaseState.SUSPENDED)

    extended_then_resumed = suspended.extend(NOON, "dept-lead", by=by, calendar=calendar, reason="permit").resume(
        resume_at, "dept-lead", calendar=calendar)
    resumed_then_extended = suspended.resume(resume_at, "dept-lead", calendar=calendar).extend(
        resume_at, "dept-lead", by=by, calendar=calendar, reason="permit")

    assert resumed_then_extended.deadline_at == sh(2025, 9, 23, 16)
    assert extended_then_resumed.deadline_at == resumed_then_extended.deadline_at


# --- void, rate, upgrade, attach -------------------------------------------------------------------------


@pytest.mark.parametrize("state", OPEN_STATES)
def test_void_cancels_an_open_case(case_in: Callable[..., Case], state: CaseState) -> None:
    before = case_in(state)

    case = before.void(NOON, "operator-1", reason="duplicate of case-0")

    assert case.state is CaseState.VOIDED
    assert case.voided_at == NOON
    assert last_event(case) == CaseEvent(before.version + 1, Action.VOID, state, CaseState.VOIDED, NOON,
                                         "operator-1", "duplicate of case-0", {})


@pytest.mark.parametrize("satisfied", [True, False])
def test_rate_records_the_reporters_satisfaction(case_in: Callable[..., Case], satisfied: bool) -> None:
    case = case_in(CaseState.CLOSED, source=Source.CITIZEN).rate(NOON, "citizen-1", satisfied=satisfied, note="ok")

    assert case.state is CaseState.CLOSED
    assert case.satisfied is satisfied
    assert last_event(case) == CaseEvent(6, Action.RATE, CaseState.CLOSED, CaseState.CLOSED, NOON, "citizen-1",
                                         "ok", {"satisfied": str(satisfied).lower()})


def test_a_case_can_be_rated_only_once(case_in: Callable[..., Case]) -> None:
    rated = case_in(CaseState.CLOSED).rate(NOON, "citizen-1", satisfied=False)

    with pytest.raises(IllegalTransition, match="case-1 is already rated"):
        rated.rate(NOON, "citizen-1", satisfied=True)


@pytest.mark.parametrize("state", OPEN_STATES)
def test_upgrade_changes_the_severity_and_keeps_the_state(case_in: Callable[..., Case], state: CaseState) -> None:
    before = case_in(state)

    case = before.upgrade(NOON, "rain-watcher", severity=Severity.RED, note="red rainstorm signal")

    assert (case.state, case.severity, case.urgent) == (state, "red", False)
    assert last_event(case) == CaseEvent(before.version + 1, Action.UPGRADE, state, state, NOON, "rain-watcher",
                                         "red rainstorm signal",
                                         {"from_severity": "normal", "severity": "red", "urgent": "false"})


def test_upgrade_can_make_a_case_urgent_and_back(case_in: Callable[..., Case]) -> None:
    urgent = case_in(CaseState.FILED).upgrade(NOON, "system", severity=Severity.URGENT, urgent=True)
    calmer = urgent.upgrade(NOON, "system", severity=Severity.ORANGE, urgent=False)
    unchanged = urgent.upgrade(NOON, "system", severity=Severity.RED)

    assert urgent.urgent is True
    assert last_event(urgent).data["urgent"] == "true"
    assert calmer.urgent is False
    assert unchanged.urgent is True
    assert last_event(unchanged).data["from_severity"] == "urgent"


@pytest.mark.parametrize("state", OPEN_STATES)
def test_attach_adds_evidence_to_an_open_case(case_in: Callable[..., Case], state: CaseState) -> None:
    before = case_in(state)
    evidence = Evidence(sh(2025, 9, 22, 12, 5), "cam-tianping-01", "stall still there", "snap/2.jpg")

    case = before.attach(evidence, "detector")

    assert case.state is state
    assert case.evidence == (*before.evidence, evidence)
    assert last_event(case) == CaseEvent(before.version + 1, Action.ATTACH, state, state, sh(2025, 9, 22, 12, 5),
                                         "detector", "stall still there",
                                         {"source_id": "cam-tianping-01", "ref": "snap/2.jpg"})


# --- history and deadlines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "state"),
    [
        (sh(2025, 9, 22, 8, 59), None),  # before it was reported
        (sh(2025, 9, 22, 9), CaseState.REPORTED),  # an event counts from its own moment
        (sh(2025, 9, 22, 9, 7), CaseState.FILED),
        (sh(2025, 9, 22, 10), CaseState.DISPATCHED),
        (sh(2025, 9, 22, 11, 15), CaseState.HANDLED),
        (sh(2025, 9, 23), CaseState.CLOSED),
    ],
)
def test_state_at_replays_the_history(case_in: Callable[..., Case], moment: datetime, state: CaseState | None) -> None:
    assert case_in(CaseState.CLOSED).state_at(moment) is state


def test_state_at_sees_a_suspension_and_the_resumption(case_in: Callable[..., Case], calendar: SlaCalendar) -> None:
    case = case_in(CaseState.SUSPENDED).resume(sh(2025, 9, 23, 9), "dept-lead", calendar=calendar)

    assert case.state_at(sh(2025, 9, 22, 10, 9)) is CaseState.DISPATCHED
    assert case.state_at(sh(2025, 9, 22, 17)) is CaseState.SUSPENDED
    assert case.state_at(sh(2025, 9, 23, 9)) is CaseState.DISPATCHED


@pytest.mark.parametrize(
    ("now", "overdue"),
    [(sh(2025, 9, 22, 13, 9), False), (sh(2025, 9, 22, 13, 10), False), (sh(2025, 9, 22, 13, 11), True)],
    ids=["before", "at-the-deadline", "after"],
)
def test_a_dispatched_case_is_overdue_only_after_its_deadline(
    case_in: Callable[..., Case], now: datetime, overdue: bool
) -> None:
    assert case_in(CaseState.DISPATCHED).is_overdue(now) is overdue


@pytest.mark.parametrize("state", [s for s in CaseState if s is not CaseState.DISPATCHED])
def test_only_a_dispatched_case_can_be_overdue(case_in: Callable[..., Case], state: CaseState) -> None:
    # A day after the 13:10 deadline: suspended, handled, closed (and never-dispatched) cases are not overdue.
    assert not case_in(state).is_overdue(sh(2025, 9, 23, 13, 10))


def test_dispatch_needs_a_tier_when_the_case_has_none(case_in: Callable[..., Case], calendar: SlaCalendar) -> None:
    with pytest.raises(IllegalTransition, match="dispatch of case case-1 needs a tier"):
        case_in(CaseState.FILED).dispatch(NOON, "dispatcher", department="城管执法", term=parse_term("2h working"),
                                          calendar=calendar)


def test_a_sent_back_case_is_redispatched_at_its_raised_level(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    returned = case_in(CaseState.DISPATCHED).send_back(NOON, "officer-3", reason="a street-level matter")

    case = returned.dispatch(NOON, "dispatcher", department="城管执法", term=parse_term("2h working"),
                             calendar=calendar)

    assert case.tier is returned.tier is Tier.STREET


# --- undoing a review decision (撤销) -------------------------------------------------------------------


def test_reopening_a_confirmed_and_dispatched_case_clears_its_filing_and_dispatch(
    case_in: Callable[..., Case], calendar: SlaCalendar
) -> None:
    reopened = case_in(CaseState.DISPATCHED).reopen(NOON, "operator-1", window=timedelta(days=30))
    assert (reopened.state, reopened.filed_at, reopened.dispatched_at, reopened.deadline_at, reopened.department,
            reopened.tier) == (CaseState.REPORTED, None, None, None, None, None)
    assert last_event(reopened).data == {"undone": "file"}


def test_reopening_a_dismissed_case_clears_its_voiding(case_in: Callable[..., Case]) -> None:
    reopened = case_in(CaseState.VOIDED).reopen(NOON, "operator-1", window=timedelta(days=30))
    assert (reopened.state, reopened.voided_at, last_event(reopened).data) == (
        CaseState.REPORTED, None, {"undone": "void"})


def test_a_decision_older_than_the_window_cannot_be_undone(case_in: Callable[..., Case]) -> None:
    with pytest.raises(IllegalTransition, match="older than the undo window of 60 s"):
        case_in(CaseState.FILED).reopen(NOON, "operator-1", window=timedelta(seconds=60))


def test_a_case_that_moved_on_since_its_decision_cannot_be_undone(case_in: Callable[..., Case]) -> None:
    reassigned = case_in(CaseState.DISPATCHED).reassign(NOON, "center-1", department="市场监管")
    with pytest.raises(IllegalTransition, match="has moved on"):
        reassigned.reopen(NOON, "operator-1", window=timedelta(days=30))


def test_a_case_reported_then_reopened_can_be_decided_and_undone_again(case_in: Callable[..., Case]) -> None:
    again = case_in(CaseState.VOIDED).reopen(NOON, "operator-1", window=timedelta(days=30)).file(NOON, "operator-1")
    assert again.reopen(NOON + H, "operator-1", window=timedelta(hours=2)).state is CaseState.REPORTED
