"""The case engine: correlation and lifecycle automation on top of the rules, per grid cell, with no I/O.

The engine holds, for each grid cell it has seen, the samples its rules need, the health of the cell's
devices and the cell's open cases. Telemetry batches, camera detections and operators' commands go in;
`Change`s (a case after one more audited event) come out, in order. The Faust worker feeds it and
publishes the changes; tests feed it directly.

Decisions depend only on the inputs, never on when they are processed: samples are keyed by device and
measurement time (a duplicate changes nothing), windows run on event time, and a case's id is made from
its correlation key and the event time that opened it. Replaying the same records after a restart
therefore yields the same cases and the same events again, which consumers drop by (case id, version).
Two things run on a clock instead: silence (a device offline) runs on the ingest clock — the latest
receive time the worker has seen — so that a stalled pipeline does not look like a city of dead sensors;
escalation of overdue cases (督办) runs on wall-clock time, passed in by the worker's timer. The ingest
clock is kept per clock domain — the Kafka partition a cell's records come from — because partitions are
consumed at their own pace: a partition read ahead must not make the devices of one read behind look silent.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.settings import StreamsSettings
from domain.case_records import CaseCommand, Command, CommandReply, Outcome, case_doc, case_from_doc
from domain.cases import Action, Case, CaseEvent, CaseState, Evidence, IllegalTransition, Severity, Source, Tier, report
from domain.components import ComponentIdError, parse_component_id
from domain.detections import Detection, Phase
from domain.registry import Device, DeviceKind
from domain.routing import RoutingTable
from domain.sla import Clock, SlaCalendar, SlaTerm
from domain.taxonomy import CROWD_GATHERING, DEVICE_OFFLINE, LOW_BATTERY, WATERLOGGING
from domain.telemetry import Reading, StatusChange, TelemetryBatch
from streams.rules import crowd, health, manhole, rain
from streams.rules.series import Series

ACTOR = "gridhub-streams"
RECENT_PER_CELL = 20  # finished cases a cell keeps in memory for an undo, newest last


@dataclass(frozen=True, slots=True)
class CaseLimits:
    """Every threshold the rules and the lifecycle use; `limits_from` builds them from the settings."""

    rain: rain.RainThresholds
    manhole: manhole.ManholeThresholds
    crowd: crowd.CrowdThresholds
    rain_lookback_ms: int  # water near a cover counts as waterlogging if it rained this recently
    offline_factor: float
    camera_autofile_confidence: float
    lateness_ms: int
    evidence_every_ms: int
    undo_window_ms: int = 120_000


def limits_from(settings: StreamsSettings) -> CaseLimits:
    """The engine's limits from the `streams` settings section."""
    return CaseLimits(
        rain=rain.RainThresholds(settings.rain_short_heavy_1h_mm, settings.rain_blue_12h_mm,
                                 settings.rain_yellow_6h_mm, settings.rain_orange_3h_mm, settings.rain_red_3h_mm),
        manhole=manhole.ManholeThresholds(settings.manhole_tilt_deg, settings.manhole_water_margin_cm),
        crowd=crowd.CrowdThresholds(settings.crowd_warning_per_m2, settings.crowd_urgent_per_m2,
                                    settings.crowd_sustain_s * 1000),
        rain_lookback_ms=settings.manhole_rain_lookback_s * 1000,
        offline_factor=settings.offline_after_intervals,
        camera_autofile_confidence=settings.camera_autofile_confidence,
        lateness_ms=settings.allowed_lateness_s * 1000,
        evidence_every_ms=settings.evidence_every_s * 1000,
        undo_window_ms=settings.undo_window_s * 1000,
    )


@dataclass(frozen=True, slots=True)
class Change:
    """A case right after `event`, its latest audited step."""

    case: Case
    event: CaseEvent


@dataclass(slots=True)
class DeviceHealth:
    """What the engine remembers about a device's liveness and battery."""

    last_heard_ms: int = 0  # receive time of its latest message
    offline: bool = False
    battery_low: bool = False
    battery_ts_ms: int = 0  # measurement time of the battery value that decided `battery_low`


@dataclass(slots=True)
class CellState:
    """Everything the engine keeps for one grid cell."""

    grid_code: str
    rain: dict[str, Series] = field(default_factory=dict)
    crowd: dict[str, Series] = field(default_factory=dict)
    devices: dict[str, DeviceHealth] = field(default_factory=dict)
    cases: dict[str, Case] = field(default_factory=dict)  # open cases by correlation key
    finished: dict[str, int] = field(default_factory=dict)  # ids of closed or voided cases → when opened
    manhole: dict[str, Series] = field(default_factory=dict)  # which manhole reports were decided on
    last_evidence_ms: dict[str, int] = field(default_factory=dict)  # "case id|source" → event time
    clock_ms: int = 0  # the ingest clock of its domain when the cell last heard from a device
    domain: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)  # "camera/zone" → detections ignored until (event ms)
    recent: dict[str, Case] = field(default_factory=dict)  # just closed or voided, by id: an undo may still come


def correlation_key(category: str, subject: str = "") -> str:
    """At most one open case per (cell, category); component cases also per component (部件)."""
    return f"{category}/{subject}" if subject else category


def case_id(grid_code: str, key: str, opened_ms: int) -> str:
    """Deterministic id: the cell, the correlation key and the event time that opened the case."""
    stamp = datetime.fromtimestamp(opened_ms / 1000, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{grid_code}-{key.replace('/', '-')}-{stamp}{opened_ms % 1000:03d}"


class CaseEngine:
    """Turns a cell's signals into case changes (see the module docstring)."""

    def __init__(
        self, *, limits: CaseLimits, routing: RoutingTable, calendar: SlaCalendar, devices: Mapping[str, Device],
        load_cell: Callable[[str], dict[str, Any] | None] = lambda _code: None,
        load_case: Callable[[str], Case | None] = lambda _id: None,
    ) -> None:
        self.limits = limits
        self.routing = routing
        self.calendar = calendar
        self.devices = devices
        self._load_cell = load_cell
        self._load_case = load_case  # a closed or voided case, for a rating or an undo
        self.cells: dict[str, CellState] = {}
        self.dirty: set[str] = set()
        self.clocks: dict[int, int] = {}  # the ingest clock of each clock domain

    # --- inputs ------------------------------------------------------------------------------------

    def apply_telemetry(self, batch: TelemetryBatch, domain: int = 0) -> list[Change]:
        """Feed one grid cell's batch of readings and status changes, read from clock domain `domain`."""
        cell = self.cell(batch.grid_code, domain)
        out: list[Change] = []
        statuses, readings = batch.statuses, batch.readings
        for status in sorted(statuses, key=lambda s: s.ts_ms) if len(statuses) > 1 else statuses:
            self._status(cell, status, out)
        for reading in sorted(readings, key=lambda r: (r.ts_ms, r.device_id)) if len(readings) > 1 else readings:
            self._reading(cell, reading, out)
        self.dirty.add(cell.grid_code)
        return out

    def apply_detection(self, detection: Detection, domain: int = 0) -> list[Change]:
        """Feed one phase of a camera detection."""
        cell = self.cell(detection.grid_code, domain)
        out: list[Change] = []
        category = detection.category
        key = correlation_key(category)
        source_id = f"{detection.camera_id}/{detection.zone_id}"
        where = f"{detection.kind.value} in zone {detection.zone_id} of {detection.camera_id}"
        evidence = Evidence(_time(detection.at_ms), source_id,
                            f"{where} ({detection.phase.value}, confidence {detection.confidence:.2f})",
                            detection.snapshot, _detection_detail(detection))
        case = cell.cases.get(key)
        if case is None and cell.suppressed.get(source_id, 0) > detection.at_ms:
            return []  # an operator dismissed this zone's alerts for a while
        confident = detection.confidence >= self.limits.camera_autofile_confidence
        if case is None and detection.phase is Phase.START:
            self._open(cell, key, category, Source.CAMERA, detection.at_ms, evidence, out,
                       title=f"{where}", file=confident)
        elif case is not None and evidence not in case.evidence:  # a redelivered phase is already there
            if detection.phase is not Phase.UPDATE or self._evidence_due(cell, case, evidence):
                self._attach(cell, key, evidence, out)
            if confident and cell.cases[key].state is CaseState.REPORTED:
                self._push(cell, key, cell.cases[key].file(evidence.at, ACTOR, "filed: a confident detection"), out)
                self._dispatch(cell, key, evidence.at, out)
        self.dirty.add(cell.grid_code)
        return out

    def apply_command(self, command: CaseCommand, domain: int = 0) -> tuple[list[Change], CommandReply]:
        """Apply a person's command to a case of the cell; the reply says what became of it."""
        cell = self.cell(command.grid_code, domain)
        out: list[Change] = []
        try:
            if command.command is Command.REPORT:
                case = self._citizen_report(cell, command, out)
            else:
                case = self._command(cell, command, out)
        except _Refused as refusal:
            held = refusal.case
            return [], CommandReply(command.request_id, refusal.outcome, refusal.case_id or command.case_id,
                                    held.version if held else 0, str(refusal), held.state if held else None)
        except (ValueError, KeyError) as exc:  # a parameter no API would send (a clock, a tier): refused, not a crash
            return [], CommandReply(command.request_id, Outcome.INVALID, command.case_id, 0,
                                    f"malformed command: {exc}", None)
        self.dirty.add(cell.grid_code)
        return out, CommandReply(command.request_id, Outcome.APPLIED, case.id, case.version, "", case.state)

    def _command(self, cell: CellState, command: CaseCommand, out: list[Change]) -> Case:
        found = self._find(cell, command.case_id)
        if found is None:
            found = self._adopt(cell, command)
        key, case = found
        if command.expected_version is not None and command.expected_version != case.version:
            raise _Refused(Outcome.STALE, f"case {case.id} is at version {case.version}, not "
                                          f"{command.expected_version}: someone changed it; reload", case)
        try:
            return self._step(cell, key, case, command, out)
        except IllegalTransition as exc:
            raise _Refused(Outcome.ILLEGAL, str(exc), case) from None

    def _step(self, cell: CellState, key: str, case: Case, command: CaseCommand, out: list[Change]) -> Case:
        at, actor, note, params = command.at, command.actor, command.note, command.params
        verb = command.command
        if verb is Command.CONFIRM:
            case = self._push(cell, key, case.file(at, actor, note or "confirmed by an operator"), out)
            self._dispatch(cell, key, at, out)
        elif verb in (Command.DISMISS, Command.VOID):
            suppress_s = params.get("suppress_s") if verb is Command.DISMISS else None
            until_ms = int(at.timestamp() * 1000) + _positive_int(suppress_s, "suppress_s") * 1000 if suppress_s else 0
            self._push(cell, key, case.void(at, actor, reason=note), out)
            for zone in _camera_zones(case) if until_ms else ():
                cell.suppressed[zone] = until_ms
        elif verb is Command.UNDO:
            reopened = case.reopen(at, actor, window=timedelta(milliseconds=self.limits.undo_window_ms), note=note)
            if key in cell.cases and cell.cases[key].id != case.id:
                raise IllegalTransition(f"cell {cell.grid_code} has another open {case.category} case now; "
                                        f"{case.id} stays {case.state.value}")
            cell.finished.pop(case.id, None)
            cell.recent.pop(case.id, None)
            for zone in _camera_zones(case):
                cell.suppressed.pop(zone, None)
            self._push(cell, key, reopened, out)
        elif verb is Command.FILE:
            self._push(cell, key, case.file(at, actor, note), out)
        elif verb is Command.DISPATCH:
            self._push(cell, key, self._dispatched(case, command), out)
        elif verb is Command.REASSIGN:
            self._push(cell, key, case.reassign(at, actor, department=_required(params, "department"), note=note), out)
        elif verb is Command.RETURN:
            self._push(cell, key, case.send_back(at, actor, reason=note), out)
        elif verb is Command.ESCALATE:
            self._push(cell, key, case.escalate(at, actor, reason=note), out)
        elif verb is Command.HANDLE:
            if case.state is not CaseState.DISPATCHED:
                case.handle(at, actor, note)  # raises the state machine's own refusal, before any photo is attached
            if params.get("photo"):
                self._attach(cell, key, Evidence(at, actor, note or "handling photo", params["photo"],
                                                 {"kind": "photo"}), out)
            self._push(cell, key, cell.cases[key].handle(at, actor, note), out)
        elif verb in (Command.VERIFY_PASS, Command.VERIFY_FAIL):
            self._push(cell, key, case.verify(at, actor, passed=verb is Command.VERIFY_PASS, note=note), out)
        elif verb is Command.SUSPEND:
            self._push(cell, key, case.suspend(at, actor, reason=note, calendar=self.calendar), out)
        elif verb is Command.RESUME:
            self._push(cell, key, case.resume(at, actor, calendar=self.calendar, note=note), out)
        elif verb is Command.EXTEND:
            clock = Clock(params.get("clock") or (case.term.clock if case.term else Clock.WORKING))
            by = SlaTerm(timedelta(seconds=_positive_int(_required(params, "by_s"), "by_s")), clock)
            self._push(cell, key, case.extend(at, actor, by=by, calendar=self.calendar, reason=note), out)
        elif verb is Command.RATE:
            satisfied = _required(params, "satisfied") == "true"
            self._push(cell, key, case.rate(at, actor, satisfied=satisfied, note=note), out)
        else:  # pragma: no cover - every command is handled above; REPORT has its own path
            raise _Refused(Outcome.INVALID, f"unknown command {verb}", case)
        return out[-1].case

    def _find(self, cell: CellState, case_id: str) -> tuple[str, Case] | None:
        return next(((k, c) for k, c in cell.cases.items() if c.id == case_id), None)

    def _adopt(self, cell: CellState, command: CaseCommand) -> tuple[str, Case]:
        """A case the cell does not hold open: a closed or voided one, for a rating or an undo.

        A case finished within the undo window is still in memory; older ones come from the case database.
        """
        recent = cell.recent.get(command.case_id)
        if recent is not None:
            return _key_of(recent), recent
        loaded = self._load_case(command.case_id) if command.case_id.startswith(cell.grid_code) else None
        if loaded is None or loaded.grid_code != cell.grid_code:
            raise _Refused(Outcome.NOT_FOUND, f"no case {command.case_id} in grid cell {cell.grid_code}")
        if loaded.state.is_open:
            raise _Refused(Outcome.NOT_FOUND, f"case {loaded.id} is not held by this cell's stream worker", loaded)
        if command.expected_version is None:
            # The database may lag behind the worker: only the version the caller saw proves the copy is current.
            raise _Refused(Outcome.INVALID, f"a command on {loaded.state.value} case {loaded.id} needs the "
                                            "expected version", loaded)
        return _key_of(loaded), loaded

    def _dispatched(self, case: Case, command: CaseCommand) -> Case:
        params = command.params
        route = self.routing.get(case.category)
        department = params.get("department") or (route.department if route else "")
        if not department:
            raise _Refused(Outcome.INVALID, f"no department routes {case.category}: name one", case)
        term = case.term or (route.term if route else None)
        if params.get("term_s"):
            term = SlaTerm(timedelta(seconds=_positive_int(params["term_s"], "term_s")),
                           Clock(params.get("clock") or Clock.WORKING))
        if term is None:
            raise _Refused(Outcome.INVALID, f"no deadline term for {case.category}: give term_s", case)
        tier = Tier[params["tier"].upper()] if params.get("tier") else (case.tier or (route.tier if route else None))
        return case.dispatch(command.at, command.actor, department=department, term=term, calendar=self.calendar,
                             tier=tier, note=command.note)

    def _citizen_report(self, cell: CellState, command: CaseCommand, out: list[Change]) -> Case:
        """A citizen's report: evidence on the cell's open case of the same code, or a new case awaiting 立案."""
        params = command.params
        category = _required(params, "category")
        report_id = _required(params, "report_id")
        evidence = Evidence(command.at, f"citizen/{report_id}", command.note or "citizen report",
                            params.get("photo", ""), {"kind": "citizen"})
        open_case = next(((k, c) for k, c in sorted(cell.cases.items()) if c.category == category), None)
        if open_case is not None:
            key, case = open_case
            if evidence in case.evidence:  # the same report read again after a restart
                return case
            self._attach(cell, key, evidence, out)
            return cell.cases[key]
        key = correlation_key(category)
        at_ms = int(command.at.timestamp() * 1000)
        new_id = case_id(cell.grid_code, key, at_ms)
        if new_id in cell.finished:  # the same report read again, its case since closed or voided
            raise _Refused(Outcome.APPLIED, f"report {report_id} is on case {new_id}", case_id=new_id)
        self._open(cell, key, category, Source.CITIZEN, at_ms, evidence, out, title=command.note or "citizen report",
                   file=False)
        return cell.cases[key]

    def check_silence(self) -> list[Change]:
        """Open 9902 for devices silent for their offline factor × report interval, on the ingest clock."""
        out: list[Change] = []
        for cell in self.cells.values():
            silent = []
            for device_id, state in cell.devices.items():
                device = self.devices.get(device_id)
                if state.offline or device is None or not state.last_heard_ms:
                    continue
                since = health.silent_since(state.last_heard_ms, device.report_interval_s,
                                            self.limits.offline_factor)
                if self.clocks.get(cell.domain, 0) > since:
                    silent.append((since, device_id))
            # Earliest first, so the case opens at the same moment however the checks fell between batches.
            for since, device_id in sorted(silent):
                cell.devices[device_id].offline = True
                last_heard = _time(cell.devices[device_id].last_heard_ms).isoformat()
                self._signal(cell, correlation_key(DEVICE_OFFLINE), DEVICE_OFFLINE, since,
                             Evidence(_time(since), device_id, f"{device_id} silent since {last_heard}"), out)
                self.dirty.add(cell.grid_code)
        return out

    def escalate_overdue(self, now: datetime) -> list[Change]:
        """督办: escalate each dispatched case past its deadline once per deadline; suspended ones wait."""
        out: list[Change] = []
        for cell in self.cells.values():
            for key, case in list(cell.cases.items()):
                if not case.is_overdue(now) or _escalated_since(case, case.deadline_at):
                    continue
                assert case.deadline_at is not None and case.tier is not None  # set by dispatch
                reason = f"overdue: deadline {case.deadline_at.isoformat()} passed at {case.tier.name.lower()} level"
                self._push(cell, key, case.escalate(now, ACTOR, reason=reason), out)
                self.dirty.add(cell.grid_code)
        return out

    # --- state -------------------------------------------------------------------------------------

    def cell(self, grid_code: str, domain: int = 0) -> CellState:
        """The cell's state, loaded on first sight (a restart or a rebalance brings the snapshot back)."""
        cell = self.cells.get(grid_code)
        if cell is None:
            doc = self._load_cell(grid_code)
            cell = cell_from_doc(doc) if doc else CellState(grid_code)
            self.cells[grid_code] = cell
        if cell.domain != domain or domain not in self.clocks:
            cell.domain = domain
            self.clocks[domain] = max(self.clocks.get(domain, 0), cell.clock_ms)
        return cell

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        """The changed cells' state documents (pruned first), marking them clean; serialise before yielding."""
        docs = {}
        for code in self.dirty:
            cell = self.cells.get(code)
            if cell is not None:
                self.prune(cell)
                docs[code] = cell_doc(cell)
        self.dirty.clear()
        return docs

    def forget(self, grid_codes: Iterable[str]) -> None:
        """Drop cells from memory (their partitions moved to another worker)."""
        for code in grid_codes:
            self.cells.pop(code, None)
            self.dirty.discard(code)

    # --- rules → signals ---------------------------------------------------------------------------

    def _status(self, cell: CellState, status: StatusChange, out: list[Change]) -> None:
        if status.replayed:
            # The broker's copy of the device's last word, resent when a gateway subscribes: it says nothing
            # new and carries no time of its own. A device that died meanwhile is caught by the silence rule.
            return
        if status.online:
            self._heard(cell, status.device_id, status.ts_ms, out)
            return
        state = cell.devices.setdefault(status.device_id, DeviceHealth())
        stale = status.ts_ms < state.last_heard_ms  # a redelivered will from before the device's latest message
        state.last_heard_ms = max(state.last_heard_ms, status.ts_ms)
        self._advance_clock(cell, status.ts_ms)
        if not state.offline and not stale:
            state.offline = True
            self._signal(cell, correlation_key(DEVICE_OFFLINE), DEVICE_OFFLINE, status.ts_ms,
                         Evidence(_time(status.ts_ms), status.device_id,
                                  f"{status.device_id} announced offline (last will)"), out)

    def _heard(self, cell: CellState, device_id: str, received_ms: int, out: list[Change]) -> None:
        """A sign of life; a device that was offline and is heard anew is back online."""
        state = cell.devices.setdefault(device_id, DeviceHealth())
        newest = received_ms > state.last_heard_ms
        state.last_heard_ms = max(state.last_heard_ms, received_ms)
        self._advance_clock(cell, received_ms)
        if state.offline and newest:
            state.offline = False
            self._attach_if_open(cell, correlation_key(DEVICE_OFFLINE),
                                 Evidence(_time(received_ms), device_id, f"{device_id} back online"), out)

    def _advance_clock(self, cell: CellState, received_ms: int) -> None:
        cell.clock_ms = self.clocks[cell.domain] = max(self.clocks.get(cell.domain, 0), received_ms)

    def _reading(self, cell: CellState, r: Reading, out: list[Change]) -> None:
        self._heard(cell, r.device_id, r.received_ms, out)
        if r.ts_ms < self.clocks[cell.domain] - self.limits.lateness_ms:
            return  # later than the allowed lateness: stored by the telemetry store, but decides nothing
        battery = r.values.get("battery_v")
        device = self.devices.get(r.device_id)
        if isinstance(battery, float | int) and not isinstance(battery, bool) and device and device.battery_floor_v:
            self._battery(cell, r, float(battery), device.battery_floor_v, out)
        if r.kind is DeviceKind.RAIN:
            self._rain(cell, r, out)
        elif r.kind is DeviceKind.CROWD:
            self._crowd(cell, r, out)
        else:
            self._manhole(cell, r, out)

    def _battery(self, cell: CellState, r: Reading, volts: float, floor: float, out: list[Change]) -> None:
        state = cell.devices[r.device_id]
        if r.ts_ms <= state.battery_ts_ms:
            return  # only a newer measurement can change what the battery is known to be
        state.battery_ts_ms = r.ts_ms
        if not state.battery_low and health.battery_low(volts, floor):
            state.battery_low = True
            self._signal(cell, correlation_key(LOW_BATTERY), LOW_BATTERY, r.ts_ms,
                         Evidence(r.ts, r.device_id, f"{r.device_id} battery {volts:.2f} V under {floor:.2f} V"),
                         out)
        elif state.battery_low and health.battery_recovered(volts, floor):
            state.battery_low = False
            self._attach_if_open(cell, correlation_key(LOW_BATTERY),
                                 Evidence(r.ts, r.device_id, f"{r.device_id} battery back to {volts:.2f} V"), out)

    def _rain(self, cell: CellState, r: Reading, out: list[Change]) -> None:
        mm = r.values.get("rain_mm")
        if not isinstance(mm, float | int) or isinstance(mm, bool):
            return
        series = cell.rain.setdefault(r.device_id, Series())
        if not series.add(r.ts_ms, float(mm)):
            return
        latest = max(s.ts[-1] for s in cell.rain.values() if len(s))
        instants = [r.ts_ms]
        if r.ts_ms < latest:  # a late sample counts in every window after it, up to the longest one
            until = min(latest, r.ts_ms + rain.LONGEST_WINDOW_MS)
            late = {latest}
            for gauge in cell.rain.values():
                late.update(t for t in gauge.ts[bisect_left(gauge.ts, r.ts_ms):bisect_right(gauge.ts, until)])
            instants = sorted(late | {r.ts_ms})
        key = correlation_key(WATERLOGGING)
        for at_ms in instants:
            window = rain.rainfall_at(cell.rain.values(), at_ms)
            colour = rain.rain_colour(window, self.limits.rain)
            if colour is rain.RainColour.NONE or not self._would_act(cell, key, colour.severity, r.device_id, at_ms):
                continue
            summary = (f"rain {colour.severity}: {window.mm_1h:.1f} mm/1h, {window.mm_3h:.1f} mm/3h, "
                       f"{window.mm_6h:.1f} mm/6h, {window.mm_12h:.1f} mm/12h over {window.gauges} gauge(s)")
            self._signal(cell, key, WATERLOGGING, at_ms, Evidence(_time(at_ms), r.device_id, summary), out,
                         severity=colour.severity, urgent=colour >= rain.RainColour.ORANGE)

    def _crowd(self, cell: CellState, r: Reading, out: list[Change]) -> None:
        count = r.values.get("count")
        if not isinstance(count, float | int) or isinstance(count, bool) or not r.zone_area_m2:
            return
        series = cell.crowd.setdefault(r.device_id, Series())
        if not series.add(r.ts_ms, crowd.density(float(count), r.zone_area_m2)):
            return
        device = self.devices.get(r.device_id)
        max_gap = int(self.limits.offline_factor * (device.report_interval_s if device else 60) * 1000)
        limits = self.limits.crowd
        # A late sample can complete a run that ends after it: look at the run around each affected sample.
        key = correlation_key(CROWD_GATHERING)
        levels = ((limits.urgent_per_m2, Severity.URGENT), (limits.warning_per_m2, Severity.WARNING))
        for at_ms in (r.ts_ms,) if r.ts_ms == series.ts[-1] else (r.ts_ms, series.ts[-1]):
            for threshold, level in levels:
                since = crowd.sustained_from(series, at_ms, threshold, max_gap, limits.sustain_ms)
                if since is not None and not self._would_act(cell, key, level, r.device_id, since):
                    break
                if since is not None:
                    summary = (f"{r.device_id}: ≥ {threshold:g} persons/m² for "
                               f"{limits.sustain_ms // 1000} s ({count:g} counted)")
                    self._signal(cell, key, CROWD_GATHERING, since,
                                 Evidence(_time(since), r.device_id, summary), out,
                                 severity=level, urgent=level is Severity.URGENT)
                    break

    def _manhole(self, cell: CellState, r: Reading, out: list[Change]) -> None:
        # A redelivered report must not be decided again: rain that arrived since could decide it differently.
        if not cell.manhole.setdefault(r.device_id, Series()).add(r.ts_ms, 1.0):
            return
        displaced = manhole.cover_displaced(r.values, self.limits.manhole)
        if displaced and r.component_id:
            try:
                category = parse_component_id(r.component_id).taxonomy_code
            except ComponentIdError:
                category = ""
            if category:
                self._signal(cell, correlation_key(category, r.component_id), category, r.ts_ms,
                             Evidence(r.ts, r.device_id, f"component {r.component_id}: {displaced}"), out,
                             severity=Severity.URGENT, urgent=True)
        gap = manhole.water_near_cover(r.values, r.well_depth_cm, self.limits.manhole)
        if gap is not None:
            rained = rain.rained_within(cell.rain.values(), r.ts_ms - self.limits.rain_lookback_ms, r.ts_ms)
            category = manhole.water_category(rained)
            self._signal(cell, correlation_key(category), category, r.ts_ms,
                         Evidence(r.ts, r.device_id, f"water {gap:.0f} cm below the cover"
                                  f"{' while it rains' if rained else ' without rain'}"), out)

    # --- correlation and lifecycle -----------------------------------------------------------------

    def _would_act(self, cell: CellState, key: str, severity: Severity, source_id: str, at_ms: int) -> bool:
        """Whether `_signal` would change the case: spares building evidence that would be dropped."""
        case = cell.cases.get(key)
        if case is None or severity.rank > case.severity.rank:
            return True
        last = cell.last_evidence_ms.get(f"{case.id}|{source_id}")
        return last is None or at_ms >= last + self.limits.evidence_every_ms

    def _signal(self, cell: CellState, key: str, category: str, at_ms: int, evidence: Evidence,
                out: list[Change], *, severity: Severity = Severity.NORMAL, urgent: bool = False) -> None:
        """A rule fired: open the case for its key, or upgrade it, or attach the evidence to it."""
        case = cell.cases.get(key)
        if case is None:
            self._open(cell, key, category, Source.SENSOR, at_ms, evidence, out, severity=severity,
                       urgent=urgent, title=evidence.summary, file=True)
        elif severity.rank > case.severity.rank:
            at = max(evidence.at, case.history[-1].at)  # late data upgrades now, not in the case's past
            self._push(cell, key, case.upgrade(at, ACTOR, severity=severity, urgent=urgent or case.urgent,
                                               note=evidence.summary), out)
            self._attach(cell, key, evidence, out)
        elif self._evidence_due(cell, case, evidence):
            self._attach(cell, key, evidence, out)

    def _open(self, cell: CellState, key: str, category: str, source: Source, at_ms: int, evidence: Evidence,
              out: list[Change], *, title: str, file: bool, severity: Severity = Severity.NORMAL,
              urgent: bool = False) -> None:
        at = _time(at_ms)
        new_id = case_id(cell.grid_code, key, at_ms)
        if new_id in cell.finished:
            return  # the signal that opened a case since closed or voided, delivered again
        case = report(new_id, grid_code=cell.grid_code, category=category,
                      source=source, at=at, actor=ACTOR, severity=severity, urgent=urgent, title=title)
        self._push(cell, key, case, out)
        self._attach(cell, key, evidence, out)
        if file:
            self._push(cell, key, cell.cases[key].file(at, ACTOR, "filed automatically"), out)
            self._dispatch(cell, key, at, out)

    def _dispatch(self, cell: CellState, key: str, at: datetime, out: list[Change]) -> None:
        case = cell.cases[key]
        if case.category not in self.routing:
            return  # stays filed for the command center to route by hand
        route = self.routing[case.category]
        self._push(cell, key, case.dispatch(at, ACTOR, department=route.department, term=route.term,
                                            calendar=self.calendar, tier=route.tier,
                                            note="dispatched by the routing table"), out)

    def _attach_if_open(self, cell: CellState, key: str, evidence: Evidence, out: list[Change]) -> None:
        if key in cell.cases:
            self._attach(cell, key, evidence, out)

    def _attach(self, cell: CellState, key: str, evidence: Evidence, out: list[Change]) -> None:
        case = cell.cases[key]
        cell.last_evidence_ms[f"{case.id}|{evidence.source_id}"] = int(evidence.at.timestamp() * 1000)
        self._push(cell, key, case.attach(evidence, ACTOR), out)

    def _evidence_due(self, cell: CellState, case: Case, evidence: Evidence) -> bool:
        """Attach a source's evidence at most every `evidence_every_ms` of event time, never going back."""
        last = cell.last_evidence_ms.get(f"{case.id}|{evidence.source_id}")
        return last is None or int(evidence.at.timestamp() * 1000) >= last + self.limits.evidence_every_ms

    def _push(self, cell: CellState, key: str, case: Case, out: list[Change]) -> Case:
        if case.state.is_open:
            cell.cases[key] = case
        else:
            cell.cases.pop(key, None)
            cell.finished[case.id] = int(case.reported_at.timestamp() * 1000)
            cell.recent[case.id] = case
            while len(cell.recent) > RECENT_PER_CELL:
                del cell.recent[next(iter(cell.recent))]
            for evidence_key in [k for k in cell.last_evidence_ms if k.startswith(f"{case.id}|")]:
                del cell.last_evidence_ms[evidence_key]
        out.append(Change(case, case.history[-1]))
        return case

    def prune(self, cell: CellState) -> None:
        """Forget samples and finished cases older than any window or late reading can reach."""
        clock = self.clocks.get(cell.domain, 0)
        keep_from = clock - rain.LONGEST_WINDOW_MS - self.limits.lateness_ms
        for series in cell.rain.values():
            series.prune(keep_from)
        crowd_from = clock - self.limits.crowd.sustain_ms - self.limits.lateness_ms
        for series in cell.crowd.values():
            series.prune(crowd_from)
        for series in cell.manhole.values():
            series.prune(clock - self.limits.lateness_ms)
        for recent_id, recent in list(cell.recent.items()):
            if int(recent.history[-1].at.timestamp() * 1000) < clock - self.limits.undo_window_ms:
                del cell.recent[recent_id]
        for zone, until_ms in list(cell.suppressed.items()):
            if until_ms < clock:
                del cell.suppressed[zone]
        for finished_id, opened_ms in list(cell.finished.items()):
            if opened_ms < keep_from:  # older than any signal that could still arrive
                del cell.finished[finished_id]


class _Refused(Exception):
    """A command the engine does not apply, and why."""

    def __init__(self, outcome: Outcome, message: str, case: Case | None = None, *, case_id: str = "") -> None:
        super().__init__(message)
        self.outcome = outcome
        self.case = case
        self.case_id = case_id or (case.id if case else "")


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise _Refused(Outcome.INVALID, f"the command needs `{name}`")
    return value


def _positive_int(text: str, name: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise _Refused(Outcome.INVALID, f"`{name}` must be a positive whole number of seconds, not {text!r:.40}")
    return int(text)


def _camera_zones(case: Case) -> set[str]:
    """The camera zones (camera/zone) whose detections are the case's evidence."""
    return {e.source_id for e in case.evidence if e.detail.get("kind") in ("stall", "dust")}


def _detection_detail(detection: Detection) -> dict[str, str]:
    detail = {"kind": detection.kind.value, "camera_id": detection.camera_id, "zone_id": detection.zone_id,
              "confidence": f"{detection.confidence:.3f}", "phase": detection.phase.value}
    if detection.bbox is not None:
        detail["bbox"] = ",".join(str(v) for v in detection.bbox)
    return detail


def _key_of(case: Case) -> str:
    """The correlation key a case was opened under, read back from its id (see `case_id`)."""
    middle = case.id[len(case.grid_code) + 1:].rsplit("-", 1)[0]
    return middle.replace("-", "/", 1)


def _escalated_since(case: Case, moment: datetime | None) -> bool:
    return any(e.action is Action.ESCALATE and moment is not None and e.at >= moment for e in case.history)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# --- snapshots -------------------------------------------------------------------------------------

def cell_doc(cell: CellState) -> dict[str, Any]:
    """The cell's state as a JSON-ready mapping (the worker's checkpoint); the lists are the live ones."""
    return {
        "grid_code": cell.grid_code,
        "clock_ms": cell.clock_ms,
        "rain": {device: [series.ts, series.values] for device, series in cell.rain.items()},
        "crowd": {device: [series.ts, series.values] for device, series in cell.crowd.items()},
        "manhole": {device: series.ts for device, series in cell.manhole.items()},
        "devices": {device: [h.last_heard_ms, h.offline, h.battery_low, h.battery_ts_ms]
                    for device, h in cell.devices.items()},
        "cases": {key: case_doc(case) for key, case in cell.cases.items()},
        "finished": dict(cell.finished),
        "last_evidence_ms": dict(cell.last_evidence_ms),
        "suppressed": dict(cell.suppressed),
        "recent": {case_id: case_doc(case) for case_id, case in cell.recent.items()},
    }


def cell_from_doc(doc: Mapping[str, Any]) -> CellState:
    """Rebuild a cell's state from `cell_doc`."""
    return CellState(
        grid_code=str(doc["grid_code"]),
        clock_ms=int(doc["clock_ms"]),
        rain={device: Series(list(zip(ts, values, strict=True))) for device, (ts, values) in doc["rain"].items()},
        crowd={device: Series(list(zip(ts, values, strict=True))) for device, (ts, values) in doc["crowd"].items()},
        manhole={device: Series([(int(t), 1.0) for t in times]) for device, times in doc["manhole"].items()},
        devices={device: DeviceHealth(int(h[0]), bool(h[1]), bool(h[2]), int(h[3]))
                 for device, h in doc["devices"].items()},
        cases={key: case_from_doc(case) for key, case in doc["cases"].items()},
        finished={case_id: int(ms) for case_id, ms in doc["finished"].items()},
        last_evidence_ms={k: int(v) for k, v in doc["last_evidence_ms"].items()},
        # Both absent from snapshots taken before operators could decide through the API.
        suppressed={k: int(v) for k, v in doc.get("suppressed", {}).items()},
        recent={case_id: case_from_doc(case) for case_id, case in doc.get("recent", {}).items()},
    )
