"""One camera's detectors over its frames: working resolution, motion gate, stall and dust, operators' lessons,
events."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from core.settings import DetectSettings
from detectors.arrays import f32, u8
from detectors.dust import DustDetector
from detectors.events import EventLog, ZoneEvent
from detectors.feedback import Lessons
from detectors.ground import GroundPlane
from detectors.motion import MotionGate
from detectors.stall import StallDetector
from detectors.zones import ZoneArea
from domain.registry import Camera

WORK_WIDTH = 240  # working pixels across: a 640×360 camera is analysed at 240×135

Frame = npt.NDArray[np.uint8]


class CameraPipeline:
    """Feed frames with their times (seconds, any clock that does not go back); get detection events."""

    def __init__(self, camera: Camera, settings: DetectSettings | None = None) -> None:
        self.camera = camera
        self._settings = settings or DetectSettings()
        self.events = EventLog(camera.id)
        self._source_size: tuple[int, int] | None = None
        self._size = (WORK_WIDTH, WORK_WIDTH)
        self._motion = MotionGate()
        self._stall: StallDetector | None = None
        self._dust: DustDetector | None = None
        self.lessons = Lessons()  # times in the frames' clock: epoch seconds live

    def process(self, image: Frame, t: float) -> list[ZoneEvent]:
        """Analyse one frame taken at `t`; the events it starts, updates or ends."""
        height, width = image.shape[:2]
        if self._source_size != (width, height):
            self._start(width, height)
        assert self._stall is not None and self._dust is not None
        work = self._shrink(image).astype(np.float32)
        gray = f32(cv2.GaussianBlur(cv2.cvtColor(work, cv2.COLOR_BGR2GRAY), (3, 3), 0))
        moving = self._motion.update(gray, t)
        observations = self._stall.update(work, moving, t) + self._dust.update(work, t)
        return self.events.step(self.lessons.admitted(observations, t), t)

    def close(self) -> list[ZoneEvent]:
        """End whatever is still open (end of the clip, camera stopped)."""
        return self.events.close()

    def _shrink(self, image: Frame) -> Frame:
        """Down to the working size: area averaging by a whole factor (fast, and it averages noise away), then
        linear interpolation for the rest (area averaging by a fractional factor costs ten times more)."""
        factor = image.shape[1] // self._size[0]
        if factor >= 2:
            image = u8(cv2.resize(image, (image.shape[1] // factor, image.shape[0] // factor),
                                  interpolation=cv2.INTER_AREA))
        if image.shape[1] == self._size[0]:
            return image
        return u8(cv2.resize(image, self._size, interpolation=cv2.INTER_LINEAR))

    def _start(self, width: int, height: int) -> None:
        """(Re)build the detectors for a source of this size; a size change restarts them."""
        self._source_size = (width, height)
        scale = WORK_WIDTH / width
        self._size = (WORK_WIDTH, max(1, round(height * scale)))
        shape = (self._size[1], self._size[0])
        areas = [ZoneArea.of(zone, shape, scale) for zone in self.camera.zones]
        self._motion = MotionGate()
        ground = GroundPlane(self.camera.ground) if self.camera.ground is not None else None
        self._stall = StallDetector(areas, shape, 1 / scale, self._settings.stall, ground)
        self._dust = DustDetector(areas, shape, self._settings.dust)
