"""Operators' lessons to the camera detectors, as they travel on `gridhub.detector-feedback`.

An operator who dismisses a detection as "not a stall" or "not dust" may teach the detector for a while: for a
stall, a mask over the box it reported (whatever stands there again is not reported); for dust, a higher bar in
that zone (a plume no stronger than the dismissed one is not reported). A lesson lasts until `until_ms`; undoing
the dismissal withdraws it (the same `lesson_id`, `until_ms` 0). Records are keyed by camera id, and a detector
process reads the whole topic when it starts: lessons are few and short-lived.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final, Literal

import msgspec

from domain import wire
from domain.detections import DetectionKind

FORMAT_VERSION: Final = 1


class LessonKind(StrEnum):
    """How a lesson changes what a detector reports."""

    MASK = "mask"  # a stall: nothing that mostly covers `bbox` is reported
    RAISE = "raise"  # dust: nothing below `min_confidence` is reported


#: The lesson a dismissal teaches for each kind of detection.
LESSON_FOR: dict[DetectionKind, LessonKind] = {DetectionKind.STALL: LessonKind.MASK,
                                               DetectionKind.DUST: LessonKind.RAISE}


class FeedbackFormatError(ValueError):
    """A record on the feedback topic that does not decode to a lesson."""


@dataclass(frozen=True, slots=True)
class Lesson:
    """One operator's lesson for one camera zone."""

    lesson_id: str  # the dismissed case's id
    camera_id: str
    zone_id: str
    kind: DetectionKind
    lesson: LessonKind
    until_ms: int  # epoch ms; 0 withdraws the lesson
    bbox: tuple[int, int, int, int] | None = None  # MASK: [x, y, w, h] in source pixels
    min_confidence: float = 0.0  # RAISE: what a detection must exceed

    def __post_init__(self) -> None:
        if self.lesson is LessonKind.MASK and self.bbox is None and self.until_ms:
            raise ValueError("a mask lesson needs the box it masks")

    @property
    def withdrawn(self) -> bool:
        """Whether this record takes the lesson back."""
        return self.until_ms == 0

    def withdrawal(self) -> Lesson:
        """The record that takes this lesson back."""
        return Lesson(self.lesson_id, self.camera_id, self.zone_id, self.kind, self.lesson, 0, self.bbox,
                      self.min_confidence)


class _Record(msgspec.Struct, frozen=True):
    v: Literal[1]
    lesson_id: str
    camera_id: str
    zone_id: str
    kind: DetectionKind
    lesson: LessonKind
    until_ms: Annotated[int, msgspec.Meta(ge=0)]
    bbox: tuple[int, int, int, int] | None = None
    min_confidence: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0


_DECODER = msgspec.json.Decoder(_Record)


def encode_lesson(lesson: Lesson) -> bytes:
    """The lesson as compact JSON bytes."""
    x = lesson
    return msgspec.json.encode(_Record(FORMAT_VERSION, x.lesson_id, x.camera_id, x.zone_id, x.kind, x.lesson,
                                       x.until_ms, x.bbox, x.min_confidence))


def decode_lesson(data: bytes) -> Lesson:
    """Parse a record written by `encode_lesson`; raise FeedbackFormatError on anything else."""
    r = wire.decode(_DECODER, data, FeedbackFormatError, "detector feedback", FORMAT_VERSION)
    try:
        return Lesson(r.lesson_id, r.camera_id, r.zone_id, r.kind, r.lesson, r.until_ms, r.bbox, r.min_confidence)
    except ValueError as exc:
        raise FeedbackFormatError(f"not a detector feedback record: {exc}") from None
