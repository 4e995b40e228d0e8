"""A scene read like a live camera, for in-process use by the detectors (`sim://` sources)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from domain.registry import Camera
from simulators.cameras.draw import Image
from simulators.cameras.scene import Scene
from simulators.cameras.spec import parse_sim_url


class LiveCapture:
    """`read()` waits for the next frame time on the scene's clock, like cv2.VideoCapture on a live camera.

    A reader that falls behind gets the frame due now, not the backlog: a live camera drops frames, it never
    lags. The scene's clock starts when the capture is opened.
    """

    def __init__(self, scene: Scene, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.scene = scene
        self._clock = clock
        self._sleep = sleep
        self._opened_at = clock()
        self._next = 0
        self._open = True

    def read(self) -> tuple[bool, Image | None]:
        """The next frame (True, BGR image), or (False, None) once released."""
        if not self._open:
            return False, None
        fps = self.scene.fps
        elapsed = self._clock() - self._opened_at
        if elapsed < self._next / fps:
            self._sleep(self._next / fps - elapsed)
        else:
            self._next = max(self._next, math.floor(elapsed * fps + 1e-9))
        t_s = self._next / fps
        self._next += 1
        return True, self.scene.frame_at(t_s)

    def isOpened(self) -> bool:  # named as on cv2.VideoCapture, which the detectors also read from
        """Whether frames can still be read."""
        return self._open

    def release(self) -> None:
        """Stop delivering frames."""
        self._open = False


def open_live(source: str | Camera, width: int = 640, height: int = 360) -> LiveCapture:
    """A live capture of a `sim://` URL, or of a camera with such a source (then with its zones, fps and id)."""
    if isinstance(source, Camera):
        return LiveCapture(Scene.for_camera(source, width, height))
    return LiveCapture(Scene(parse_sim_url(source), width=width, height=height))
