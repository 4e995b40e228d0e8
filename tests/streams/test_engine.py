"""The case engine on the demo city: the exact cases each signal opens, how they are correlated, dispatched,
upgraded and escalated, what late and duplicate input does, and that a snapshot carries a cell over."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import orjson
import pytest

from domain.case_records import CaseCommand, Command, CommandReply, Outcome
from domain.cases import Action, Case, CaseState, Source, Tier
from domain.detections import Phase
from domain.sla import Clock, SlaTerm
from domain.telemetry import Reading
from streams.engine import CaseEngine, Change, case_id, cell_doc, correlation_key
from tests.streams import (
    CELL,
    DUST_CAMERA,
    HOUR,
    MINUTE,
    SECOND,
    SHOPFRONT_CAMERA,
    STALL_CAMERA,
    T0,
    T0_MS,
    actions,
    crowd,
    detection,
    feed,
    feed_each,
    last_will,
    manhole,
    new_engine,
    open_cases,
    rain,
    steps,
)

OPENED = ["report", "attach", "file", "dispatch"]  # a sensor case: reported, evidence, filed, dispatched
COVER = "3101040103000007"  # the 雨水井盖 manhole-0007 watches
STALL_CELL = STALL_CAMERA[3]


def only_case(changes: list[Change]) -> Case:
    """The one case all the changes are about, as it stands after the last of them."""
    assert len({change.case.id for change in changes}) == 1, steps(changes)
    return changes[-1].case


def case_in(engine: CaseEngine, category: str, grid_code: str = CELL) -> Case:
    """The one open case of a category in a cell."""
    [case] = [c for c in open_cases(engine, grid_code) if c.category == category]
    return case


# --- rain: 110 mm over 3 h in one cell -------------------------------------------------------------

RAIN_PER_MINUTE = 110 / 180


@pytest.fixture(scope="module")
def rainstorm() -> list[Change]:
    """rain-0004 reports 110 mm spread evenly over 3 h, once a minute from T0 + 1 min."""
    engine = new_engine()
    return feed_each(engine, [rain(T0_MS + i * MINUTE, RAIN_PER_MINUTE) for i in range(1, 181)])


def test_a_rainstorm_opens_exactly_one_waterlogging_case_when_an_hour_passes_20_mm(rainstorm: list[Change]) -> None:
    case = only_case(rainstorm)
    assert case.id == "310104003001007-0406-20260310T023300000"  # 33 readings: 20.2 mm, 10:33 Shanghai
    assert case.category == "0406"
    assert actions(rainstorm)[:4] == OPENED
    assert rainstorm[0].case.severity == "short_heavy_rain"
    assert rainstorm[0].case.reported_at == T0 + timedelta(minutes=33)


def test_a_waterlogging_case_goes_to_water_affairs_at_street_level_within_4_working_hours(
    rainstorm: list[Change],
) -> None:
    dispatched = rainstorm[3].case
    assert dispatched.state is CaseState.DISPATCHED
    assert (dispatched.department, dispatched.tier) == ("水务", Tier.STREET)
    assert dispatched.term == SlaTerm(timedelta(hours=4), Clock.WORKING)
    assert dispatched.deadline_at == T0 + timedelta(hours=4, minutes=33)


def test_the_waterlogging_case_is_upgraded_to_orange_then_red_and_turns_urgent(rainstorm: list[Change]) -> None:
    upgrades = [c for c in rainstorm if c.event.action is Action.UPGRADE]
    assert [(c.case.severity, c.case.urgent) for c in upgrades] == [("orange", True), ("red", True)]
    assert [c.event.at for c in upgrades] == [T0 + timedelta(minutes=82), T0 + timedelta(minutes=164)]
    assert [c.event.data["from_severity"] for c in upgrades] == ["short_heavy_rain", "orange"]
    final = rainstorm[-1].case
    assert (final.severity, final.urgent, final.state) == ("red", True, CaseState.DISPATCHED)


def test_a_gauge_adds_evidence_to_its_open_case_at_most_every_10_minutes() -> None:
    engine = new_engine()
    feed(engine, rain(T0_MS, 21.0))
    later = feed_each(engine, [rain(T0_MS + i * MINUTE, 0.0) for i in range(1, 21)])
    assert actions(later) == ["attach", "attach"]
    assert [c.event.at for c in later] == [T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)]


def test_a_late_rain_reading_opens_the_case_in_its_own_event_time() -> None:
    engine = new_engine()
    feed(engine, rain(T0_MS + 3 * HOUR, 0.0))
    changes = feed(engine, rain(T0_MS, 25.0, received_ms=T0_MS + 3 * HOUR + SECOND))  # buffered through an outage
    assert only_case(changes).id == "310104003001007-0406-20260310T020000000"
    assert only_case(changes).severity == "short_heavy_rain"


def test_a_late_rain_reading_raises_the_colour_at_the_latest_reading() -> None:
    engine = new_engine()
    opened = only_case(feed(engine, rain(T0_MS + 2 * HOUR, 30.0)))
    changes = feed(engine, rain(T0_MS + HOUR, 30.0, received_ms=T0_MS + 2 * HOUR + SECOND))
    assert steps(changes) == [(opened.id, "upgrade"), (opened.id, "attach")]
    assert changes[-1].case.severity == "orange"  # 60 mm in the 3 h up to T0 + 2 h


def test_light_rain_opens_nothing() -> None:
    engine = new_engine()
    assert feed_each(engine, [rain(T0_MS + i * MINUTE, 0.3) for i in range(60)]) == []


# --- manhole covers and water ------------------------------------------------------------------------

def test_an_open_cover_opens_an_urgent_component_case_for_water_affairs_due_in_2_hours() -> None:
    changes = feed(new_engine(), manhole(T0_MS, cover_open=True, tilt_deg=0.0))
    case = only_case(changes)
    assert actions(changes) == OPENED
    assert case.id == f"310104003001007-0103-{COVER}-20260310T020000000"
    assert (case.category, case.severity, case.urgent) == ("0103", "urgent", True)
    assert (case.department, case.tier, case.state) == ("水务", Tier.STREET, CaseState.DISPATCHED)
    assert case.deadline_at == T0 + timedelta(hours=2)
    assert case.evidence[0].summary == f"component {COVER}: cover open"


def test_a_tilted_cover_opens_the_same_kind_of_case() -> None:
    case = only_case(feed(new_engine(), manhole(T0_MS, cover_open=False, tilt_deg=15.0)))
    assert (case.category, case.urgent) == ("0103", True)
    assert case.evidence[0].summary == f"component {COVER}: cover tilted 15°"


def test_a_cover_just_under_the_tilt_threshold_opens_nothing() -> None:
    assert feed(new_engine(), manhole(T0_MS, cover_open=False, tilt_deg=14.9)) == []


def test_each_displaced_cover_has_its_own_case() -> None:
    engine = new_engine()
    feed(engine, manhole(T0_MS, cover_open=True), manhole(T0_MS, device_id="manhole-0080", cover_open=True))
    assert sorted(c.category for c in open_cases(engine)) == ["0101", "0103"]


def test_an_open_cover_reported_again_adds_evidence_instead_of_a_second_case() -> None:
    engine = new_engine()
    first = only_case(feed(engine, manhole(T0_MS, cover_open=True)))
    again = feed(engine, manhole(T0_MS + 10 * MINUTE, cover_open=True))
    assert steps(again) == [(first.id, "attach")]
    assert [c.id for c in open_cases(engine)] == [first.id]


def test_water_near_the_cover_after_rain_in_the_last_6_hours_is_waterlogging() -> None:
    engine = new_engine()
    feed(engine, rain(T0_MS - 5 * HOUR, 1.0))
    changes = feed(engine, manhole(T0_MS, water_level_cm=95.0))  # 25 cm below the cover of a 120 cm well
    case = only_case(changes)
    assert (case.id, actions(changes)) == ("310104003001007-0406-20260310T020000000", OPENED)
    assert case.evidence[0].summary == "water 25 cm below the cover while it rains"


def test_water_near_the_cover_without_rain_is_a_blocked_sewer() -> None:
    engine = new_engine()
    feed(engine, rain(T0_MS - 7 * HOUR, 1.0), rain(T0_MS - HOUR, 0.0))  # rain, but over 6 h ago
    case = only_case(feed(engine, manhole(T0_MS, water_level_cm=95.0)))
    assert (case.category, case.department) == ("0404", "水务")
    assert case.deadline_at == T0 + timedelta(days=1)  # 1 working day of 9 h: Wednesday 10:00
    assert case.evidence[0].summary == "water 25 cm below the cover without rain"


def test_water_well_below_the_cover_opens_nothing() -> None:
    assert feed(new_engine(), manhole(T0_MS, water_level_cm=80.0)) == []


def test_water_near_the_cover_during_a_rainstorm_adds_evidence_to_the_waterlogging_case() -> None:
    engine = new_engine()
    rain_case = only_case(feed(engine, rain(T0_MS, 25.0)))
    changes = feed(engine, manhole(T0_MS + MINUTE, water_level_cm=100.0))
    assert steps(changes) == [(rain_case.id, "attach")]
    assert changes[0].event.data["source_id"] == "manhole-0007"
    assert [c.id for c in open_cases(engine)] == [rain_case.id]


# --- crowds ----------------------------------------------------------------------------------------

def crowd_for(seconds: int, count: float, start_s: int = 0) -> list[Reading]:
    """crowd-0029 (150 m²) counting `count` every 30 s for `seconds`."""
    return [crowd(T0_MS + t * SECOND, count) for t in range(start_s, start_s + seconds + 1, 30)]


def test_a_crowd_over_2_per_m2_for_90_s_opens_nothing() -> None:
    assert feed_each(new_engine(), crowd_for(90, 330)) == []


def test_a_crowd_over_2_per_m2_for_150_s_opens_a_crowd_warning_once_it_lasted_2_minutes() -> None:
    changes = feed_each(new_engine(), crowd_for(150, 330))
    case = only_case(changes)
    assert actions(changes) == OPENED
    assert case.id == "310104003001007-9901-20260310T020200000"
    assert (case.category, case.severity, case.urgent) == ("9901", "warning", False)
    assert (case.department, case.tier) == ("公安", Tier.STREET)
    assert case.deadline_at == T0 + timedelta(minutes=2 + 30)  # 30 min in natural time


def test_a_crowd_over_4_per_m2_sustained_opens_an_urgent_case() -> None:
    case = only_case(feed_each(new_engine(), crowd_for(150, 660)))
    assert (case.severity, case.urgent) == ("urgent", True)


def test_a_crowd_warning_is_upgraded_to_urgent_when_4_per_m2_is_sustained() -> None:
    engine = new_engine()
    warning = only_case(feed_each(engine, crowd_for(150, 330)))
    changes = feed_each(engine, crowd_for(150, 660, start_s=180))
    assert steps(changes) == [(warning.id, "upgrade"), (warning.id, "attach")]
    assert changes[0].event.at == T0 + timedelta(seconds=300)
    assert (changes[-1].case.severity, changes[-1].case.urgent) == ("urgent", True)


def test_a_crowd_counter_missing_up_to_3_report_intervals_keeps_the_run() -> None:
    counts = [crowd(T0_MS + t * SECOND, 330) for t in (0, 30, 120, 150)]  # 90 s without a count: 3 × 30 s
    assert only_case(feed_each(new_engine(), counts)).reported_at == T0 + timedelta(seconds=120)


def test_a_crowd_counter_missing_longer_than_3_report_intervals_breaks_the_run() -> None:
    counts = [crowd(T0_MS + t * SECOND, 330) for t in (0, 30, 121, 151)]
    assert feed_each(new_engine(), counts) == []


def test_a_late_crowd_count_that_fills_a_gap_completes_the_run() -> None:
    engine = new_engine()
    counts = {r.ts_ms: r for r in crowd_for(240, 330)}
    missing = [counts.pop(T0_MS + t * SECOND) for t in (60, 90, 120)]  # 30 → 150 s: a 120 s gap breaks the run
    left = crowd(T0_MS + 270 * SECOND, 0)  # the crowd has gone by the time the late count arrives
    assert feed_each(engine, [*counts.values(), left]) == []
    changes = feed_each(engine, [missing[1]])  # T0 + 90 s arrives late: no gap over 90 s is left
    assert only_case(changes).id == "310104003001007-9901-20260310T020230000"  # T0 + 150 s: 2 min into the run


# --- device health -----------------------------------------------------------------------------------

def test_a_device_silent_past_3_report_intervals_on_the_ingest_clock_opens_a_device_offline_case() -> None:
    engine = new_engine()
    feed(engine, manhole(T0_MS, tilt_deg=1.0))  # manhole-0007 reports every 120 s
    feed_each(engine, [rain(T0_MS + i * MINUTE, 0.0) for i in range(1, 8)])  # the gauge moves the clock on
    changes = engine.check_silence()
    case = only_case(changes)
    assert actions(changes) == OPENED
    assert case.id == "310104003001007-9902-20260310T020600000"  # offline from T0 + 360 s
    assert (case.department, case.tier) == ("运维", Tier.DISTRICT)
    assert case.deadline_at == T0 + timedelta(days=2, minutes=6)  # 2 working days of 9 h: Thursday 10:06
    assert case.evidence[0].source_id == "manhole-0007"
    assert case.evidence[0].summary == "manhole-0007 silent since 2026-03-10T02:00:00+00:00"


def test_a_device_silent_for_exactly_3_report_intervals_is_not_yet_offline() -> None:
    engine = new_engine()
    feed(engine, manhole(T0_MS, tilt_deg=1.0))
    feed_each(engine, [rain(T0_MS + i * MINUTE, 0.0) for i in range(1, 7)])  # clock at T0 + 360 s
    assert engine.check_silence() == []


def test_silence_is_measured_on_the_ingest_clock_not_on_wall_time() -> None:
    engine = new_engine()
    feed(engine, manhole(T0_MS, tilt_deg=1.0))
    assert engine.check_silence() == []  # no other message arrived: nobody knows the device is silent


def test_an_offline_device_heard_again_adds_back_online_evidence() -> None:
    engine = new_engine()
    feed(engine, manhole(T0_MS, tilt_deg=1.0))
    feed(engine, rain(T0_MS + 7 * MINUTE, 0.0))
    offline = only_case(engine.check_silence())
    changes = feed(engine, manhole(T0_MS + 8 * MINUTE, tilt_deg=1.0))
    assert steps(changes) == [(offline.id, "attach")]
    assert changes[0].case.evidence[-1].summary == "manhole-0007 back online"
    assert engine.check_silence() == []


def test_an_offline_device_is_reported_once() -> None:
    engine = new_engine()
    feed(engine, manhole(T0_MS, tilt_deg=1.0))
    feed(engine, rain(T0_MS + 7 * MINUTE, 0.0))
    engine.check_silence()
    feed(engine, rain(T0_MS + 20 * MINUTE, 0.0))
    assert engine.check_silence() == []


def test_a_last_will_opens_a_device_offline_case_at_once() -> None:
    changes = feed(new_engine(), statuses=(last_will("manhole-0007", T0_MS),))
    case = only_case(changes)
    assert actions(changes) == OPENED
    assert case.id == "310104003001007-9902-20260310T020000000"
    assert case.evidence[0].summary == "manhole-0007 announced offline (last will)"


def test_a_message_older_than_the_last_will_does_not_bring_the_device_back() -> None:
    engine = new_engine()
    earlier = manhole(T0_MS - MINUTE, tilt_deg=1.0)
    feed(engine, earlier)
    feed(engine, statuses=(last_will("manhole-0007", T0_MS),))
    assert feed(engine, earlier) == []  # redelivered


def test_a_battery_under_its_floor_opens_a_low_battery_case() -> None:
    changes = feed(new_engine(), manhole(T0_MS, tilt_deg=1.0, battery_v=3.2))  # floor 3.3 V
    case = only_case(changes)
    assert actions(changes) == OPENED
    assert (case.category, case.department) == ("9903", "运维")
    assert case.evidence[0].summary == "manhole-0007 battery 3.20 V under 3.30 V"


def test_a_low_battery_is_reported_once_until_it_recovers() -> None:
    engine = new_engine()
    feed(engine, manhole(T0_MS, battery_v=3.2))
    assert feed(engine, manhole(T0_MS + 20 * MINUTE, battery_v=3.1)) == []
    assert feed(engine, manhole(T0_MS + 40 * MINUTE, battery_v=3.35)) == []  # over the floor, not clearly
    assert feed(engine, manhole(T0_MS + 60 * MINUTE, battery_v=3.2)) == []


def test_a_recovered_battery_adds_evidence_and_can_be_reported_low_again() -> None:
    engine = new_engine()
    low = only_case(feed(engine, manhole(T0_MS, battery_v=3.2)))
    recovered = feed(engine, manhole(T0_MS + 20 * MINUTE, battery_v=3.45))
    assert steps(recovered) == [(low.id, "attach")]
    assert recovered[0].case.evidence[-1].summary == "manhole-0007 battery back to 3.45 V"
    assert steps(feed(engine, manhole(T0_MS + 40 * MINUTE, battery_v=3.2))) == [(low.id, "attach")]


# --- camera detections and operators' commands ------------------------------------------------------

@pytest.mark.parametrize(("camera", "category", "department"), [
    pytest.param(STALL_CAMERA, "0501", "城管执法", id="no-vending zone"),
    pytest.param(SHOPFRONT_CAMERA, "0504", "城管执法", id="shopfront zone"),
    pytest.param(DUST_CAMERA, "0302", "住建环保", id="construction site"),
])
def test_a_confident_detection_is_filed_and_dispatched(camera: Any, category: str, department: str) -> None:
    changes = new_engine().apply_detection(detection(Phase.START, T0_MS, 0.95, camera=camera))
    case = only_case(changes)
    assert actions(changes) == OPENED
    assert (case.category, case.department, case.state) == (category, department, CaseState.DISPATCHED)
    assert case.id == f"{camera[3]}-{category}-20260310T020000000"
    assert case.evidence[0].ref == f"evidence/{camera[0]}/evt-1-start.jpg"


def test_a_detection_at_exactly_the_autofile_confidence_is_filed() -> None:
    changes = new_engine().apply_detection(detection(Phase.START, T0_MS, 0.9))
    assert actions(changes) == OPENED


def test_a_less_confident_detection_stays_reported_for_an_operator() -> None:
    engine = new_engine()
    changes = engine.apply_detection(detection(Phase.START, T0_MS, 0.89))
    assert actions(changes) == ["report", "attach"]
    assert only_case(changes).state is CaseState.REPORTED
    assert [c.state for c in open_cases(engine, STALL_CELL)] == [CaseState.REPORTED]


def test_a_stall_deadline_is_2_working_hours_from_dispatch() -> None:
    case = only_case(new_engine().apply_detection(detection(Phase.START, T0_MS, 0.95)))
    assert (case.tier, case.deadline_at) == (Tier.COMMUNITY, T0 + timedelta(hours=2))


def test_an_update_or_end_without_an_open_case_opens_nothing() -> None:
    engine = new_engine()
    assert engine.apply_detection(detection(Phase.UPDATE, T0_MS, 0.95)) == []
    assert engine.apply_detection(detection(Phase.END, T0_MS, 0.95)) == []


def test_updates_add_evidence_at_most_every_10_minutes_and_the_end_always() -> None:
    engine = new_engine()
    case = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.95)))
    updates = [engine.apply_detection(detection(Phase.UPDATE, T0_MS + i * MINUTE, 0.97)) for i in range(1, 12)]
    assert [i for i, changes in enumerate(updates, 1) if changes] == [10]
    assert steps(engine.apply_detection(detection(Phase.END, T0_MS + 11 * MINUTE + 1, 0.97))) == [(case.id, "attach")]


def command(case: Case, verb: Command, minutes: int = 5, note: str = "", *, version: int | None = None,
            **params: str) -> CaseCommand:
    return CaseCommand(case.id, case.grid_code, verb, "operator-3", T0 + timedelta(minutes=minutes), note,
                       request_id=f"rq-{verb}-{minutes}", expected_version=version, params=params)


def test_an_operator_confirmation_files_and_dispatches_a_reported_detection() -> None:
    engine = new_engine()
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    changes, reply = engine.apply_command(command(reported, Command.CONFIRM, version=reported.version))
    assert steps(changes) == [(reported.id, "file"), (reported.id, "dispatch")]
    assert [c.event.actor for c in changes] == ["operator-3", "gridhub-streams"]
    assert changes[-1].case.deadline_at == T0 + timedelta(hours=2, minutes=5)
    assert reply == CommandReply("rq-confirm-5", Outcome.APPLIED, reported.id, reported.version + 2, "",
                                 CaseState.DISPATCHED)


def test_a_confirmation_of_a_case_no_longer_reported_is_illegal_and_changes_nothing() -> None:
    engine = new_engine()
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    engine.apply_command(command(reported, Command.CONFIRM))
    changes, reply = engine.apply_command(command(reported, Command.CONFIRM, minutes=6))
    assert (changes, reply.outcome, reply.state) == ([], Outcome.ILLEGAL, CaseState.DISPATCHED)
    assert "cannot file" in reply.message


def test_a_command_on_a_version_the_case_has_moved_past_is_stale() -> None:
    engine = new_engine()
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    engine.apply_command(command(reported, Command.CONFIRM, version=reported.version))
    stale = command(reported, Command.DISMISS, 6, "not a stall", version=reported.version)
    changes, reply = engine.apply_command(stale)
    assert (changes, reply.outcome, reply.version) == ([], Outcome.STALE, reported.version + 2)
    assert "someone changed it" in reply.message


def test_a_command_for_an_unknown_case_is_not_found() -> None:
    engine = new_engine()
    only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    stale = CaseCommand("310104003001002-0501-20990101T000000000", STALL_CELL, Command.CONFIRM, "op", T0)
    changes, reply = engine.apply_command(stale)
    assert (changes, reply.outcome) == ([], Outcome.NOT_FOUND)


def test_a_dismissed_detection_is_voided_and_a_later_one_opens_a_new_case() -> None:
    engine = new_engine()
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    voided, _ = engine.apply_command(command(reported, Command.DISMISS, note="a parked tricycle"))
    assert steps(voided) == [(reported.id, "void")]
    assert voided[0].case.state is CaseState.VOIDED
    assert open_cases(engine, STALL_CELL) == []
    later = only_case(engine.apply_detection(detection(Phase.START, T0_MS + HOUR, 0.5, event_id="evt-2")))
    assert later.id == "310104003001002-0501-20260310T030000000" != reported.id


def test_a_dismissal_without_a_reason_is_illegal() -> None:
    engine = new_engine()
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    _, reply = engine.apply_command(command(reported, Command.DISMISS))
    assert (reply.outcome, reply.message) == (Outcome.ILLEGAL, f"void on case {reported.id} needs a reason")


@pytest.mark.parametrize("params", [{"clock": "lunar", "by_s": "60"}, {"by_s": "soon"}])
def test_a_command_with_a_parameter_no_api_sends_is_refused_and_changes_nothing(params: dict[str, str]) -> None:
    engine = new_engine()
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.95)))
    changes, reply = engine.apply_command(command(reported, Command.EXTEND, 5, "permit", **params))
    assert (changes, reply.outcome) == ([], Outcome.INVALID)
    assert open_cases(engine, STALL_CELL)[0].extension_count == 0


def test_a_dismissal_can_suppress_the_zone_for_a_while() -> None:
    engine = new_engine()
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    engine.apply_command(command(reported, Command.DISMISS, 5, "vendor licensed for the fair", suppress_s="3600"))
    within = detection(Phase.START, T0_MS + 30 * MINUTE, 0.95, event_id="evt-2")
    after = detection(Phase.START, T0_MS + 66 * MINUTE, 0.95, event_id="evt-3")
    assert engine.apply_detection(within) == []
    assert only_case(engine.apply_detection(after)).state is CaseState.DISPATCHED


def test_a_suppression_survives_a_snapshot() -> None:
    engine = new_engine()
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    engine.apply_command(command(reported, Command.DISMISS, 5, "licensed", suppress_s="3600"))
    doc = orjson.loads(orjson.dumps(cell_doc(engine.cells[STALL_CELL])))
    restored = new_engine(load_cell=lambda code: doc if code == STALL_CELL else None)
    assert restored.apply_detection(detection(Phase.START, T0_MS + 30 * MINUTE, 0.95, event_id="evt-2")) == []


def test_undoing_a_dismissal_reopens_the_case_for_review_and_lifts_the_suppression() -> None:
    loaded: dict[str, Case] = {}
    engine = new_engine(load_case=loaded.get)
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    voided, _ = engine.apply_command(command(reported, Command.DISMISS, 5, "licensed", suppress_s="3600"))
    loaded[reported.id] = voided[-1].case  # the case database holds it now; the worker does not
    changes, reply = engine.apply_command(command(reported, Command.UNDO, 6, version=voided[-1].case.version))
    assert (steps(changes), reply.outcome, reply.state) == ([(reported.id, "reopen")], Outcome.APPLIED,
                                                           CaseState.REPORTED)
    assert [c.id for c in open_cases(engine, STALL_CELL)] == [reported.id]
    assert steps(engine.apply_detection(detection(Phase.START, T0_MS + 10 * MINUTE, 0.5, event_id="evt-2"))) == [
        (reported.id, "attach")]


def test_undoing_a_confirmation_outside_the_window_is_illegal() -> None:
    engine = new_engine(undo_window_s=60)
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    engine.apply_command(command(reported, Command.CONFIRM))
    _, reply = engine.apply_command(command(reported, Command.UNDO, minutes=7))
    assert (reply.outcome, reply.state) == (Outcome.ILLEGAL, CaseState.DISPATCHED)


def test_a_command_on_a_finished_case_from_the_database_needs_the_version_the_caller_saw() -> None:
    first = new_engine()
    reported = only_case(first.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    voided, _ = first.apply_command(command(reported, Command.DISMISS, 5, "duplicate"))
    restarted = new_engine(load_case={reported.id: voided[-1].case}.get)  # after a restart, only the database has it
    _, reply = restarted.apply_command(command(reported, Command.UNDO, 6))
    assert (reply.outcome, reply.message) == (Outcome.INVALID, f"a command on voided case {reported.id} needs the "
                                                               "expected version")


def test_a_just_finished_case_is_kept_for_an_undo_and_survives_a_snapshot() -> None:
    engine = new_engine()
    reported = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    voided, _ = engine.apply_command(command(reported, Command.DISMISS, 5, "duplicate"))
    doc = orjson.loads(orjson.dumps(cell_doc(engine.cells[STALL_CELL])))
    restored = new_engine(load_cell=lambda code: doc if code == STALL_CELL else None)
    _, reply = restored.apply_command(command(reported, Command.UNDO, 6, version=voided[-1].case.version))
    assert (reply.outcome, reply.state) == (Outcome.APPLIED, CaseState.REPORTED)


def test_a_case_runs_the_closed_loop_through_commands_and_is_rated() -> None:
    loaded: dict[str, Case] = {}
    engine = new_engine(load_case=loaded.get)
    case = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.5)))
    script = [
        (Command.FILE, "", {}),
        (Command.DISPATCH, "", {"department": "市场监管", "tier": "street"}),
        (Command.REASSIGN, "", {"department": "城管执法"}),
        (Command.EXTEND, "permit pending", {"by_s": "3600"}),
        (Command.SUSPEND, "owner abroad", {}),
        (Command.RESUME, "", {}),
        (Command.HANDLE, "stall removed", {"photo": "photos/abc.jpg"}),
        (Command.VERIFY_FAIL, "vendor is back", {}),
        (Command.HANDLE, "removed again", {}),
        (Command.VERIFY_PASS, "", {}),
    ]
    for minute, (verb, note, params) in enumerate(script, 10):
        changes, reply = engine.apply_command(command(case, verb, minute, note, version=case.version, **params))
        assert reply.outcome is Outcome.APPLIED, reply
        case = changes[-1].case
    assert (case.state, case.department, case.rework_count, case.extension_count, case.reassign_count) == (
        CaseState.CLOSED, "城管执法", 1, 1, 1)
    assert [e.ref for e in case.evidence if e.detail.get("kind") == "photo"] == ["photos/abc.jpg"]
    loaded[case.id] = case
    changes, reply = engine.apply_command(command(case, Command.RATE, 40, version=case.version, satisfied="true"))
    assert (reply.outcome, changes[-1].case.satisfied) == (Outcome.APPLIED, True)


def test_a_citizen_report_in_a_cell_with_an_open_case_of_its_code_is_fused_into_it() -> None:
    engine = new_engine()
    sensor_case = case_in_cell(engine)
    report = CaseCommand("", sensor_case.grid_code, Command.REPORT, "citizen", T0 + 20 * timedelta(minutes=1),
                         "water up to the kerb", "rq-1", None,
                         {"category": sensor_case.category, "report_id": "r1", "photo": "citizen/r1.jpg"})
    changes, reply = engine.apply_command(report)
    assert (steps(changes), reply.case_id) == ([(sensor_case.id, "attach")], sensor_case.id)
    assert engine.apply_command(report)[0] == []  # read again after a restart: already there


def test_a_citizen_report_with_no_open_case_of_its_code_opens_one_awaiting_filing() -> None:
    engine = new_engine()
    report = CaseCommand("", STALL_CELL, Command.REPORT, "citizen", T0, "vendor on the pavement", "rq-1", None,
                         {"category": "0501", "report_id": "r1"})
    changes, reply = engine.apply_command(report)
    case = only_case(changes)
    assert (case.source, case.state, reply.case_id, steps(changes)) == (
        Source.CITIZEN, CaseState.REPORTED, case.id, [(case.id, "report"), (case.id, "attach")])


def case_in_cell(engine: CaseEngine) -> Case:
    """A waterlogging case opened by rain in CELL."""
    feed(engine, *(rain(T0_MS + i * MINUTE, RAIN_PER_MINUTE * 2) for i in range(120)))
    return case_in(engine, "0406")


def test_a_second_detection_in_the_cell_adds_evidence_to_the_open_case() -> None:
    engine = new_engine()
    first = only_case(engine.apply_detection(detection(Phase.START, T0_MS, 0.95)))
    changes = engine.apply_detection(detection(Phase.START, T0_MS + HOUR, 0.95, event_id="evt-2"))
    assert steps(changes) == [(first.id, "attach")]



def test_a_duplicate_detection_phase_changes_nothing() -> None:
    engine = new_engine()
    engine.apply_detection(detection(Phase.START, T0_MS, 0.95))
    assert engine.apply_detection(detection(Phase.START, T0_MS, 0.95)) == []


def test_a_replayed_start_of_a_dismissed_detection_does_not_reopen_its_case() -> None:
    engine = new_engine()
    start = detection(Phase.START, T0_MS, 0.5)
    reported = only_case(engine.apply_detection(start))
    engine.apply_command(command(reported, Command.DISMISS, note="a parked car"))
    assert engine.apply_detection(start) == []


# --- escalation (督办) ---------------------------------------------------------------------------------

COVER_KEY = correlation_key("0103", COVER)


def cover_case_engine() -> tuple[CaseEngine, Case]:
    """An engine holding the open-cover case of manhole-0007, dispatched at T0 and due at T0 + 2 h."""
    engine = new_engine()
    return engine, only_case(feed(engine, manhole(T0_MS, cover_open=True)))


def test_a_case_is_not_overdue_at_its_deadline() -> None:
    engine, _ = cover_case_engine()
    assert engine.escalate_overdue(T0 + timedelta(hours=2)) == []


def test_an_overdue_dispatched_case_is_escalated_one_level_up() -> None:
    engine, case = cover_case_engine()
    now = T0 + timedelta(hours=2, seconds=1)
    changes = engine.escalate_overdue(now)
    assert steps(changes) == [(case.id, "escalate")]
    escalated = changes[0].case
    assert (escalated.tier, escalated.escalation_count, escalated.state) == (Tier.DISTRICT, 1, CaseState.DISPATCHED)
    assert changes[0].event.at == now
    assert case.deadline_at is not None
    assert changes[0].event.note == f"overdue: deadline {case.deadline_at.isoformat()} passed at street level"


def test_an_overdue_case_is_escalated_once_per_deadline() -> None:
    engine, _ = cover_case_engine()
    engine.escalate_overdue(T0 + timedelta(hours=2, seconds=1))
    assert engine.escalate_overdue(T0 + timedelta(hours=2, minutes=30)) == []
    extended = engine.cells[CELL].cases[COVER_KEY].extend(
        T0 + timedelta(hours=2, minutes=40), "dept-lead", by=SlaTerm(timedelta(hours=1), Clock.NATURAL),
        calendar=engine.calendar, reason="crane needed")
    engine.cells[CELL].cases[COVER_KEY] = extended
    assert engine.escalate_overdue(T0 + timedelta(hours=3)) == []
    assert actions(engine.escalate_overdue(T0 + timedelta(hours=3, seconds=1))) == ["escalate"]


def test_a_suspended_case_is_never_escalated() -> None:
    engine, case = cover_case_engine()
    engine.cells[CELL].cases[COVER_KEY] = case.suspend(T0 + timedelta(hours=1), "dept-lead",
                                                        reason="waiting for the owner", calendar=engine.calendar)
    assert engine.escalate_overdue(T0 + timedelta(days=3)) == []


# --- event time, lateness and duplicates ----------------------------------------------------------------

def test_a_reading_within_the_allowed_lateness_decides_in_its_own_event_time() -> None:
    engine = new_engine()
    feed(engine, rain(T0_MS + 5 * HOUR, 0.0))  # the ingest clock is at T0 + 5 h
    changes = feed(engine, manhole(T0_MS, received_ms=T0_MS + 5 * HOUR, cover_open=True))
    assert only_case(changes).id == case_id(CELL, COVER_KEY, T0_MS)
    assert only_case(changes).reported_at == T0


def test_a_reading_exactly_at_the_allowed_lateness_still_counts() -> None:
    engine = new_engine()
    feed(engine, rain(T0_MS + 6 * HOUR, 0.0))
    assert actions(feed(engine, manhole(T0_MS, received_ms=T0_MS + 6 * HOUR, cover_open=True))) == OPENED


def test_a_reading_later_than_the_allowed_lateness_decides_nothing() -> None:
    engine = new_engine()
    feed(engine, rain(T0_MS + 6 * HOUR + 1, 0.0))
    assert feed(engine, manhole(T0_MS, received_ms=T0_MS + 6 * HOUR + 1, cover_open=True)) == []
    assert feed(engine, rain(T0_MS, 120.0, received_ms=T0_MS + 6 * HOUR + 2)) == []


def test_a_duplicate_reading_changes_nothing() -> None:
    engine = new_engine()
    readings = [rain(T0_MS, 25.0), crowd(T0_MS, 700.0), manhole(T0_MS, cover_open=True)]
    feed(engine, *readings)
    assert [feed(engine, r) for r in readings] == [[], [], []]


def test_a_late_rain_reading_counts_in_every_window_it_falls_in() -> None:
    engine = new_engine()
    feed(engine, rain(T0_MS + 2 * HOUR, 30.0), rain(T0_MS + 4 * HOUR, 0.0))
    feed(engine, rain(T0_MS, 30.0, received_ms=T0_MS + 4 * HOUR + SECOND))  # buffered through an outage
    assert case_in(engine, "0406").severity == "orange"  # 60 mm in the 3 h up to T0 + 2 h, as if on time


def test_a_duplicate_manhole_reading_opens_no_second_case() -> None:
    engine = new_engine()
    water = manhole(T0_MS, water_level_cm=95.0)
    feed(engine, water)
    feed(engine, rain(T0_MS - HOUR, 2.0, received_ms=T0_MS + SECOND))
    assert feed(engine, water) == []


def test_a_stale_low_battery_reading_changes_nothing() -> None:
    engine = new_engine()
    low = manhole(T0_MS, battery_v=3.2)
    feed(engine, low)
    feed(engine, manhole(T0_MS + 20 * MINUTE, battery_v=3.5))
    feed(engine, low)
    assert feed(engine, manhole(T0_MS + 40 * MINUTE, battery_v=3.5)) == []


def test_a_stale_last_will_changes_nothing() -> None:
    engine = new_engine()
    will = last_will("manhole-0007", T0_MS)
    feed(engine, statuses=(will,))
    feed(engine, manhole(T0_MS + MINUTE, tilt_deg=1.0))
    feed(engine, statuses=(will,))
    assert feed(engine, manhole(T0_MS + 2 * MINUTE, tilt_deg=1.0)) == []


# --- snapshots -------------------------------------------------------------------------------------------

def snapshot(engine: CaseEngine) -> dict[str, dict[str, Any]]:
    """Each cell's checkpoint document after a trip through JSON bytes, as the worker stores it."""
    docs: dict[str, dict[str, Any]] = orjson.loads(
        orjson.dumps({code: cell_doc(cell) for code, cell in engine.cells.items()}))
    return docs


def restored(engine: CaseEngine) -> CaseEngine:
    """A fresh engine that loads the cells of `engine` from their snapshots, as a restarted worker does when
    it is assigned their partitions."""
    docs = snapshot(engine)
    fresh = new_engine(load_cell=docs.get)
    for code in docs:
        fresh.cell(code)
    return fresh


def test_a_restored_cell_continues_exactly_like_the_original() -> None:
    before = [
        *[rain(T0_MS + i * MINUTE, 0.7) for i in range(1, 40)],
        *crowd_for(90, 330),
        manhole(T0_MS + 5 * MINUTE, water_level_cm=95.0, battery_v=3.2),
        manhole(T0_MS + 6 * MINUTE, device_id="manhole-0080", tilt_deg=20.0),
    ]
    after = [
        *crowd_for(90, 700, start_s=120),
        *[rain(T0_MS + i * MINUTE, 1.4) for i in range(40, 100)],
        manhole(T0_MS + 70 * MINUTE, water_level_cm=100.0, battery_v=3.5),
        manhole(T0_MS + 80 * MINUTE, device_id="manhole-0080", tilt_deg=20.0),
    ]
    original = new_engine()
    feed_each(original, before)
    copy = restored(original)
    assert feed_each(copy, after) == feed_each(original, after) != []
    assert copy.check_silence() == original.check_silence()
    assert snapshot(copy) == snapshot(original)


def test_a_replayed_online_status_does_not_bring_a_silent_device_back() -> None:
    engine = new_engine()
    feed(engine, manhole(T0_MS, tilt_deg=1.0))
    feed(engine, rain(T0_MS + 7 * MINUTE, 0.0))
    only_case(engine.check_silence())
    replay = dataclasses.replace(last_will("manhole-0007", T0_MS + 8 * MINUTE), online=True, replayed=True)
    assert feed(engine, statuses=(replay,)) == []  # a gateway restarted; the device said nothing new


def test_a_replayed_last_will_opens_nothing() -> None:
    replay = dataclasses.replace(last_will("manhole-0007", T0_MS), replayed=True)
    assert feed(new_engine(), statuses=(replay,)) == []
