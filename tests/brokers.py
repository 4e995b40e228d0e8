"""Real brokers for tests (from `gridhub.localbrokers`), plus a Kafka link that can be cut on demand."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from gridhub.localbrokers import (
    TANSU_CLIENT_ENV,
    amqtt,
    free_port,
    mosquitto,
    mosquitto_binary,
    running,
    tansu,
    tansu_argv,
    wait_for_port,
)

__all__ = [
    "MOSQUITTO",
    "TANSU_CLIENT_ENV",
    "CuttableProxy",
    "amqtt",
    "free_port",
    "mosquitto",
    "running",
    "tansu",
    "tansu_behind_proxy",
    "wait_for_port",
]

MOSQUITTO = mosquitto_binary()


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
    try:
        with running(tansu_argv(port, advertised_port=proxy.port), port):
            yield f"127.0.0.1:{proxy.port}", proxy
    finally:
        proxy.close()
