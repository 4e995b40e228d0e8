"""Which readings are new: exact repeats are dropped, conflicting ones flagged, a seq going backwards reported."""

from __future__ import annotations

from core.settings import GatewaySettings
from domain.registry import Device, DeviceKind, Registry
from domain.telemetry import Reading
from ingest.dedupe import Seen, SequenceTracker, Verdict
from ingest.payloads import Limits, Validator

CELL = "310104003001001"
T = 1_795_000_000_000


def reading(seq: int, ts_ms: int = T, rain_mm: float = 0.2, device: str = "rain-0001") -> Reading:
    return Reading(device, DeviceKind.RAIN, CELL, ts_ms, ts_ms + 40, seq, {"rain_mm": rain_mm})


def test_the_first_reading_of_a_seq_is_new() -> None:
    assert SequenceTracker(100).check(reading(1)) == Verdict(Seen.NEW)


def test_an_exact_repeat_is_a_duplicate_whenever_it_was_received() -> None:
    tracker = SequenceTracker(100)
    tracker.check(reading(1))
    repeat = Reading("rain-0001", DeviceKind.RAIN, CELL, T, T + 9000, 1, {"rain_mm": 0.2}, late=True)
    assert tracker.check(repeat).seen is Seen.DUPLICATE


def test_the_same_reading_written_differently_is_a_duplicate() -> None:
    validator = Validator(Registry([Device("rain-0001", DeviceKind.RAIN, CELL, 121.43, 31.195, 60)]),
                          Limits.of(GatewaySettings()))
    spellings = [b'{"ts": 1795000000, "seq": 4, "rain_mm": 1}',
                 b'{ "rain_mm" : 1.0 ,\n "seq":4, "ts":"2026-11-18T19:06:40+08:00"}']
    tracker = SequenceTracker(100)
    verdicts = []
    for payload in spellings:
        outcome = validator.check("gridhub/v1/rain/rain-0001/telemetry", payload, T)
        assert isinstance(outcome, Reading)
        verdicts.append(tracker.check(outcome).seen)
    assert verdicts == [Seen.NEW, Seen.DUPLICATE]


def test_the_same_seq_with_other_values_is_a_conflict() -> None:
    tracker = SequenceTracker(100)
    tracker.check(reading(1, rain_mm=0.2))
    assert tracker.check(reading(1, rain_mm=5.0)) == Verdict(Seen.CONFLICT, earlier_ts_ms=T)


def test_the_same_seq_at_another_time_without_a_restart_is_a_conflict() -> None:
    tracker = SequenceTracker(100)
    tracker.check(reading(1))
    tracker.check(reading(2, T + 60_000))
    assert tracker.check(reading(2, T + 120_000)).seen is Seen.CONFLICT


def test_a_conflict_is_not_remembered_so_the_first_reading_stays_the_reference() -> None:
    tracker = SequenceTracker(100)
    tracker.check(reading(1, rain_mm=0.2))
    tracker.check(reading(1, rain_mm=5.0))
    assert tracker.check(reading(1, rain_mm=0.2)).seen is Seen.DUPLICATE


def test_a_seq_going_backwards_is_new_and_reported_with_the_previous_seq() -> None:
    tracker = SequenceTracker(100)
    tracker.check(reading(812, T))
    assert tracker.check(reading(3, T + 60_000)) == Verdict(Seen.REGRESSED, previous_seq=812)
    assert tracker.check(reading(4, T + 120_000)) == Verdict(Seen.NEW)


def test_after_a_restart_old_seqs_are_reused_without_conflict() -> None:
    tracker = SequenceTracker(100)
    for seq in range(5):
        tracker.check(reading(seq, T + seq * 60_000))
    rebooted = T + 10 * 60_000
    assert tracker.check(reading(0, rebooted)).seen is Seen.REGRESSED
    assert [tracker.check(reading(seq, rebooted + seq * 60_000)).seen for seq in range(1, 5)] == [Seen.NEW] * 4
    assert tracker.check(reading(2, rebooted + 2 * 60_000, rain_mm=9.0)).seen is Seen.CONFLICT  # within the new run


def test_a_seq_going_backwards_in_time_too_is_not_a_restart() -> None:
    tracker = SequenceTracker(100)
    tracker.check(reading(1, T))
    tracker.check(reading(2, T + 60_000))
    assert tracker.check(reading(1, T - 60_000)).seen is Seen.CONFLICT  # seq 1 of this run, another time


def test_devices_are_tracked_apart() -> None:
    tracker = SequenceTracker(100)
    tracker.check(reading(5, device="rain-0001"))
    assert tracker.check(reading(1, device="rain-0002", rain_mm=3.0)).seen is Seen.NEW


def test_the_oldest_readings_are_forgotten_beyond_the_size() -> None:
    tracker = SequenceTracker(2)
    for seq in (1, 2, 3):
        tracker.check(reading(seq, T + seq))
    assert tracker.check(reading(3, T + 3)).seen is Seen.DUPLICATE
    assert tracker.check(reading(1, T + 1, rain_mm=7.0)).seen is not Seen.CONFLICT  # forgotten

