"""The sensor fleet's scenario: what each device reports and when, deterministic from the seed."""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from core.city import load_city
from core.settings import load_settings
from domain.registry import Device, DeviceKind
from domain.telemetry import MEASUREMENTS
from simulators.scenario import (
    ConnectionChange,
    Defect,
    IncidentKind,
    Message,
    Scenario,
    ScenarioConfig,
    base_rate,
    crowd_rhythm,
    select_devices,
    speed_for_rate,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2025, 9, 22, 10, 0, tzinfo=SHANGHAI).timestamp()  # an ordinary Monday morning
HOUR = 3600.0
MAX_PAYLOAD_BYTES = 4096  # the gateway's default limit


def problem(payload: bytes, device: Device, sent_at: float) -> str | None:
    """Why a telemetry payload breaks the gateway's payload contract, or None when it is well formed."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return "oversized"
    try:
        body = orjson.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8"
    except orjson.JSONDecodeError:
        return "invalid JSON"
    if not isinstance(body, dict):
        return "not an object"
    missing = {"ts", "seq", *MEASUREMENTS[device.kind]} - body.keys()
    if missing:
        return f"missing {sorted(missing)}"
    ts = body["ts"]
    if _number(ts):
        when = float(ts)
    elif isinstance(ts, str):
        moment = datetime.fromisoformat(ts)
        if moment.tzinfo is None:
            return "ts without offset"
        when = moment.timestamp()
    else:
        return "ts is neither RFC 3339 nor epoch seconds"
    if when > sent_at + 300:
        return "ts in the future"
    if not isinstance(body["seq"], int) or isinstance(body["seq"], bool) or body["seq"] < 0:
        return "seq"
    if "battery_v" in body and not (_number(body["battery_v"]) and 0 < body["battery_v"] < 10):
        return "battery_v"
    if device.kind is DeviceKind.RAIN:
        ok = _number(body["rain_mm"]) and 0 <= body["rain_mm"] <= 200
    elif device.kind is DeviceKind.CROWD:
        ok = isinstance(body["count"], int) and not isinstance(body["count"], bool) and body["count"] >= 0
    else:
        ok = (_number(body["tilt_deg"]) and 0 <= body["tilt_deg"] <= 180 and isinstance(body["cover_open"], bool)
              and _number(body["water_level_cm"]) and 0 <= body["water_level_cm"] <= (device.well_depth_cm or 0))
    return None if ok else "measurement out of range or of the wrong type"


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def fleet() -> list[Device]:
    """The demo city's 204 devices."""
    return list(load_city(load_settings(environ={})).registry)


def scenario_for(devices: list[Device], **config: Any) -> Scenario:
    return Scenario(devices, ScenarioConfig(**config), START)


def play(scenario: Scenario, until: float, devices: Iterable[Device] | None = None,
         ) -> Iterator[Message | ConnectionChange]:
    """Every device's actions merged in wall-clock order, up to `until`."""
    scripts = [scenario.script(d) for d in (scenario.devices if devices is None else devices)]
    queue = [(action.at, i, action) for i, action in ((i, next(s)) for i, s in enumerate(scripts))]
    heapq.heapify(queue)
    while queue[0][0] < until:
        _, i, action = heapq.heappop(queue)
        yield action
        upcoming = next(scripts[i])
        heapq.heappush(queue, (upcoming.at, i, upcoming))


def readings(scenario: Scenario, until: float, devices: Iterable[Device] | None = None,
             ) -> Iterator[tuple[Message, dict[str, Any]]]:
    """Well-formed messages with their decoded bodies."""
    for action in play(scenario, until, devices):
        if isinstance(action, Message) and action.defect is None:
            yield action, orjson.loads(action.payload)


def of_kind(devices: list[Device], kind: DeviceKind) -> list[Device]:
    return [d for d in devices if d.kind is kind]


def test_the_same_seed_and_start_give_the_same_messages_byte_for_byte(fleet: list[Device]) -> None:
    first = [(a.at, a.device.id, getattr(a, "payload", a)) for a in play(scenario_for(fleet, seed=7), START + 600)]
    again = [(a.at, a.device.id, getattr(a, "payload", a)) for a in play(scenario_for(fleet, seed=7), START + 600)]
    other = [(a.at, a.device.id, getattr(a, "payload", a)) for a in play(scenario_for(fleet, seed=8), START + 600)]
    assert len(first) > 500
    assert first == again
    assert first != other


def test_every_well_formed_message_meets_the_topic_contract(fleet: list[Device]) -> None:
    seen: Counter[DeviceKind] = Counter()
    for message, _ in readings(scenario_for(fleet, seed=1), START + 1800):
        assert problem(message.payload, message.device, message.at) is None, message.payload
        assert message.topic == f"gridhub/v1/{message.device.kind.value}/{message.device.id}/telemetry"
        seen[message.device.kind] += 1
    assert set(seen) == set(DeviceKind)


def test_timestamps_are_wall_clock_in_both_forms_across_devices(fleet: list[Device]) -> None:
    forms: dict[str, str] = {}
    for message, body in readings(scenario_for(fleet, seed=1, speed=30), START + 60):
        ts = body["ts"]
        when = ts if isinstance(ts, float) else datetime.fromisoformat(str(ts)).timestamp()
        assert when == pytest.approx(message.at, abs=0.001)
        forms[message.device.id] = "epoch" if isinstance(ts, float) else "rfc3339"
    assert Counter(forms.values())["epoch"] > 50
    assert Counter(forms.values())["rfc3339"] > 50


def test_seq_increases_per_device_across_malformed_messages_and_later_runs(fleet: list[Device]) -> None:
    devices = fleet[:30]
    last: dict[str, int] = {}
    for action in play(scenario_for(devices, seed=2, malformed_share=0.2), START + 1800):
        if isinstance(action, Message):
            assert action.seq > last.get(action.device.id, 0)
            last[action.device.id] = action.seq
    later = Scenario(devices, ScenarioConfig(seed=2), START + 1800)
    first_of_later_run = next(a for a in play(later, START + 7200) if isinstance(a, Message))
    assert first_of_later_run.seq > max(last.values())


def test_speed_makes_devices_report_that_much_more_often(fleet: list[Device]) -> None:
    gauge = of_kind(fleet, DeviceKind.RAIN)[0]
    times = [m.at for m, _ in readings(scenario_for([gauge], speed=10, opening=False), START + 120)]
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(times)}
    assert gaps == {gauge.report_interval_s / 10}


def test_speed_compresses_storms_into_less_wall_clock_time(fleet: list[Device]) -> None:
    gauges = of_kind(fleet, DeviceKind.RAIN)[:5]
    slow = sum(float(body["rain_mm"]) for _, body in readings(
        scenario_for(gauges, seed=1), START + 4 * HOUR))
    fast = sum(float(body["rain_mm"]) for _, body in readings(
        scenario_for(gauges, seed=1, speed=10), START + 0.4 * HOUR))
    assert slow > 100
    assert fast == pytest.approx(slow, abs=0.2 * len(gauges))  # tips still in the buckets at the end


def test_rate_sets_the_speed_from_the_fleets_natural_rate(fleet: list[Device]) -> None:
    assert base_rate(fleet) == pytest.approx(36 / 60 + 48 / 30 + 120 / 120)
    assert speed_for_rate(fleet, 320) == pytest.approx(100)


def test_a_subset_keeps_the_mix_of_kinds(fleet: list[Device]) -> None:
    subset = select_devices(fleet, 17)
    kinds = Counter(d.kind for d in subset)
    assert len(subset) == 17
    assert kinds[DeviceKind.MANHOLE] > kinds[DeviceKind.CROWD] > kinds[DeviceKind.RAIN] > 0


def test_rain_comes_in_whole_tips_of_a_bucket(fleet: list[Device]) -> None:
    amounts = [float(body["rain_mm"]) for _, body in readings(
        scenario_for(fleet, seed=1), START + 4 * HOUR, of_kind(fleet, DeviceKind.RAIN))]
    assert sum(amounts) > 100
    for amount in amounts:
        assert amount >= 0
        assert amount / 0.2 == pytest.approx(round(amount / 0.2), abs=1e-9)
        assert str(amount) == f"{amount:.1f}"  # no 0.6000000000000001 on the wire


def test_a_storm_brings_short_duration_heavy_rain_that_neighbouring_gauges_agree_on(fleet: list[Device]) -> None:
    per_gauge: dict[str, list[tuple[float, float]]] = {}
    for message, body in readings(scenario_for(fleet, seed=1), START + 4 * HOUR, of_kind(fleet, DeviceKind.RAIN)):
        per_gauge.setdefault(message.device.id, []).append((message.at, float(body["rain_mm"])))
    heaviest_hour = max(
        sum(mm for t, mm in series if start <= t < start + HOUR)
        for series in per_gauge.values() for start, _ in series
    )
    totals = [sum(mm for _, mm in series) for series in per_gauge.values()]
    mean = sum(totals) / len(totals)
    assert heaviest_hour >= 20  # CMA short-duration heavy rain
    assert all(abs(total - mean) <= 0.1 * mean for total in totals)


@pytest.mark.parametrize("seed", range(5))
def test_rain_sometimes_reaches_heavy_rain_intensity_beyond_the_opening_storm(fleet: list[Device], seed: int) -> None:
    scenario = scenario_for(fleet, seed=seed, opening=False)
    gauge = of_kind(fleet, DeviceKind.RAIN)[0]
    days = 10
    hourly = [scenario.rainfall_mm(gauge, h * HOUR, (h + 1) * HOUR) for h in range(days * 24)]
    assert max(hourly) >= 20
    assert sum(hourly) < days * 60  # a wet season, not a flood every day


def test_a_crowd_surge_stays_over_two_persons_per_m2_for_two_minutes_even_sped_up(fleet: list[Device]) -> None:
    for speed in (1, 60):
        scenario = scenario_for(fleet, seed=1, speed=speed)
        surge = next(i for i in scenario.incidents(0) if i.kind is IncidentKind.CROWD_SURGE)
        counter = next(d for d in fleet if d.id == surge.device_id)
        dense = [m.at for m, body in readings(scenario, surge.end, [counter])
                 if int(body["count"]) / (counter.zone_area_m2 or 1) >= 2]
        assert dense[-1] - dense[0] >= 120
        assert surge.peak >= 4  # the opening surge reaches the urgent density too


def test_brief_crowd_spikes_stay_under_the_sustain_time(fleet: list[Device]) -> None:
    scenario = scenario_for(fleet, seed=3)
    spikes = [i for block in range(40) for i in scenario.incidents(block) if i.kind is IncidentKind.CROWD_SPIKE]
    surges = [i for block in range(40) for i in scenario.incidents(block) if i.kind is IncidentKind.CROWD_SURGE]
    assert spikes and surges
    assert all(spike.end - spike.start < 120 for spike in spikes)
    assert all(surge.peak > 2 for surge in spikes + surges)


def test_crowds_follow_the_day_with_evening_peaks() -> None:
    for workday in (True, False):
        evening, midday, night = crowd_rhythm(19.5, workday), crowd_rhythm(12.5, workday), crowd_rhythm(4, workday)
        assert evening > midday > night
    assert crowd_rhythm(8.3, workday=True) > crowd_rhythm(8.3, workday=False)  # the commute
    assert crowd_rhythm(15.5, workday=False) > crowd_rhythm(15.5, workday=True)  # weekend afternoons


def test_ordinary_crowds_never_reach_the_warning_density(fleet: list[Device]) -> None:
    scenario = scenario_for(fleet, seed=4, opening=False)
    counters = of_kind(fleet, DeviceKind.CROWD)
    surging = {i.device_id for block in range(5) for i in scenario.incidents(block)
               if i.kind in (IncidentKind.CROWD_SURGE, IncidentKind.CROWD_SPIKE)}
    quiet = [d for d in counters if d.id not in surging]
    for message, body in readings(scenario, START + 12 * HOUR, quiet):  # through the evening peak
        assert int(body["count"]) / (message.device.zone_area_m2 or 1) < 2


def test_an_opened_cover_reads_open_and_tilted(fleet: list[Device]) -> None:
    scenario = scenario_for(fleet, seed=1)
    incident = next(i for i in scenario.incidents(0) if i.kind is IncidentKind.COVER_OPEN)
    well = next(d for d in fleet if d.id == incident.device_id)
    reports = list(readings(scenario, incident.end + 600, [well]))
    during = [body for m, body in reports if incident.start <= m.at < incident.end]
    after = [body for m, body in reports if m.at >= incident.end]
    assert during and after
    assert all(body["cover_open"] is True and float(body["tilt_deg"]) >= 15 for body in during)
    assert all(body["cover_open"] is False and float(body["tilt_deg"]) < 15 for body in after)


def test_a_blocked_sewer_brings_water_near_the_cover_without_rain(fleet: list[Device]) -> None:
    scenario = scenario_for(fleet, seed=1)
    incident = next(i for i in scenario.incidents(0) if i.kind is IncidentKind.SEWER_BLOCKED)
    well = next(d for d in fleet if d.id == incident.device_id)
    depth = well.well_depth_cm or 0
    near = [m.at for m, body in readings(scenario, incident.end, [well])
            if depth - float(body["water_level_cm"]) <= 30]
    assert near
    # Not a bucket tip (0.2 mm) in the 6 h before: the opening storm is still far from the district.
    assert scenario.rainfall_mm(well, scenario.offset(near[0]) - 6 * 3600, scenario.offset(near[0])) < 0.2


def test_blocked_sewers_come_up_only_after_six_dry_hours_of_event_time_even_sped_up(fleet: list[Device]) -> None:
    speed = 4
    scenario = scenario_for(fleet, seed=2, speed=speed)
    sewers = [i for block in range(40) for i in scenario.incidents(block) if i.kind is IncidentKind.SEWER_BLOCKED]
    assert len(sewers) >= 3
    for sewer in sewers:
        well = next(d for d in fleet if d.id == sewer.device_id)
        near_cover = scenario.offset(sewer.start + sewer.ramp_s)
        assert scenario.rainfall_mm(well, max(0.0, near_cover - 6 * 3600 * speed), near_cover) < 0.2  # no tip


def test_heavy_rain_fills_some_wells_to_near_the_cover_and_dry_weather_none(fleet: list[Device]) -> None:
    scenario = scenario_for(fleet, seed=1)
    wells = of_kind(fleet, DeviceKind.MANHOLE)
    blocked = {i.device_id for i in scenario.incidents(0) if i.kind is IncidentKind.SEWER_BLOCKED}
    near_in_rain: set[str] = set()
    near_dry: set[str] = set()
    for message, body in readings(scenario, START + 4 * HOUR, wells):
        if message.device.id in blocked:
            continue
        if (message.device.well_depth_cm or 0) - float(body["water_level_cm"]) <= 30:
            raining = scenario.rain_intensity(message.device, scenario.offset(message.at)) > 0
            (near_in_rain if raining else near_dry).add(message.device.id)
    assert len(near_in_rain) >= 3
    assert not near_dry - near_in_rain  # only as the rain drains away, never out of a dry sky


def test_malformed_messages_come_in_the_configured_share_and_every_kind(fleet: list[Device]) -> None:
    for share in (0.01, 0.05):
        scenario = scenario_for(fleet, seed=5, malformed_share=share)
        messages = [a for a in play(scenario, START + 2 * HOUR) if isinstance(a, Message)]
        malformed = [m for m in messages if m.defect is not None]
        assert len(malformed) / len(messages) == pytest.approx(share, rel=0.2)
        if share == 0.05:
            assert set(Counter(m.defect for m in malformed)) == set(Defect)
        for message in messages:
            broken = problem(message.payload, message.device, message.at)
            assert (broken is None) == (message.defect is None), (message.defect, broken, message.payload[:200])


def test_batteries_drain_slowly(fleet: list[Device]) -> None:
    devices = of_kind(fleet, DeviceKind.RAIN)[:2] + of_kind(fleet, DeviceKind.MANHOLE)[:2]
    scenario = scenario_for(devices, seed=6, speed=5000, min_outage_s=0.01)
    volts: dict[str, list[float]] = {}
    for message, body in readings(scenario, START + 7 * 86_400 / 5000):
        volts.setdefault(message.device.id, []).append(float(body["battery_v"]))
    assert len(volts) == len(devices)
    for series in volts.values():
        assert all(a >= b for a, b in itertools.pairwise(series))
        assert 0.01 <= series[0] - series[-1] <= 0.1  # a week


def test_a_few_batteries_are_below_their_floor_and_counters_have_none(fleet: list[Device]) -> None:
    scenario = scenario_for(fleet, seed=6)
    low = [d for d in fleet if (battery := scenario.battery(d)) and battery[0] < (d.battery_floor_v or 0)]
    assert 2 <= len(low) <= 10
    for _, body in readings(scenario, START + 120, of_kind(fleet, DeviceKind.CROWD)):
        assert "battery_v" not in body  # counters run on mains power


def test_an_outage_drops_the_connection_and_a_gauge_uploads_what_it_logged_meanwhile(fleet: list[Device]) -> None:
    gauges = of_kind(fleet, DeviceKind.RAIN)
    scenario = scenario_for(gauges, seed=1, speed=50)
    outage = next(i for i in scenario.incidents(0) if i.kind is IncidentKind.OUTAGE)
    gauge = next(d for d in gauges if d.id == outage.device_id)
    actions = list(play(scenario, outage.end + 60, [gauge]))
    down = next(i for i, a in enumerate(actions) if isinstance(a, ConnectionChange) and not a.online)
    up = next(i for i, a in enumerate(actions) if isinstance(a, ConnectionChange) and a.online)
    assert actions[down].at == outage.start
    assert actions[up].at == outage.end
    assert outage.end - outage.start >= 4 * gauge.report_interval_s  # long enough for the silence rule
    assert all(isinstance(a, Message) and a.at <= outage.start for a in actions[:down])
    assert down + 1 == up  # silent while offline
    uploaded = [a for a in actions[up + 1:] if isinstance(a, Message) and a.at == outage.end]
    assert len(uploaded) > 10
    assert all(outage.start <= m.measured_at < outage.end for m in uploaded)
    seqs = [a.seq for a in actions if isinstance(a, Message)]
    assert seqs == sorted(seqs)
