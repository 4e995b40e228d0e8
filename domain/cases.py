"""Grid cases (案件) and their closed loop: 发现上报 → 立案 → 派遣 → 处置 → 核查 → 结案 → 评价.

A `Case` is an immutable value; every transition returns a new case with one more audited
`CaseEvent` (who, when, what, note). Illegal transitions raise `IllegalTransition` naming the
action, the state and the states the action is allowed from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from types import MappingProxyType

from domain.sla import SlaCalendar, SlaTerm


class CaseState(StrEnum):
    """Where a case stands in the closed loop."""

    REPORTED = "reported"  # 上报, awaiting 立案 (e.g. an unconfirmed camera detection)
    FILED = "filed"  # 立案
    DISPATCHED = "dispatched"  # 派遣: a department holds it, the SLA clock runs
    HANDLED = "handled"  # 处置: the department reported back, awaiting 核查
    SUSPENDED = "suspended"  # 缓办: clock paused
    CLOSED = "closed"  # 结案
    VOIDED = "voided"  # 注销: invalid or duplicate

    @property
    def is_open(self) -> bool:
        """Open cases still need work; closed and voided ones are final."""
        return self not in (CaseState.CLOSED, CaseState.VOIDED)


class Action(StrEnum):
    """Everything that can happen to a case; each one is recorded as a `CaseEvent`."""

    REPORT = "report"  # 上报
    FILE = "file"  # 立案
    DISPATCH = "dispatch"  # 派遣
    REASSIGN = "reassign"  # 改派: another department takes it over
    SEND_BACK = "send_back"  # 回退: the department returns it; it goes one level up
    ESCALATE = "escalate"  # 督办: overdue; it goes one level up
    HANDLE = "handle"  # 处置反馈
    VERIFY_PASS = "verify_pass"  # 核查通过 → 结案
    VERIFY_FAIL = "verify_fail"  # 核查不通过 → 返工
    SUSPEND = "suspend"  # 缓办
    RESUME = "resume"
    EXTEND = "extend"  # 延期
    VOID = "void"  # 注销
    RATE = "rate"  # 评价
    REOPEN = "reopen"  # 撤销: an operator takes back a review decision (confirm or dismiss) within the undo window
    UPGRADE = "upgrade"  # severity change
    ATTACH = "attach"  # new evidence


class Tier(IntEnum):
    """The level that handles a case (小事不出社区、大事不出街道、难事区内统筹)."""

    COMMUNITY = 1  # 社区工作站
    STREET = 2  # 街道中心
    DISTRICT = 3  # 区中心

    def up(self) -> Tier:
        """The next level up (the district stays the district)."""
        return Tier(min(self + 1, Tier.DISTRICT))


class Source(StrEnum):
    """Where the case came from."""

    SENSOR = "sensor"
    CAMERA = "camera"
    CITIZEN = "citizen"  # 12345 hotline, app
    PATROL = "patrol"  # grid inspector (网格员)


class Severity(StrEnum):
    """How serious a case is; the value is what the records and the database carry.

    Two scales share it: warning and urgent (crowds, displaced covers), and the rainstorm signals
    (暴雨预警信号) from short-heavy rain up to red. A case only ever moves up its own scale.
    """

    NORMAL = "normal"
    WARNING = "warning"
    URGENT = "urgent"
    SHORT_HEAVY_RAIN = "short_heavy_rain"  # 短时强降水
    BLUE = "blue"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"

    @property
    def rank(self) -> int:
        """Higher is more serious; ranks compare within a scale (normal is the bottom of both)."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK: Mapping[Severity, int] = MappingProxyType({
    Severity.NORMAL: 0, Severity.WARNING: 1, Severity.URGENT: 2,
    Severity.SHORT_HEAVY_RAIN: 1, Severity.BLUE: 2, Severity.YELLOW: 3, Severity.ORANGE: 4, Severity.RED: 5,
})


class IllegalTransition(ValueError):
    """An action that the case's current state does not allow, or that lacks what it needs."""


_S = CaseState
_OPEN_STATES = frozenset(s for s in CaseState if s.is_open)

#: action → states it is allowed from; the target state is decided by the action itself.
ALLOWED_FROM: Mapping[Action, frozenset[CaseState]] = MappingProxyType({
    Action.FILE: frozenset({_S.REPORTED}),
    Action.DISPATCH: frozenset({_S.FILED}),
    Action.REASSIGN: frozenset({_S.DISPATCHED}),
    Action.SEND_BACK: frozenset({_S.DISPATCHED}),
    Action.ESCALATE: frozenset({_S.DISPATCHED}),
    Action.HANDLE: frozenset({_S.DISPATCHED}),
    Action.VERIFY_PASS: frozenset({_S.HANDLED}),
    Action.VERIFY_FAIL: frozenset({_S.HANDLED}),
    Action.SUSPEND: frozenset({_S.DISPATCHED}),
    Action.RESUME: frozenset({_S.SUSPENDED}),
    Action.EXTEND: frozenset({_S.DISPATCHED, _S.SUSPENDED}),
    Action.VOID: _OPEN_STATES,
    Action.RATE: frozenset({_S.CLOSED}),
    Action.REOPEN: frozenset({_S.FILED, _S.DISPATCHED, _S.VOIDED}),
    Action.UPGRADE: _OPEN_STATES,
    Action.ATTACH: _OPEN_STATES,
})


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """One audited step in a case's timeline."""

    version: int
    action: Action
    from_state: CaseState | None
    to_state: CaseState
    at: datetime
    actor: str
    note: str = ""
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evidence:
    """A signal attached to a case: a device reading, a camera snapshot or a citizen's or department's photo.

    `ref` names an image in the evidence store; `detail` carries what a reviewer needs beside the summary (a
    detection's camera, zone, kind and confidence).
    """

    at: datetime
    source_id: str
    summary: str
    ref: str = ""
    detail: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """A grid case; create one with `report()`, move it with the transition methods."""

    id: str
    grid_code: str
    category: str
    source: Source
    state: CaseState
    reported_at: datetime
    severity: Severity = Severity.NORMAL
    urgent: bool = False
    title: str = ""
    term: SlaTerm | None = None
    department: str | None = None
    tier: Tier | None = None
    filed_at: datetime | None = None
    dispatched_at: datetime | None = None
    deadline_at: datetime | None = None
    first_handled_at: datetime | None = None
    handled_at: datetime | None = None
    closed_at: datetime | None = None
    voided_at: datetime | None = None
    suspended_at: datetime | None = None
    remaining_when_suspended: timedelta | None = None
    suspended_total: timedelta = timedelta(0)
    extensions_on_resume: tuple[SlaTerm, ...] = ()
    rework_count: int = 0
    extension_count: int = 0
    escalation_count: int = 0
    reassign_count: int = 0
    send_back_count: int = 0
    satisfied: bool | None = None
    evidence: tuple[Evidence, ...] = ()
    history: tuple[CaseEvent, ...] = ()

    @property
    def version(self) -> int:
        """Number of events in the case's timeline; increases by one with every transition."""
        return len(self.history)

    def state_at(self, moment: datetime) -> CaseState | None:
        """The state the case was in at `moment` (None before it was reported)."""
        state = None
        for event in self.history:
            if event.at > moment:
                break
            state = event.to_state
        return state

    def is_overdue(self, now: datetime) -> bool:
        """True when the case is being handled (dispatched) past its deadline."""
        return self.state is CaseState.DISPATCHED and self.deadline_at is not None and now > self.deadline_at

    # --- transitions ---------------------------------------------------------------------------

    def file(self, at: datetime, actor: str, note: str = "") -> Case:
        """立案: accept the report as a case."""
        return self._step(Action.FILE, CaseState.FILED, at, actor, note, filed_at=at)

    def dispatch(
        self, at: datetime, actor: str, *, department: str, term: SlaTerm, calendar: SlaCalendar,
        tier: Tier | None = None, note: str = "",
    ) -> Case:
        """派遣: assign a department; the level defaults to the case's current one (raised by 回退)."""
        self._require(Action.DISPATCH)
        tier = tier or self.tier
        if tier is None:
            raise IllegalTransition(f"dispatch of case {self.id} needs a tier (community, street or district)")
        deadline = calendar.deadline(at, term)
        return self._step(
            Action.DISPATCH, CaseState.DISPATCHED, at, actor, note,
            {"department": department, "tier": tier.name.lower(), "deadline_at": deadline.isoformat()},
            department=department, tier=tier, term=term, deadline_at=deadline,
            dispatched_at=self.dispatched_at or at,
        )

    def reassign(self, at: datetime, actor: str, *, department: str, note: str = "") -> Case:
        """改派: move the case to another department; the deadline stands."""
        self._require(Action.REASSIGN)
        if department == self.department:
            raise IllegalTransition(f"case {self.id} is already with {department}")
        return self._step(
            Action.REASSIGN, CaseState.DISPATCHED, at, actor, note,
            {"from_department": self.department or "", "department": department},
            department=department, reassign_count=self.reassign_count + 1,
        )

    def send_back(self, at: datetime, actor: str, *, reason: str) -> Case:
        """回退: the department returns the case; it goes back to filed, one level up, to be dispatched again."""
        self._require(Action.SEND_BACK)
        _require_reason(self.id, Action.SEND_BACK, reason)
        tier = self.tier.up() if self.tier else Tier.STREET
        return self._step(
            Action.SEND_BACK, CaseState.FILED, at, actor, reason,
            {"from_department": self.department or "", "tier": tier.name.lower()},
            tier=tier, send_back_count=self.send_back_count + 1,
        )

    def escalate(self, at: datetime, actor: str, *, reason: str) -> Case:
        """督办: the case is overdue (or stuck) at its level; supervise it from one level up."""
        self._require(Action.ESCALATE)
        _require_reason(self.id, Action.ESCALATE, reason)
        tier = self.tier.up() if self.tier else Tier.STREET
        return self._step(
            Action.ESCALATE, CaseState.DISPATCHED, at, actor, reason,
            {"from_tier": self.tier.name.lower() if self.tier else "", "tier": tier.name.lower()},
            tier=tier, escalation_count=self.escalation_count + 1,
        )

    def handle(self, at: datetime, actor: str, note: str = "") -> Case:
        """处置反馈: the department reports the problem dealt with."""
        return self._step(
            Action.HANDLE, CaseState.HANDLED, at, actor, note,
            handled_at=at, first_handled_at=self.first_handled_at or at,
        )

    def verify(self, at: datetime, actor: str, *, passed: bool, note: str = "") -> Case:
        """核查: pass closes the case (结案); fail sends it back to the department (返工), deadline unchanged."""
        if passed:
            return self._step(Action.VERIFY_PASS, CaseState.CLOSED, at, actor, note, closed_at=at)
        _require_reason(self.id, Action.VERIFY_FAIL, note)
        return self._step(
            Action.VERIFY_FAIL, CaseState.DISPATCHED, at, actor, note,
            rework_count=self.rework_count + 1,
        )

    def suspend(self, at: datetime, actor: str, *, reason: str, calendar: SlaCalendar) -> Case:
        """缓办: pause the SLA clock, keeping the time that was left."""
        self._require(Action.SUSPEND)
        _require_reason(self.id, Action.SUSPEND, reason)
        remaining = self._remaining(at, calendar)
        return self._step(
            Action.SUSPEND, CaseState.SUSPENDED, at, actor, reason,
            {"remaining_s": str(int(remaining.total_seconds()))},
            suspended_at=at, remaining_when_suspended=remaining,
        )

    def resume(self, at: datetime, actor: str, *, calendar: SlaCalendar, note: str = "") -> Case:
        """Resume a suspended case: the clock restarts with the time that was left."""
        self._require(Action.RESUME)
        assert self.term is not None and self.suspended_at is not None  # set by dispatch and suspend
        remaining = self.remaining_when_suspended or timedelta(0)
        deadline = calendar.add(at, remaining, self.term.clock)
        for extension in self.extensions_on_resume:
            deadline = calendar.add(deadline, extension.duration, extension.clock)
        return self._step(
            Action.RESUME, CaseState.DISPATCHED, at, actor, note, {"deadline_at": deadline.isoformat()},
            deadline_at=deadline, suspended_at=None, remaining_when_suspended=None, extensions_on_resume=(),
            suspended_total=self.suspended_total + (at - self.suspended_at),
        )

    def extend(self, at: datetime, actor: str, *, by: SlaTerm, calendar: SlaCalendar, reason: str) -> Case:
        """延期: move the deadline later by `by`; counted against the 延期率."""
        self._require(Action.EXTEND)
        _require_reason(self.id, Action.EXTEND, reason)
        assert self.deadline_at is not None  # every dispatched or suspended case has one
        changes: dict[str, object] = {"extension_count": self.extension_count + 1}
        if self.state is CaseState.SUSPENDED:
            # Applied after the remaining time when the case resumes, each in its own clock.
            changes["extensions_on_resume"] = (*self.extensions_on_resume, by)
            detail = {"applies": "on resume"}
        else:
            deadline = calendar.add(self.deadline_at, by.duration, by.clock)
            changes["deadline_at"] = deadline
            detail = {"deadline_at": deadline.isoformat()}
        return self._step(Action.EXTEND, self.state, at, actor, reason, {"by": str(by), **detail}, **changes)

    def void(self, at: datetime, actor: str, *, reason: str) -> Case:
        """注销: the case is invalid or a duplicate."""
        self._require(Action.VOID)
        _require_reason(self.id, Action.VOID, reason)
        return self._step(Action.VOID, CaseState.VOIDED, at, actor, reason, voided_at=at)

    def rate(self, at: datetime, actor: str, *, satisfied: bool, note: str = "") -> Case:
        """评价: the reporter's satisfaction with the result, once per case."""
        self._require(Action.RATE)
        if self.satisfied is not None:
            raise IllegalTransition(f"case {self.id} is already rated")
        return self._step(
            Action.RATE, CaseState.CLOSED, at, actor, note, {"satisfied": str(satisfied).lower()},
            satisfied=satisfied,
        )

    def upgrade(self, at: datetime, actor: str, *, severity: Severity, urgent: bool | None = None,
                note: str = "") -> Case:
        """Change the case's severity (e.g. a rainstorm signal rising from yellow to red)."""
        self._require(Action.UPGRADE)
        new_urgent = self.urgent if urgent is None else urgent
        return self._step(
            Action.UPGRADE, self.state, at, actor, note,
            {"from_severity": self.severity, "severity": severity, "urgent": str(new_urgent).lower()},
            severity=severity, urgent=new_urgent,
        )

    def reopen(self, at: datetime, actor: str, *, window: timedelta, note: str = "") -> Case:
        """撤销: take back the review decision that moved the case out of `reported`, back to awaiting review.

        Only the latest decision (立案 or 注销 of a reported case), only within `window` of it, and only while
        nothing but the routing table's dispatch and new evidence has happened to the case since.
        """
        self._require(Action.REOPEN)
        decision = next((e for e in reversed(self.history) if e.from_state is CaseState.REPORTED), None)
        if decision is None or decision.action not in (Action.FILE, Action.VOID):
            raise IllegalTransition(f"case {self.id} has no review decision to undo")
        since = self.history[decision.version:]
        if any(e.action not in (Action.DISPATCH, Action.ATTACH) for e in since) or \
                sum(e.action is Action.DISPATCH for e in since) > 1:
            raise IllegalTransition(f"case {self.id} has moved on since it was {decision.to_state.value}; "
                                    "its decision can no longer be undone")
        if at - decision.at > window:
            raise IllegalTransition(f"the decision on case {self.id} is older than the undo window of "
                                    f"{int(window.total_seconds())} s")
        return self._step(
            Action.REOPEN, CaseState.REPORTED, at, actor, note or f"undid {decision.action.value}",
            {"undone": decision.action.value},
            filed_at=None, dispatched_at=None, deadline_at=None, department=None, tier=None, term=None,
            voided_at=None,
        )

    def attach(self, evidence: Evidence, actor: str) -> Case:
        """Attach a new signal (reading, snapshot) to an open case."""
        self._require(Action.ATTACH)
        return self._step(
            Action.ATTACH, self.state, evidence.at, actor, evidence.summary,
            {"source_id": evidence.source_id, "ref": evidence.ref, **evidence.detail},
            evidence=(*self.evidence, evidence),
        )

    # --- internals -----------------------------------------------------------------------------

    def _remaining(self, at: datetime, calendar: SlaCalendar) -> timedelta:
        assert self.term is not None and self.deadline_at is not None
        return max(timedelta(0), calendar.between(at, self.deadline_at, self.term.clock))

    def _require(self, action: Action) -> None:
        allowed = ALLOWED_FROM[action]
        if self.state not in allowed:
            names = ", ".join(sorted(s.value for s in allowed))
            raise IllegalTransition(
                f"cannot {action.value} case {self.id} in state {self.state.value} (allowed from: {names})"
            )

    def _step(
        self, action: Action, to_state: CaseState, at: datetime, actor: str, note: str,
        data: Mapping[str, str] | None = None, **changes: object,
    ) -> Case:
        self._require(action)
        if not actor.strip():
            raise IllegalTransition(f"{action.value} on case {self.id} needs an actor")
        event = CaseEvent(self.version + 1, action, self.state, to_state, at, actor, note, dict(data or {}))
        return replace(self, state=to_state, history=(*self.history, event), **changes)  # type: ignore[arg-type]


def report(
    case_id: str, *, grid_code: str, category: str, source: Source, at: datetime, actor: str,
    severity: Severity = Severity.NORMAL, urgent: bool = False, title: str = "", evidence: tuple[Evidence, ...] = (),
) -> Case:
    """发现上报: a new case in state `reported`, with its first audited event."""
    if not actor.strip():
        raise IllegalTransition(f"report of case {case_id} needs an actor")
    event = CaseEvent(1, Action.REPORT, None, CaseState.REPORTED, at, actor, title,
                      {"grid_code": grid_code, "category": category, "source": source.value})
    return Case(
        id=case_id, grid_code=grid_code, category=category, source=source, state=CaseState.REPORTED,
        reported_at=at, severity=severity, urgent=urgent, title=title, evidence=evidence, history=(event,),
    )


def _require_reason(case_id: str, action: Action, reason: str) -> None:
    if not reason.strip():
        raise IllegalTransition(f"{action.value} on case {case_id} needs a reason")
