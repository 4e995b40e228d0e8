"""Camera detections as they travel on `gridhub.detections`: one record per detection phase.

A detector reports an event in phases: `start` when the condition has held for the zone's dwell time,
`update` while it lasts (a better snapshot, a higher confidence), and `end` when it is over. All phases of
one event share its `event_id`. Records are keyed by the grid cell code, so a cell's detections reach the
same stream worker as its telemetry. Times are epoch milliseconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from domain.registry import ZoneKind

FORMAT_VERSION = 1


class DetectionKind(StrEnum):
    """What a camera detector looks for."""

    STALL = "stall"  # a stationary object (stall, cart, table) in a no-vending or shopfront zone
    DUST = "dust"  # construction dust over a site


class Phase(StrEnum):
    """Where a detection event stands."""

    START = "start"
    UPDATE = "update"
    END = "end"


#: Taxonomy code of a detection by the kind of zone it happened in (DESIGN.md §2).
CATEGORY_BY_ZONE: dict[ZoneKind, str] = {
    ZoneKind.NO_VENDING: "0501",  # 无照经营游商
    ZoneKind.SHOPFRONT: "0504",  # 店外经营
    ZoneKind.CONSTRUCTION: "0302",  # 工地扬尘
}


class DetectionFormatError(ValueError):
    """A record on the detections topic that does not decode to a detection."""


@dataclass(frozen=True, slots=True)
class Detection:
    """One phase of a camera detection event."""

    event_id: str  # stable across the phases of one event, unique per camera
    phase: Phase
    camera_id: str
    zone_id: str
    zone_kind: ZoneKind
    kind: DetectionKind
    grid_code: str
    start_ms: int
    at_ms: int  # when this phase happened (start_ms for `start`, the end time for `end`)
    confidence: float  # 0..1
    bbox: tuple[int, int, int, int] | None = None  # [x, y, w, h] in source pixels (stalls)
    snapshot: str = ""  # evidence-store reference of the JPEG with the box drawn

    @property
    def category(self) -> str:
        """The taxonomy code this detection raises."""
        return CATEGORY_BY_ZONE[self.zone_kind]


def encode_detection(detection: Detection) -> bytes:
    """The detection as compact JSON bytes."""
    return orjson.dumps({
        "v": FORMAT_VERSION,
        "event_id": detection.event_id,
        "phase": detection.phase.value,
        "camera_id": detection.camera_id,
        "zone_id": detection.zone_id,
        "zone_kind": detection.zone_kind.value,
        "kind": detection.kind.value,
        "grid_code": detection.grid_code,
        "start_ms": detection.start_ms,
        "at_ms": detection.at_ms,
        "confidence": detection.confidence,
        "bbox": list(detection.bbox) if detection.bbox is not None else None,
        "snapshot": detection.snapshot,
    })


def decode_detection(data: bytes) -> Detection:
    """Parse a record written by `encode_detection`; raise DetectionFormatError on anything else."""
    try:
        doc: Any = orjson.loads(data)
        if doc.get("v") != FORMAT_VERSION:
            raise DetectionFormatError(f"unsupported detection format version {doc.get('v')!r}")
        bbox = doc.get("bbox")
        if isinstance(doc["confidence"], bool):
            raise DetectionFormatError("confidence must be a number, not a boolean")
        confidence = float(doc["confidence"])
        if not 0.0 <= confidence <= 1.0:
            raise DetectionFormatError(f"confidence {confidence} is outside 0..1")
        return Detection(
            event_id=str(doc["event_id"]),
            phase=Phase(doc["phase"]),
            camera_id=str(doc["camera_id"]),
            zone_id=str(doc["zone_id"]),
            zone_kind=ZoneKind(doc["zone_kind"]),
            kind=DetectionKind(doc["kind"]),
            grid_code=str(doc["grid_code"]),
            start_ms=int(doc["start_ms"]),
            at_ms=int(doc["at_ms"]),
            confidence=confidence,
            bbox=(int(bbox[0]), int(bbox[1]), int(bbox[2]), int(bbox[3])) if bbox is not None else None,
            snapshot=str(doc.get("snapshot") or ""),
        )
    except DetectionFormatError:
        raise
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise DetectionFormatError(f"not a detection: {exc!r}") from None
