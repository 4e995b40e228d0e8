"""Ground truth of the second generator, with the first generator's meaning and line format.

A stall event runs from the moment the stall is set down (a cart stops, a mat or rack is put down, the first
crate comes out of the shop) with its box's bottom centre inside a vending zone, until it starts to leave (is
packed up or pushed off); it counts if it lasts at least the zone's dwell time within the clip. A dust event
runs while plumes whose source lies in a construction zone are at least half as dense as at their peak, with
gaps under 10 s bridged (a digger's puffs are one plume); it counts if it lasts 30 s within the clip. People,
groups, sitters, parked cars, short stays, short puffs and anything outside the zones are never truth.
"""

from __future__ import annotations

from domain.registry import Zone
from simulators.cameras.second.actors import Stall
from simulators.cameras.second.dust import MERGE_GAP_S, Plume, merge
from simulators.cameras.second.world import DUST_DWELL_S
from simulators.cameras.truth import TruthEvent


def stall_events(stalls: list[Stall], zones: tuple[Zone, ...], camera_id: str, duration_s: float,
                 size: tuple[int, int]) -> list[TruthEvent]:
    """True stall events within [0, duration_s)."""
    dwell = {zone.id: zone.dwell_s for zone in zones}
    width, height = size
    events = []
    for stall in stalls:
        start, end = max(stall.stop_s, 0.0), min(stall.leave_s, duration_s)
        if stall.zone_id is None or end - start < dwell[stall.zone_id]:
            continue
        x, y, w, h = stall.box
        x0, y0 = max(round(x), 0), max(round(y), 0)
        x1, y1 = min(round(x + w), width), min(round(y + h), height)
        events.append(TruthEvent(camera_id, stall.zone_id, "stall", start, end, (x0, y0, x1 - x0, y1 - y0),
                                 stall.look.kind))
    return events


def dust_events(plumes: list[Plume], camera_id: str, duration_s: float) -> list[TruthEvent]:
    """True dust events within [0, duration_s): per zone, the visible stretches of its plumes, merged; the cause
    of an event is the style of the plumes in it ("column", "sheared", "digger", joined by "+")."""
    by_zone: dict[str, list[tuple[float, float, str]]] = {}
    for plume in plumes:
        if plume.zone_id is not None:
            by_zone.setdefault(plume.zone_id, []).extend((start, end, plume.style) for start, end in plume.visible())
    events = []
    for zone_id, runs in by_zone.items():
        for start, end in merge([(a, b) for a, b, _ in runs], MERGE_GAP_S):
            cause = "+".join(sorted({style for a, b, style in runs if a <= end and b >= start}))
            start, end = max(start, 0.0), min(end, duration_s)
            if end - start >= DUST_DWELL_S:
                events.append(TruthEvent(camera_id, zone_id, "dust", start, end, None, cause))
    return events
