"""Operators' lessons applied to a camera's observations: masks over stalls, a raised bar for dust."""

from __future__ import annotations

import pytest

from detectors.events import Observation
from detectors.feedback import Lessons
from domain.detections import DetectionKind
from domain.detector_feedback import FeedbackFormatError, Lesson, LessonKind, decode_lesson, encode_lesson
from domain.registry import Zone, ZoneKind

SIDEWALK = Zone("sidewalk", ZoneKind.NO_VENDING, ((0, 0), (100, 0), (100, 100), (0, 100)), 30)
SITE = Zone("site", ZoneKind.CONSTRUCTION, ((0, 0), (100, 0), (100, 100), (0, 100)), 30)
T = 1_800_000_000.0  # epoch seconds, as frames are timed live


def stall(box: tuple[int, int, int, int], zone: Zone = SIDEWALK) -> Observation:
    return Observation(f"stall-{box}", zone, DetectionKind.STALL, T - 60, T, 0.8, box)


def dust(confidence: float) -> Observation:
    return Observation(f"dust-{confidence}", SITE, DetectionKind.DUST, T - 60, T, confidence)


def mask(box: tuple[int, int, int, int], until_s: float = T + 3600, lesson_id: str = "case-1") -> Lesson:
    return Lesson(lesson_id, "cam", "sidewalk", DetectionKind.STALL, LessonKind.MASK, round(until_s * 1000), box)


def test_a_mask_rules_out_a_stall_mostly_inside_it_and_nothing_else() -> None:
    lessons = Lessons()
    lessons.learn(mask((10, 10, 40, 40)))
    inside, mostly_out, elsewhere = stall((15, 15, 30, 30)), stall((35, 10, 40, 40)), stall((60, 60, 20, 20))
    other_zone = stall((15, 15, 30, 30), Zone("kerb", ZoneKind.NO_VENDING, SIDEWALK.polygon, 30))
    assert lessons.admitted([inside, mostly_out, elsewhere, other_zone, dust(0.9)], T) == [
        mostly_out, elsewhere, other_zone, dust(0.9)]  # mostly_out: 3/8 of its box is inside the mask


def test_a_raised_bar_rules_out_dust_no_stronger_than_what_was_dismissed() -> None:
    lessons = Lessons()
    lessons.learn(Lesson("case-2", "cam", "site", DetectionKind.DUST, LessonKind.RAISE, round((T + 60) * 1000),
                         min_confidence=0.7))
    assert lessons.admitted([dust(0.7), dust(0.71)], T) == [dust(0.71)]


def test_a_lesson_ends_when_it_expires_or_is_withdrawn() -> None:
    lessons = Lessons()
    lessons.learn(mask((10, 10, 40, 40), until_s=T + 10, lesson_id="a"))
    lessons.learn(mask((10, 10, 40, 40), until_s=T + 1000, lesson_id="b"))
    assert lessons.admitted([stall((15, 15, 30, 30))], T) == []
    lessons.learn(mask((10, 10, 40, 40), until_s=T + 1000, lesson_id="b").withdrawal())
    assert lessons.admitted([stall((15, 15, 30, 30))], T + 5) == []  # "a" still holds
    assert lessons.admitted([stall((15, 15, 30, 30))], T + 10) == [stall((15, 15, 30, 30))]
    assert len(lessons) == 0


def test_a_lesson_travels_as_a_versioned_record_and_a_bad_one_is_refused_by_name() -> None:
    lesson = mask((1, 2, 3, 4))
    assert decode_lesson(encode_lesson(lesson)) == lesson
    assert decode_lesson(encode_lesson(lesson.withdrawal())).withdrawn
    with pytest.raises(FeedbackFormatError, match="a mask lesson needs the box it masks"):
        decode_lesson(b'{"v":1,"lesson_id":"x","camera_id":"c","zone_id":"z","kind":"stall","lesson":"mask",'
                      b'"until_ms":5}')
    with pytest.raises(FeedbackFormatError, match="unsupported detector feedback format version 2"):
        decode_lesson(b'{"v":2}')
