"""Detection events in phases: one start, updates only when worth it, an end at the last sighting."""

from __future__ import annotations

from detectors.events import EventLog, Observation
from domain.detections import DetectionKind, Phase
from domain.registry import Zone, ZoneKind

ZONE = Zone("sidewalk", ZoneKind.NO_VENDING, ((0, 0), (10, 0), (10, 10)), 60)


def _seen(t: float, confidence: float = 0.7, bbox: tuple[int, int, int, int] = (10, 10, 40, 40)) -> Observation:
    return Observation("stall-1", ZONE, DetectionKind.STALL, since_t=100.0, seen_t=t, confidence=confidence,
                       bbox=bbox)


def test_an_observed_condition_starts_once_and_ends_at_its_last_sighting() -> None:
    log = EventLog("cam")
    [start] = log.step([_seen(160)], 160)
    assert log.step([_seen(161)], 161) == []
    [end] = log.step([], 170)
    assert (start.phase, start.start_t, start.at_t) == (Phase.START, 100.0, 160)
    assert (end.phase, end.event_id, end.at_t) == (Phase.END, start.event_id, 161)


def test_an_update_needs_a_clearly_higher_confidence_or_a_moved_box_and_some_time() -> None:
    log = EventLog("cam")
    log.step([_seen(160)], 160)
    assert log.step([_seen(170, confidence=0.9)], 170) == []  # too soon
    assert log.step([_seen(195, confidence=0.75)], 195) == []  # not enough higher
    [update] = log.step([_seen(200, confidence=0.9)], 200)
    [moved] = log.step([_seen(240, confidence=0.9, bbox=(100, 100, 40, 40))], 240)
    assert (update.phase, update.confidence, moved.phase) == (Phase.UPDATE, 0.9, Phase.UPDATE)


def test_closing_ends_every_open_event() -> None:
    log = EventLog("cam")
    log.step([_seen(160)], 160)
    assert [event.phase for event in log.close()] == [Phase.END]
    assert log.close() == []
