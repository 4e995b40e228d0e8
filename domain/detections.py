"""Camera detections as they travel on `gridhub.detections`: one record per detection phase.

A detector reports an event in phases: `start` when the condition has held for the zone's dwell time,
`update` while it lasts (a better snapshot, a higher confidence), and `end` when it is over. All phases of
one event share its `event_id`. Records are keyed by the grid cell code, so a cell's detections reach the
same stream worker as its telemetry. Times are epoch milliseconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final, Literal

import msgspec

from domain import taxonomy, wire
from domain.registry import ZoneKind

FORMAT_VERSION: Final = 1


class DetectionKind(StrEnum):
    """What a camera detector looks for."""

    STALL = "stall"  # a stationary object (stall, cart, table) in a no-vending or shopfront zone
    DUST = "dust"  # construction dust over a site


class Phase(StrEnum):
    """Where a detection event stands."""

    START = "start"
    UPDATE = "update"
    END = "end"


#: Taxonomy code of a detection by the kind of zone it happened in.
CATEGORY_BY_ZONE: dict[ZoneKind, str] = {
    ZoneKind.NO_VENDING: taxonomy.STREET_VENDING,
    ZoneKind.SHOPFRONT: taxonomy.SHOP_SPILL_OUT,
    ZoneKind.CONSTRUCTION: taxonomy.CONSTRUCTION_DUST,
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


class _Record(msgspec.Struct, frozen=True):
    v: Literal[1]
    event_id: str
    phase: Phase
    camera_id: str
    zone_id: str
    zone_kind: ZoneKind
    kind: DetectionKind
    grid_code: str
    start_ms: int
    at_ms: int
    confidence: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    bbox: tuple[int, int, int, int] | None = None
    snapshot: str = ""


_DECODER = msgspec.json.Decoder(_Record)


def encode_detection(detection: Detection) -> bytes:
    """The detection as compact JSON bytes."""
    d = detection
    return msgspec.json.encode(_Record(FORMAT_VERSION, d.event_id, d.phase, d.camera_id, d.zone_id, d.zone_kind,
                                       d.kind, d.grid_code, d.start_ms, d.at_ms, d.confidence, d.bbox, d.snapshot))


def decode_detection(data: bytes) -> Detection:
    """Parse a record written by `encode_detection`; raise DetectionFormatError on anything else."""
    r = wire.decode(_DECODER, data, DetectionFormatError, "detection", FORMAT_VERSION)
    return Detection(r.event_id, r.phase, r.camera_id, r.zone_id, r.zone_kind, r.kind, r.grid_code, r.start_ms,
                     r.at_ms, r.confidence, r.bbox, r.snapshot)
