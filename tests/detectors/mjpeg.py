"""A small MJPEG-over-HTTP camera for the source tests, on its own thread; it can drop its viewers on demand."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "gridhubframe"


class MjpegCamera:
    """Serves numbered grey frames at `fps` on /stream.mjpg until stopped; `drop()` closes every connection
    and refuses new ones for `down_s` seconds, like a camera rebooting."""

    def __init__(self, fps: float = 20.0, size: tuple[int, int] = (160, 90)) -> None:
        self.fps = fps
        self.size = size
        self.served = 0
        self.connections = 0
        self._down_until = 0.0
        self._epoch = 0
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if time.monotonic() < camera._down_until:
                    self.send_error(503)
                    return
                camera.connections += 1
                epoch = camera._epoch
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                try:
                    while epoch == camera._epoch and not camera._stopped.is_set():
                        jpeg = camera._frame()
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                        time.sleep(1 / camera.fps)
                except (BrokenPipeError, ConnectionResetError):
                    return

        self._stopped = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> MjpegCamera:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()

    def drop(self, down_s: float) -> None:
        """End every open stream and refuse connections for `down_s` seconds."""
        self._down_until = time.monotonic() + down_s
        self._epoch += 1

    def _frame(self) -> bytes:
        self.served += 1
        width, height = self.size
        image = np.full((height, width, 3), self.served % 200, np.uint8)
        ok, encoded = cv2.imencode(".jpg", image)
        assert ok
        return encoded.tobytes()
