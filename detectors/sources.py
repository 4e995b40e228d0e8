"""Camera sources: video files, RTSP and HTTP (MJPEG) streams and the scene simulator, decoded by OpenCV (FFmpeg).

Two ways to read:
- `ClipReader` for offline analysis: every frame of a file is demuxed, but only those due at the camera's
  fps are decoded and returned, with their time in the clip; the reader counts what it met, and says when a
  file ends before the frames its container announces (a truncated or damaged file);
- `LiveSource` for `gridhub detect run`: a thread decodes as fast as the source delivers and keeps only the
  latest frame, so the detectors sample it at their own rate and never fall behind live. A stream that
  drops or cannot be opened is tried again with exponential backoff; a file plays in real time, in a loop,
  like a camera; `restart()` lets a watchdog replace a reader stuck inside the decoder.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from core.metrics import DETECT_RECONNECTS, DETECT_SOURCE_UP
from core.retry import Retry
from detectors.arrays import u8
from domain.registry import Camera

log = logging.getLogger("gridhub.detect.sources")

Image = npt.NDArray[np.uint8]

OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 10_000
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceError(Exception):
    """A source that cannot be opened or decoded, named with the reason."""


class Capture(Protocol):
    """What a source reader needs from a decoder (cv2.VideoCapture or the simulator's renderer)."""

    def read(self) -> tuple[bool, Image | None]: ...

    def release(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame and when it was taken (clip seconds offline, epoch seconds live)."""

    t: float
    image: Image
    seq: int = 0


def is_stream(uri: str) -> bool:
    """Whether the source is a network stream rather than a file or the simulator."""
    return uri.lower().startswith(STREAM_SCHEMES)


def open_capture(uri: str) -> cv2.VideoCapture:
    """Open a file or stream URL with the FFmpeg backend; raise SourceError saying why it cannot be read."""
    if not is_stream(uri):
        path = Path(uri)
        if not path.is_file():
            raise SourceError(f"{uri}: no such file")
        try:
            with path.open("rb") as probe:
                probe.read(1)
        except OSError as exc:
            raise SourceError(f"{uri}: cannot read: {exc.strerror}") from None
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
    capture = cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        what = "stream cannot be opened (unreachable, refused or not video)" if is_stream(uri) else \
            "not a video FFmpeg can decode (corrupt or unknown format)"
        raise SourceError(f"{uri}: {what}")
    return capture


class ClipReader:
    """A video file read for offline analysis, with an account of what reading it met."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.announced = 0  # frames the container announces; 0 if it does not say
        self.native_fps = 0.0
        self.read = 0  # frames demuxed
        self.undecodable = 0  # frames demuxed that would not decode
        self.delivered = 0  # frames returned (due at the camera's fps)
        self.last_t = 0.0  # time of the last frame read, in the clip

    @property
    def truncated(self) -> bool:
        """Whether the file ended well before the frames its container announces (a count estimated from the
        duration may be off by a frame or two, or by a percent)."""
        return self.announced > 0 and self.read + max(2, self.announced // 100) < self.announced

    def describe(self) -> str:
        """What was read, in one line."""
        of = f" of {self.announced} announced" if self.announced else ""
        bad = f", {self.undecodable} would not decode" if self.undecodable else ""
        return f"{self.read} frames read{of} ({self.last_t:.1f} s){bad}, {self.delivered} analysed"

    def frames(self, fps: float) -> Iterator[Frame]:
        """The frames due at `fps`, with their time from the start of the clip; raise SourceError if the file
        cannot be opened or holds no frame."""
        capture = open_capture(self.path)
        try:
            self.native_fps = native = capture.get(cv2.CAP_PROP_FPS)
            self.announced = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
            step = 1.0 / fps
            due = 0.0
            while capture.grab():
                index = self.read
                self.read += 1
                # Constant-rate files (what cameras and the simulator write) time frames by index; the position
                # in the stream is the fallback for a file that does not state its rate.
                t = self.last_t = index / native if 0 < native < 1000 else capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
                if t + 1e-6 < due:
                    continue
                ok, image = capture.retrieve()
                if not ok or image is None:
                    self.undecodable += 1
                    continue
                while due <= t + 1e-6:
                    due += step
                self.delivered += 1
                yield Frame(t, u8(image), index)
            if self.read == 0:
                raise SourceError(f"{self.path}: not a video FFmpeg can decode (no frame could be read)")
        finally:
            capture.release()


class _VideoCapture:
    """cv2.VideoCapture as a `Capture`."""

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self._capture = capture
        self.fps = float(capture.get(cv2.CAP_PROP_FPS))

    def read(self) -> tuple[bool, Image | None]:
        """The next frame."""
        ok, image = self._capture.read()
        return ok, u8(image) if ok and image is not None else None

    def release(self) -> None:
        """Close the decoder."""
        self._capture.release()


#: Renders a `sim://` camera: given the camera, its frame at a time in seconds. The detectors do not import
#: the simulators (services stand side by side); the shell hands this in (`gridhub detect run`).
SceneRenderer = Callable[[Camera], Callable[[float], Image]]


class SimCapture:
    """A simulated scene as a live camera: frames rendered at the camera's fps, in real time."""

    def __init__(self, render: Callable[[float], Image], fps: float) -> None:
        self._render = render
        self._fps = fps
        self._started = time.monotonic()
        self._index = 0

    @classmethod
    def open(cls, camera: Camera, scenes: SceneRenderer | None) -> SimCapture:
        """The scene of a camera whose source is a `sim://` URL; raise SourceError if it cannot be rendered."""
        if scenes is None:
            raise SourceError(f"{camera.source}: no scene renderer for sim:// sources in this process")
        try:
            render = scenes(camera)
        except ValueError as exc:
            raise SourceError(f"{camera.source}: {exc}") from None
        return cls(render, camera.fps)

    def read(self) -> tuple[bool, Image | None]:
        """The next frame, when it is due."""
        t = self._index / self._fps
        delay = self._started + t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._index += 1
        return True, self._render(t)

    def release(self) -> None:
        """Nothing to release."""


class LiveSource:
    """A source read on its own thread that always holds the latest frame; reconnects with backoff."""

    def __init__(self, uri: str, opener: Callable[[], Capture] | None = None, name: str = "") -> None:
        self.uri = uri
        self.name = name or uri
        self._opener: Callable[[], Capture] = opener or (lambda: _VideoCapture(open_capture(uri)))
        self._paced = opener is None and not is_stream(uri)  # a file is played in real time, not decoded flat out
        self._lock = threading.Condition()
        self._latest: Frame | None = None
        self._seq = 0
        self._generation = 0
        self._stopped = threading.Event()
        self.reconnects = 0
        self.last_error = ""
        self.last_frame_at = time.monotonic()  # monotonic time of the last decoded frame (or of the start)

    def start(self) -> None:
        """Start reading."""
        self._spawn()

    def stop(self) -> None:
        """Stop reading; a reader blocked in the decoder leaves when the decoder returns."""
        self._stopped.set()
        with self._lock:
            self._lock.notify_all()

    def restart(self) -> None:
        """Abandon the current reader (stuck in the decoder, say) and start a fresh one."""
        log.warning("camera %s: no frame for %.0f s; restarting its reader", self.name,
                    time.monotonic() - self.last_frame_at)
        self.last_frame_at = time.monotonic()
        self._spawn()

    def next_frame(self, after_seq: int, timeout: float) -> Frame | None:
        """The latest frame if it is newer than `after_seq`, waiting up to `timeout` s for one."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while (self._latest is None or self._latest.seq <= after_seq) and not self._stopped.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._lock.wait(remaining)
            return self._latest if self._latest is not None and self._latest.seq > after_seq else None

    def _spawn(self) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
        threading.Thread(target=self._read, args=(generation,), name=f"source-{self.name}", daemon=True).start()

    def _current(self, generation: int) -> bool:
        return not self._stopped.is_set() and generation == self._generation

    def _read(self, generation: int) -> None:
        retry = Retry(BACKOFF_S, log)
        while self._current(generation):
            try:
                capture = self._opener()
            except SourceError as exc:
                self._failed(retry, str(exc))
                continue
            delivered = self._pump(capture, generation, retry)
            capture.release()
            if not self._current(generation):
                return
            if delivered and self._paced:
                continue  # end of the file: play it again
            self._failed(retry, f"{self.uri}: stream ended or dropped")

    def _pump(self, capture: Capture, generation: int, retry: Retry) -> int:
        """Read frames until the source ends or fails; how many were delivered."""
        delivered = 0
        started = time.monotonic()
        native = capture.fps if self._paced and isinstance(capture, _VideoCapture) else 0.0
        while self._current(generation):
            ok, image = capture.read()
            if not ok or image is None:
                break
            if native > 0:
                delay = started + delivered / native - time.monotonic()
                if delay > 0 and self._stopped.wait(delay):
                    break
            delivered += 1
            if delivered == 1:
                retry.recovered("camera %s: receiving frames again", self.name)
                DETECT_SOURCE_UP.labels(self.name).set(1)
            with self._lock:
                if generation != self._generation:
                    break
                self._seq += 1
                self._latest = Frame(time.time(), image, self._seq)
                self.last_frame_at = time.monotonic()
                self.last_error = ""
                self._lock.notify_all()
        return delivered

    def _failed(self, retry: Retry, reason: str) -> None:
        self.last_error = reason
        self.reconnects += 1
        DETECT_RECONNECTS.labels(self.name).inc()
        DETECT_SOURCE_UP.labels(self.name).set(0)
        self._stopped.wait(retry.failed("camera %s: %s; retrying with backoff", self.name, reason))
