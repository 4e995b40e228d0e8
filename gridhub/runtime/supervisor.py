"""Start, watch, restart and stop child processes, each with a readiness probe and its own log file."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import multiprocess

from core.lifecycle import READY_FILE_ENV
from core.metrics import MULTIPROC_ENV

log = logging.getLogger("gridhub.supervisor")

Probe = Callable[[], Awaitable[None]]
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0
PR_SET_PDEATHSIG = 1


class ServiceFailed(Exception):
    """A service exited or never became ready; the message ends with the tail of its log."""


@dataclass
class Service:
    """A child process: its command, environment overrides and the probe that says it is ready."""

    name: str
    argv: Sequence[str]
    probe: Probe
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0
    ready_file: Path | None = None  # removed before each start; the child touches it (`mark_ready()`)


@dataclass
class _Running:
    service: Service
    process: asyncio.subprocess.Process
    started_at: float
    restarts: int = 0


class Supervisor:
    """Runs services as children that die with the supervisor, and restarts the ones that crash."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._running: dict[str, _Running] = {}
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self, service: Service) -> None:
        """Spawn the service and wait until its probe passes; raise ServiceFailed otherwise."""
        process = await self._spawn(service)
        self._running[service.name] = _Running(service, process, time.monotonic())
        await self._wait_ready(service, process)
        self._watchers.append(asyncio.create_task(self._watch(service.name), name=f"watch-{service.name}"))

    def send_signal(self, name: str, signum: int) -> bool:
        """Send a signal to a running service (e.g. SIGHUP to reload); False if it is not running."""
        running = self._running.get(name)
        if running is None or running.process.returncode is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            running.process.send_signal(signum)
            return True
        return False

    def log_path(self, name: str) -> Path:
        """Where the service's stdout and stderr go."""
        return self._log_dir / f"{name}.log"

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Stop every service in reverse start order: SIGTERM, then SIGKILL after `timeout_s` in total."""
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        deadline = time.monotonic() + timeout_s
        for name in reversed(list(self._running)):
            running = self._running[name]
            if running.process.returncode is None:
                await self._terminate(name, running.process, deadline)
            # also when it had exited already: its watcher, cancelled above, may not have seen it
            _forget_gauges(running.service, running.process.pid)

    async def _terminate(self, name: str, process: asyncio.subprocess.Process, deadline: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), max(0.5, deadline - time.monotonic()))
            log.info("stopped %s", name)
        except TimeoutError:
            log.warning("%s did not stop in time; killing it", name)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def _spawn(self, service: Service) -> asyncio.subprocess.Process:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **service.env}
        if service.ready_file is not None:
            service.ready_file.unlink(missing_ok=True)
            env[READY_FILE_ENV] = str(service.ready_file)
        log_file = self.log_path(service.name).open("ab")
        try:
            return await asyncio.create_subprocess_exec(
                *service.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches only the supervisor, which stops children in order
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise ServiceFailed(f"{service.name}: cannot start {service.argv[0]}: {exc.strerror}") from None
        finally:
            log_file.close()

    async def _wait_ready(self, service: Service, process: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + service.ready_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if process.returncode is not None:
                _forget_gauges(service, process.pid)
                raise ServiceFailed(
                    f"{service.name} exited with code {process.returncode} while starting{self._tail(service.name)}"
                )
            try:
                await asyncio.wait_for(service.probe(), timeout=5.0)
                log.info("%s is ready", service.name)
                return
            except Exception as exc:
                last_error = exc
            await asyncio.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        _forget_gauges(service, process.pid)
        raise ServiceFailed(
            f"{service.name} was not ready within {service.ready_timeout_s:.0f} s "
            f"(last probe error: {last_error}){self._tail(service.name)}"
        )

    async def _watch(self, name: str) -> None:
        while not self._stopping:
            running = self._running[name]
            code = await running.process.wait()
            _forget_gauges(running.service, running.process.pid)
            if self._stopping:
                return
            if time.monotonic() - running.started_at > STABLE_AFTER_S:
                running.restarts = 0
            delay = RESTART_BACKOFF_S[min(running.restarts, len(RESTART_BACKOFF_S) - 1)]
            log.error("%s exited with code %s; restarting in %.0f s (log: %s)", name, code, delay,
                      self.log_path(name))
            await asyncio.sleep(delay)
            if self._stopping:
                return
            running.restarts += 1
            try:
                process = await self._spawn(running.service)
                self._running[name] = _Running(running.service, process, time.monotonic(), running.restarts)
                await self._wait_ready(running.service, process)
            except ServiceFailed as exc:
                log.error("restart of %s failed: %s", name, exc)

    def _tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.log_path(name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- last lines of {self.log_path(name)} ---\n{tail}" if tail else ""


def _forget_gauges(service: Service, pid: int) -> None:
    """Drop an exited child's gauges from the shared metrics directory: a dead process has no current value.

    Only gauges in a `live*` multiprocess mode are removed; its counters and histograms stay, as history.
    """
    directory = {**os.environ, **service.env}.get(MULTIPROC_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the child when the supervisor dies, so that no orphan keeps a port."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def file_probe(path: Path) -> None:
    """A probe that passes once the child has touched its ready file."""
    if not path.exists():  # noqa: ASYNC240 - one stat every 0.2 s while a service starts
        raise FileNotFoundError(f"{path.name} not written yet")
