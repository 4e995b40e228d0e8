"""Ground truth: the stall and dust events a perfect detector would report, in the offline events' shape.

A stall event starts when the stall stops moving inside a vending zone (judged by the bottom centre of its
box) and ends when it starts moving away; a dust event starts when a plume whose source lies in a
construction zone reaches half its peak opacity and ends when it falls below half again. Intervals are cut
to the clip, and only events lasting at least the zone's dwell time (stalls) or 30 s (dust)
are truth: stalls outside every zone, shorter stays and short puffs are distractors and never appear here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.registry import Zone
from simulators.cameras.schedule import Epoch, Planner
from simulators.cameras.zones import DUST_DWELL_S


@dataclass(frozen=True, slots=True)
class TruthEvent:
    """One true event, as `gridhub detect offline` should report it (the line format of `detectors.offline`)."""

    camera_id: str
    zone_id: str
    kind: str  # "stall" | "dust"
    start_s: float
    end_s: float
    bbox: tuple[int, int, int, int] | None  # [x, y, w, h] in source pixels, stalls only
    cause: str | None = None  # what made it, where the generator says ("digger", "cart"): recall by cause

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object with the offline events' fields (less confidence), and its cause if known."""
        document: dict[str, Any] = {"camera_id": self.camera_id, "zone_id": self.zone_id, "kind": self.kind,
                                    "start_s": round(self.start_s, 2), "end_s": round(self.end_s, 2),
                                    "bbox": list(self.bbox) if self.bbox is not None else None}
        if self.cause is not None:
            document["cause"] = self.cause
        return document


def truth_events(planner: Planner, epochs: list[Epoch], zones: tuple[Zone, ...], camera_id: str,
                 duration_s: float) -> list[TruthEvent]:
    """The true events within [0, duration_s), in order of start."""
    dwell = {zone.id: zone.dwell_s for zone in zones}
    width, height = planner.view.width, planner.view.height
    events = []
    for epoch in epochs:
        for stall in epoch.stalls:
            start, end = max(stall.stop_s, 0.0), min(stall.leave_s, duration_s)
            if stall.zone_id is not None and end - start >= dwell[stall.zone_id]:
                x, y, w, h = planner.spot_box(stall)
                x0, y0 = max(round(x), 0), max(round(y), 0)
                x1, y1 = min(round(x + w), width), min(round(y + h), height)
                events.append(TruthEvent(camera_id, stall.zone_id, "stall", start, end, (x0, y0, x1 - x0, y1 - y0)))
        for plume in epoch.plumes:
            start, end = max(plume.visible_s[0], 0.0), min(plume.visible_s[1], duration_s)
            if plume.zone_id is not None and end - start >= DUST_DWELL_S:
                events.append(TruthEvent(camera_id, plume.zone_id, "dust", start, end, None))
    return sorted(events, key=lambda event: (event.start_s, event.zone_id, event.kind))
