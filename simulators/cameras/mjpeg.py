"""A live scene served as an MJPEG stream over HTTP, the way many IP cameras serve theirs.

One thread renders frames at the scene's fps on the scene's own clock (while anyone watches) and every
client gets the latest frame, so a slow client drops frames instead of slowing the camera down.
"""

from __future__ import annotations

import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import cv2

from simulators.cameras.scene import Scene

BOUNDARY = "gridhubframe"
STREAM_PATH = "/stream.mjpg"
SNAPSHOT_PATH = "/snapshot.jpg"


class _Broadcast:
    """The latest JPEG frame and its number; rendering pauses while nobody watches."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.changed = threading.Condition()
        self.jpeg = b""
        self.number = -1
        self.watchers = 0
        self.stopped = False
        self.started = time.monotonic()

    def run(self) -> None:
        period = 1.0 / self.scene.fps
        quality = [cv2.IMWRITE_JPEG_QUALITY, self.scene.params.jpeg_quality]
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.watchers > 0 or self.stopped)
                if self.stopped:
                    return
            number = int((time.monotonic() - self.started) / period)
            ok, encoded = cv2.imencode(".jpg", self.scene.frame_at(number * period), quality)
            with self.changed:
                if ok:
                    self.jpeg, self.number = encoded.tobytes(), number
                    self.changed.notify_all()
            time.sleep(max(0.0, self.started + (number + 1) * period - time.monotonic()))

    def next_after(self, number: int, timeout_s: float) -> tuple[int, bytes] | None:
        """The first frame newer than `number`, waiting up to `timeout_s`; None when stopped or timed out."""
        with self.changed:
            if not self.changed.wait_for(lambda: self.number > number or self.stopped, timeout_s) or self.stopped:
                return None
            return self.number, self.jpeg


class MjpegServer:
    """Serves a scene at http://host:port/stream.mjpg (multipart/x-mixed-replace) and /snapshot.jpg."""

    def __init__(self, scene: Scene, host: str = "127.0.0.1", port: int = 0) -> None:
        self.broadcast = _Broadcast(scene)
        self.httpd = ThreadingHTTPServer((host, port), _handler(self.broadcast))
        self.httpd.daemon_threads = True
        self._threads = [threading.Thread(target=self.broadcast.run, name="mjpeg-render", daemon=True),
                         threading.Thread(target=self.httpd.serve_forever, name="mjpeg-http", daemon=True)]

    @property
    def url(self) -> str:
        """The stream's URL."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}{STREAM_PATH}"

    def start(self) -> MjpegServer:
        """Start rendering and serving in background threads."""
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open streams and free the port."""
        with self.broadcast.changed:
            self.broadcast.stopped = True
            self.broadcast.changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def _handler(broadcast: _Broadcast) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Keep the console for the command's own output."""

        def do_GET(self) -> None:
            """Stream frames, or send one snapshot."""
            if self.path.split("?")[0] not in (STREAM_PATH, SNAPSHOT_PATH, "/"):
                self.send_error(HTTPStatus.NOT_FOUND, f"try {STREAM_PATH} or {SNAPSHOT_PATH}")
                return
            with broadcast.changed:
                broadcast.watchers += 1
                broadcast.changed.notify_all()
            try:
                if self.path.startswith(SNAPSHOT_PATH):
                    self._snapshot()
                else:
                    self._stream()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the viewer went away; that is how every stream ends
            finally:
                with broadcast.changed:
                    broadcast.watchers -= 1

        def _snapshot(self) -> None:
            frame = broadcast.next_after(-1, 10.0)
            if frame is None:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(frame[1])))
            self.end_headers()
            self.wfile.write(frame[1])

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Pragma", "no-cache")
            self.end_headers()
            number = -1
            while (frame := broadcast.next_after(number, 10.0)) is not None:
                number, jpeg = frame
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                 .encode("ascii") + jpeg + b"\r\n")
                self.wfile.flush()

    return Handler
