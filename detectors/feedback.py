"""Operators' lessons applied to one camera's observations (`domain.detector_feedback`).

A lesson acts between the detectors and the event log: what it rules out is not observed, so an open event it
covers ends and no new one starts, while the detectors themselves go on learning the scene unchanged (a lesson
that expires leaves them exactly where they would have been).
"""

from __future__ import annotations

from collections.abc import Iterable

from detectors.events import Box, Observation
from domain.detector_feedback import Lesson, LessonKind

#: A stall observation is masked when this share of its box lies inside the lesson's box.
MASKED_SHARE = 0.5


class Lessons:
    """The lessons in force for one camera, by lesson id."""

    def __init__(self) -> None:
        self._lessons: dict[str, Lesson] = {}

    def __len__(self) -> int:
        return len(self._lessons)

    def learn(self, lesson: Lesson) -> None:
        """Take a lesson in, or take it back when it is withdrawn."""
        if lesson.withdrawn:
            self._lessons.pop(lesson.lesson_id, None)
        else:
            self._lessons[lesson.lesson_id] = lesson

    def admitted(self, observations: Iterable[Observation], t: float) -> list[Observation]:
        """The observations no lesson in force at `t` (epoch seconds) rules out; expired lessons are dropped."""
        now_ms = t * 1000
        for lesson_id in [i for i, lesson in self._lessons.items() if lesson.until_ms <= now_ms]:
            del self._lessons[lesson_id]
        if not self._lessons:
            return list(observations)
        return [o for o in observations if not any(_rules_out(lesson, o) for lesson in self._lessons.values())]


def _rules_out(lesson: Lesson, observation: Observation) -> bool:
    if lesson.zone_id != observation.zone.id or lesson.kind is not observation.kind:
        return False
    if lesson.lesson is LessonKind.RAISE:
        return observation.confidence <= lesson.min_confidence
    return observation.bbox is not None and lesson.bbox is not None and \
        _share_inside(observation.bbox, lesson.bbox) >= MASKED_SHARE


def _share_inside(box: Box, mask: Box) -> float:
    """How much of `box` lies inside `mask`."""
    width = min(box[0] + box[2], mask[0] + mask[2]) - max(box[0], mask[0])
    height = min(box[1] + box[3], mask[1] + mask[3]) - max(box[1], mask[1])
    if width <= 0 or height <= 0 or box[2] * box[3] == 0:
        return 0.0
    return width * height / (box[2] * box[3])
