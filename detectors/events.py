"""From what the detectors see, step by step, to detection events in phases: start, updates, end.

A detector reports an `Observation` on every step while its condition holds (a stall stationary past the
zone's dwell time, dust persisting over a site). The first observation of a key starts an event, a clearly
higher confidence or a moved box updates it, and a key no longer observed ends it at the last time it was seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from domain.detections import DetectionKind, Phase
from domain.registry import Zone

Box = tuple[int, int, int, int]

UPDATE_CONFIDENCE_STEP = 0.1  # an update is worth sending when confidence rose by this much
UPDATE_MIN_INTERVAL_S = 30.0  # and no more often than this
BOX_MOVED_IOU = 0.5  # or when the box overlaps the last reported one less than this


@dataclass(frozen=True, slots=True)
class Observation:
    """One detector's condition holding at one step."""

    key: str  # stable for one episode of the condition within a detector
    zone: Zone
    kind: DetectionKind
    since_t: float  # when the detector believes the condition began
    seen_t: float  # the last time it was actually seen (a stall briefly hidden by passers-by is still there)
    confidence: float
    bbox: Box | None = None  # source pixels


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    """One phase of a detection event of one camera; times in the pipeline's clock (seconds)."""

    event_id: str
    phase: Phase
    zone: Zone
    kind: DetectionKind
    start_t: float
    at_t: float  # when this phase happened: the alert time for `start`, the last sighting for `end`
    confidence: float
    bbox: Box | None


class EventLog:
    """Open events of one camera, advanced with each step's observations."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self._open: dict[str, tuple[ZoneEvent, Observation]] = {}  # key → (last event sent, last observation)

    def step(self, observations: Iterable[Observation], t: float) -> list[ZoneEvent]:
        """The events that this step's observations (at time `t`) start, update and end."""
        events: list[ZoneEvent] = []
        seen: set[str] = set()
        for observation in observations:
            seen.add(observation.key)
            opened = self._open.get(observation.key)
            if opened is None:
                event = ZoneEvent(self._event_id(observation), Phase.START, observation.zone, observation.kind,
                                  observation.since_t, t, observation.confidence, observation.bbox)
                events.append(event)
                self._open[observation.key] = (event, observation)
                continue
            sent, _ = opened
            if _worth_update(sent, observation, t):
                sent = replace(sent, phase=Phase.UPDATE, at_t=t, confidence=observation.confidence,
                               bbox=observation.bbox)
                events.append(sent)
            self._open[observation.key] = (sent, observation)
        for key in [key for key in self._open if key not in seen]:
            events.append(self._end(key))
        return events

    def close(self) -> list[ZoneEvent]:
        """End every open event (the clip ended, the camera stopped)."""
        return [self._end(key) for key in list(self._open)]

    def _end(self, key: str) -> ZoneEvent:
        sent, last = self._open.pop(key)
        return replace(sent, phase=Phase.END, at_t=last.seen_t, confidence=max(sent.confidence, last.confidence),
                       bbox=last.bbox)

    def _event_id(self, observation: Observation) -> str:
        # Deterministic from what the event is: a replay of the same clip yields the same ids.
        return f"{self.camera_id}:{observation.zone.id}:{observation.kind.value}:{round(observation.since_t * 1000)}"


def _worth_update(sent: ZoneEvent, observation: Observation, t: float) -> bool:
    if t - sent.at_t < UPDATE_MIN_INTERVAL_S:
        return False
    if observation.confidence >= sent.confidence + UPDATE_CONFIDENCE_STEP:
        return True
    return sent.bbox is not None and observation.bbox is not None and iou(sent.bbox, observation.bbox) < BOX_MOVED_IOU


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)
