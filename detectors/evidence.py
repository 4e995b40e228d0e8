"""Evidence snapshots: a JPEG of the frame with the detection drawn, for the evidence store (storage.evidence).

A detection carries the store's reference to its snapshot, not the image.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import numpy.typing as npt

from detectors.events import ZoneEvent
from storage.evidence import camera_folder

JPEG_QUALITY = 85
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def snapshot_name(camera_id: str, event: ZoneEvent) -> str:
    """Where an event phase's snapshot goes: one folder per camera, one file per event and phase time."""
    stem = _UNSAFE.sub("_", f"{event.event_id}-{event.phase.value}-{round(event.at_t * 1000)}")
    return f"{camera_folder(camera_id)}/{stem}.jpg"


def render_snapshot(image: npt.NDArray[np.uint8], event: ZoneEvent) -> bytes:
    """The frame as JPEG with the zone outlined and the stall's box (or the dusty zone) drawn and labelled."""
    canvas = image.copy()
    zone = np.round(np.array(event.zone.polygon)).astype(np.int32)
    colour = (0, 0, 255)
    cv2.polylines(canvas, [zone], True, (0, 255, 255) if event.bbox is not None else colour, 2)
    anchor = (int(zone[:, 0].min()), int(zone[:, 1].min()))
    if event.bbox is not None:
        x, y, w, h = event.bbox
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, 2)
        anchor = (x, y)
    label = f"{event.kind.value} {event.zone.id} {event.confidence:.2f}"
    cv2.putText(canvas, label, (anchor[0], max(12, anchor[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                cv2.LINE_AA)
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("the snapshot could not be encoded as JPEG")
    return encoded.tobytes()
