"""Gateway validation: every message becomes exactly one reading, status change or rejection with a reason."""

from __future__ import annotations

import json
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.settings import GatewaySettings
from domain.components import parse_component_id
from domain.registry import Device, DeviceKind, Registry
from domain.telemetry import Reading, StatusChange
from ingest.payloads import Limits, Reason, Rejection, Validator

NOW_MS = 1_795_000_000_000
NOW_S = NOW_MS // 1000
CELL = "310104003001001"
REGISTRY = Registry([
    Device("rain-0001", DeviceKind.RAIN, CELL, 121.43, 31.195, 60, battery_floor_v=3.4),
    Device("crowd-0001", DeviceKind.CROWD, CELL, 121.43, 31.195, 30, zone_area_m2=300.0),
    Device("manhole-0001", DeviceKind.MANHOLE, CELL, 121.43, 31.195, 120,
           component_id=parse_component_id("3101040103000012"), well_depth_cm=180.0),
])
VALIDATOR = Validator(REGISTRY, Limits(max_payload_bytes=4096, future_tolerance_ms=300_000,
                                       late_after_ms=300_000, max_lateness_ms=6 * 3_600_000))
RAIN = "gridhub/v1/rain/rain-0001/telemetry"
MANHOLE = "gridhub/v1/manhole/manhole-0001/telemetry"


def check(topic: str, payload: object) -> Reading | StatusChange | Rejection:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return VALIDATOR.check(topic, raw, NOW_MS)


def reason(topic: str, payload: object) -> Reason:
    outcome = check(topic, payload)
    assert isinstance(outcome, Rejection), outcome
    return outcome.reason


def test_a_rain_report_is_normalised_and_enriched() -> None:
    reading = check(RAIN, {"ts": NOW_S - 30, "seq": 5, "rain_mm": 0.4, "battery_v": 3.9})
    assert reading == Reading("rain-0001", DeviceKind.RAIN, CELL, (NOW_S - 30) * 1000, NOW_MS, 5,
                              {"rain_mm": 0.4, "battery_v": 3.9}, late=False)


def test_a_manhole_report_carries_its_component_and_well_depth() -> None:
    reading = check(MANHOLE, {"ts": NOW_S, "seq": 1, "tilt_deg": 20, "cover_open": True, "water_level_cm": 40})
    assert isinstance(reading, Reading)
    assert reading.values == {"tilt_deg": 20.0, "cover_open": True, "water_level_cm": 40.0}
    assert (reading.component_id, reading.well_depth_cm) == ("3101040103000012", 180.0)


def test_rfc3339_timestamps_with_an_offset_are_converted_to_utc() -> None:
    reading = check(RAIN, {"ts": "2026-11-18T19:06:40+08:00", "seq": 1, "rain_mm": 0})
    assert isinstance(reading, Reading)
    assert reading.ts_ms == NOW_MS  # 2026-11-18T11:06:40Z


def test_late_data_within_the_window_is_accepted_and_marked_late() -> None:
    reading = check(RAIN, {"ts": NOW_S - 3 * 3600, "seq": 1, "rain_mm": 1})
    assert isinstance(reading, Reading)
    assert reading.late


@pytest.mark.parametrize(("topic", "payload", "expected"), [
    ("gridhub/v1/rain/rain-0001", {}, Reason.BAD_TOPIC),
    ("other/v1/rain/rain-0001/telemetry", {}, Reason.BAD_TOPIC),
    ("gridhub/v1/rain/rain-9999/telemetry", {}, Reason.UNKNOWN_DEVICE),
    ("gridhub/v1/crowd/rain-0001/telemetry", {}, Reason.KIND_MISMATCH),
    (RAIN, b"x" * 5000, Reason.TOO_LARGE),
    (RAIN, b"\xff\xfe{}", Reason.BAD_UTF8),
    (RAIN, b"{not json", Reason.BAD_JSON),
    (RAIN, [1, 2], Reason.BAD_JSON),
    (RAIN, {"ts": NOW_S, "seq": 1}, Reason.INVALID),
    (RAIN, {"ts": NOW_S, "seq": "1", "rain_mm": 1}, Reason.INVALID),
    (RAIN, {"ts": NOW_S, "seq": 1.5, "rain_mm": 1}, Reason.INVALID),
    (RAIN, {"ts": NOW_S, "seq": 1, "rain_mm": 1, "colour": "red"}, Reason.INVALID),
    (RAIN, {"ts": NOW_S, "seq": -1, "rain_mm": 1}, Reason.OUT_OF_RANGE),
    (RAIN, {"ts": NOW_S, "seq": 1, "rain_mm": 250}, Reason.OUT_OF_RANGE),
    (RAIN, {"ts": NOW_S, "seq": 1, "rain_mm": -0.2}, Reason.OUT_OF_RANGE),
    (RAIN, b'{"ts": 1795000000, "seq": 1, "rain_mm": NaN}', Reason.OUT_OF_RANGE),
    (RAIN, {"ts": NOW_S, "seq": 1, "rain_mm": 1, "battery_v": 99}, Reason.OUT_OF_RANGE),
    ("gridhub/v1/crowd/crowd-0001/telemetry", {"ts": NOW_S, "seq": 1, "count": -3}, Reason.OUT_OF_RANGE),
    ("gridhub/v1/crowd/crowd-0001/telemetry", {"ts": NOW_S, "seq": 1, "count": 2.5}, Reason.INVALID),
    (MANHOLE, {"ts": NOW_S, "seq": 1, "tilt_deg": 200, "cover_open": False, "water_level_cm": 1}, Reason.OUT_OF_RANGE),
    (MANHOLE, {"ts": NOW_S, "seq": 1, "tilt_deg": 2, "cover_open": "no", "water_level_cm": 1}, Reason.INVALID),
    (MANHOLE, {"ts": NOW_S, "seq": 1, "tilt_deg": 2, "cover_open": False, "water_level_cm": 400},
     Reason.OUT_OF_RANGE),  # 180 cm well: 400 cm of water is 2.2 m above the cover
    (RAIN, {"ts": "2026-11-18T16:26:40", "seq": 1, "rain_mm": 1}, Reason.BAD_TIMESTAMP),
    (RAIN, {"ts": "yesterday", "seq": 1, "rain_mm": 1}, Reason.BAD_TIMESTAMP),
    (RAIN, {"ts": NOW_S + 301, "seq": 1, "rain_mm": 1}, Reason.FUTURE),
    (RAIN, {"ts": NOW_S - 6 * 3600 - 1, "seq": 1, "rain_mm": 1}, Reason.TOO_OLD),
    (RAIN, {"ts": NOW_S, "seq": 1, "rain_mm": 1, "device_id": "rain-0002"}, Reason.DEVICE_MISMATCH),
    ("gridhub/v1/rain/rain-0001/status", b"sleeping", Reason.BAD_STATUS),
])
def test_each_problem_has_its_reason(topic: str, payload: object, expected: Reason) -> None:
    assert reason(topic, payload) is expected


CROWD = "gridhub/v1/crowd/crowd-0001/telemetry"
VALID = {
    RAIN: {"ts": NOW_S, "seq": 1, "rain_mm": 1.5, "battery_v": 3.9},
    CROWD: {"ts": NOW_S, "seq": 1, "count": 7, "battery_v": 3.9},
    MANHOLE: {"ts": NOW_S, "seq": 1, "tilt_deg": 2.0, "cover_open": False, "water_level_cm": 30.0, "battery_v": 3.9},
}
NUMBERS = [(topic, name) for topic, payload in VALID.items() for name, value in payload.items()
           if not isinstance(value, bool)]


@pytest.mark.parametrize(("topic", "name"), NUMBERS)
@pytest.mark.parametrize("boolean", [True, False])
def test_a_boolean_is_not_a_number_in_any_numeric_field(topic: str, name: str, boolean: bool) -> None:
    outcome = check(topic, {**VALID[topic], name: boolean})
    assert outcome == Rejection(Reason.INVALID, f"{name}: {str(boolean).lower()} is a boolean, not a number",
                                topic.split("/")[3])


@pytest.mark.parametrize(("topic", "name"), [(topic, name) for topic, name in NUMBERS if name != "ts"])
def test_a_number_in_a_string_is_not_a_number(topic: str, name: str) -> None:
    # (A string ts is a time: RFC 3339, or epoch seconds as pydantic reads them.)
    outcome = check(topic, {**VALID[topic], name: "1"})
    assert isinstance(outcome, Rejection)
    assert (outcome.reason, outcome.detail.split(":")[0]) == (Reason.INVALID, name)


@pytest.mark.parametrize("cover_open", [1, 0, "true", None])
def test_cover_open_must_be_true_or_false(cover_open: object) -> None:
    assert reason(MANHOLE, {**VALID[MANHOLE], "cover_open": cover_open}) is Reason.INVALID


def test_whole_numbers_are_numbers_and_read_as_floats() -> None:
    reading = check(MANHOLE, {**VALID[MANHOLE], "tilt_deg": 2, "water_level_cm": 30, "battery_v": 4})
    assert isinstance(reading, Reading)
    assert reading.values == {"tilt_deg": 2.0, "cover_open": False, "water_level_cm": 30.0, "battery_v": 4.0}
    assert all(type(value) is float for name, value in reading.values.items() if name != "cover_open")


def test_a_reading_naming_its_own_device_is_fine() -> None:
    assert isinstance(check(RAIN, {"ts": NOW_S, "seq": 1, "rain_mm": 1, "device_id": "rain-0001"}), Reading)


def test_the_limits_are_the_gateway_settings_in_milliseconds() -> None:
    gateway = GatewaySettings(max_payload_bytes=2048, future_tolerance_s=60, late_after_s=120, max_lateness_s=3600)

    assert Limits.of(gateway) == Limits(max_payload_bytes=2048, future_tolerance_ms=60_000, late_after_ms=120_000,
                                        max_lateness_ms=3_600_000)


@pytest.mark.parametrize(("payload", "online"), [(b"online", True), (b"OFFLINE\n", False), (b'"offline"', False)])
def test_status_messages_become_status_changes(payload: bytes, online: bool) -> None:
    change = VALIDATOR.check("gridhub/v1/rain/rain-0001/status", payload, NOW_MS)
    assert change == StatusChange("rain-0001", DeviceKind.RAIN, CELL, NOW_MS, online)


def _accounted(topic: str, payload: bytes) -> None:
    outcome = VALIDATOR.check(topic, payload, NOW_MS)
    assert isinstance(outcome, Reading | StatusChange | Rejection)
    if isinstance(outcome, Rejection):
        assert outcome.reason in Reason
        assert outcome.detail


TOPICS = [RAIN, MANHOLE, "gridhub/v1/crowd/crowd-0001/telemetry", "gridhub/v1/rain/rain-0001/status",
          "gridhub/v1/rain/nobody/telemetry", "gridhub/v1/x/y/z", "#"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
FIELDS = st.fixed_dictionaries({}, optional={
    "ts": st.integers(NOW_S - 30_000, NOW_S + 1000) | st.text(max_size=30) | JSON_VALUES,
    "seq": st.integers(-5, 2**64) | JSON_VALUES,
    "rain_mm": st.floats(-10, 300) | JSON_VALUES,
    "count": st.integers(-10, 2_000_000) | JSON_VALUES,
    "tilt_deg": st.floats(-10, 300), "cover_open": st.booleans() | JSON_VALUES,
    "water_level_cm": st.floats(-10, 6000), "battery_v": st.floats(-1, 30),
    "device_id": st.sampled_from(["rain-0001", "manhole-0001", "x"]),
})


@settings(max_examples=3000, deadline=None)
@given(topic=st.sampled_from(TOPICS), payload=FIELDS)
def test_fuzz_structured_payloads_are_all_accounted_for(topic: str, payload: dict[str, object]) -> None:
    _accounted(topic, json.dumps(payload).encode())  # json, unlike orjson, writes big ints and NaN


@settings(max_examples=2000, deadline=None)
@given(topic=st.sampled_from(TOPICS) | st.text(max_size=80), payload=st.binary(max_size=5000))
def test_fuzz_arbitrary_bytes_are_all_accounted_for(topic: str, payload: bytes) -> None:
    _accounted(topic, payload)


def test_fuzz_mutated_valid_payloads_are_all_accounted_for() -> None:
    # 5,000 byte-level mutations of valid reports: flips, truncations, insertions.
    rng = random.Random(20261122)
    seeds = [orjson.dumps({"ts": NOW_S, "seq": 3, "rain_mm": 0.2, "battery_v": 3.7}),
             orjson.dumps({"ts": NOW_S, "seq": 3, "tilt_deg": 2.5, "cover_open": False, "water_level_cm": 30})]
    for i in range(5000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(data))
            match rng.randrange(3):
                case 0:
                    data[position] = rng.randrange(256)
                case 1:
                    del data[position:position + rng.randint(1, 5)]
                case _:
                    data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 5)))
        _accounted(RAIN if i % 2 else MANHOLE, bytes(data))
