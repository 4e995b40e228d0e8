"""`gridhub detect offline`: run a camera's detectors over a clip and write one JSON line per detection.

Each line: `camera_id`, `zone_id`, `kind` (stall|dust), `start_s` (when the detector believes
the condition began: the object became stationary, the dust rose), `end_s`, `confidence` (the highest
reached), `bbox` ([x, y, w, h] in source pixels at the alert, stalls only, else null), and the extra
`alert_s`: when the detection was raised, i.e. when the `start` record would have gone to Kafka. The alert
delay of a detection is its `alert_s` minus the start of the truth event it matches.

A file that ends before the frames its container announces (truncated, damaged) is analysed as far as it goes
and reported (`ClipAnalysis.reader.truncated`); the events file is written whole or not at all.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from core.files import write_atomically
from core.settings import DetectSettings
from detectors.events import Box, ZoneEvent
from detectors.pipeline import CameraPipeline
from detectors.sources import ClipReader
from domain.detections import Phase
from domain.registry import Camera


@dataclass(frozen=True, slots=True)
class ClipDetection:
    """One detection over a clip, times in seconds from its start."""

    camera_id: str
    zone_id: str
    kind: str
    start_s: float
    end_s: float
    confidence: float
    bbox: Box | None
    alert_s: float

    def as_dict(self) -> dict[str, Any]:
        """The JSON line's fields."""
        return {"camera_id": self.camera_id, "zone_id": self.zone_id, "kind": self.kind,
                "start_s": round(self.start_s, 2), "end_s": round(self.end_s, 2),
                "confidence": self.confidence, "bbox": list(self.bbox) if self.bbox is not None else None,
                "alert_s": round(self.alert_s, 2)}


@dataclass(frozen=True, slots=True)
class ClipAnalysis:
    """A clip's detections and what reading it met."""

    detections: list[ClipDetection]
    reader: ClipReader


def detect_clip(camera: Camera, clip: str, settings: DetectSettings | None = None) -> ClipAnalysis:
    """Every detection in the clip, in order of start; raise SourceError if the clip cannot be decoded."""
    pipeline = CameraPipeline(camera, settings)
    reader = ClipReader(clip)
    events: list[ZoneEvent] = []
    for frame in reader.frames(camera.fps):
        events.extend(pipeline.process(frame.image, frame.t))
    events.extend(pipeline.close())
    starts = {event.event_id: event for event in events if event.phase is Phase.START}
    detections = []
    for end in (event for event in events if event.phase is Phase.END):
        start = starts[end.event_id]
        detections.append(ClipDetection(camera.id, end.zone.id, end.kind.value, max(0.0, end.start_t),
                                        max(end.at_t, start.at_t), end.confidence, start.bbox, start.at_t))
    return ClipAnalysis(sorted(detections, key=lambda d: (d.start_s, d.zone_id)), reader)


def check_writable(path: Path) -> None:
    """Raise OSError if `path` cannot be written (checked before an analysis that may take minutes)."""
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory", str(path))
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".check"):
        pass


def write_jsonl(detections: list[ClipDetection], path: Path) -> None:
    """Write the detections as JSON lines, replacing the file in one step."""
    write_atomically(path, b"".join(orjson.dumps(d.as_dict()) + b"\n" for d in detections), mode=0o644)
