"""The supervisor: readiness, restart after a crash, stopping children that ignore SIGTERM, dead children's gauges."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import MULTIPROC_ENV, exposition
from gridhub.runtime.supervisor import Service, ServiceFailed, Supervisor


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def never_ready() -> None:
    raise ConnectionRefusedError("nothing listening")


async def file_probe(path: Path) -> None:
    if not os.path.exists(path):  # noqa: ASYNC240 - one stat per probe is fine in a test
        raise FileNotFoundError(path)


def test_child_that_exits_while_starting_fails_with_its_log_tail(tmp_path: Path) -> None:
    async def scenario() -> None:
        supervisor = Supervisor(tmp_path)
        service = Service("broken", python("import sys; print('bad port 99999'); sys.exit(4)"), never_ready)
        with pytest.raises(ServiceFailed, match=r"(?s)broken exited with code 4 while starting.*bad port 99999"):
            await supervisor.start(service)
        await supervisor.stop()

    asyncio.run(scenario())


def test_child_that_never_becomes_ready_times_out_and_is_killed(tmp_path: Path) -> None:
    async def scenario() -> None:
        supervisor = Supervisor(tmp_path)
        service = Service("slow", python("import time; time.sleep(60)"), never_ready, ready_timeout_s=1.0)
        with pytest.raises(ServiceFailed, match=r"slow was not ready within 1 s .*nothing listening"):
            await supervisor.start(service)
        await supervisor.stop()

    asyncio.run(scenario())


def test_crashed_child_is_restarted(tmp_path: Path) -> None:
    marker = tmp_path / "starts"

    async def scenario() -> None:
        supervisor = Supervisor(tmp_path)
        # Each start appends a line; the first run crashes after becoming ready, the second stays up.
        code = (f"import time, pathlib; p = pathlib.Path({str(marker)!r}); "
                "n = len(p.read_text().splitlines()) if p.exists() else 0; "
                "p.write_text('x\\n' * (n + 1)); time.sleep(0.3 if n == 0 else 60); raise SystemExit(9)")
        await supervisor.start(Service("flaky", python(code), lambda: file_probe(marker)))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(marker.read_text().splitlines()) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await supervisor.stop()

    asyncio.run(scenario())
    assert len(marker.read_text().splitlines()) == 2


def test_child_ignoring_sigterm_is_killed_within_the_timeout(tmp_path: Path) -> None:
    ready = tmp_path / "ready"

    async def scenario() -> float:
        supervisor = Supervisor(tmp_path)
        code = (f"import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)")
        await supervisor.start(Service("stubborn", python(code), lambda: file_probe(ready)))
        started = time.monotonic()
        await supervisor.stop(timeout_s=1.0)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5.0


INFLIGHT, RECEIVED = "gridhub_gateway_inflight", "gridhub_gateway_received_total"


def metric_value(name: str) -> float | None:
    """The value of an unlabelled metric in the merged exposition of every process, None if absent."""
    for family in text_string_to_metric_families(exposition().decode()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def metrics_child(tmp_path: Path, ready: Path) -> list[str]:
    """A child that, on its first run only, sets the in-flight gauge to 7 and counts 3 received messages."""
    runs = tmp_path / "runs"
    return python(
        f"import os, pathlib, time; runs = pathlib.Path({str(runs)!r}); first = not runs.exists(); runs.touch()\n"
        "if first:\n"
        "    from core import metrics\n"
        "    metrics.GATEWAY_INFLIGHT.set(7)\n"
        "    metrics.GATEWAY_RECEIVED.inc(3)\n"
        f"pathlib.Path({str(ready)!r}).write_text(str(os.getpid())); time.sleep(60)"
    )


@pytest.fixture
def metrics_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shared multi-process metrics directory, as `gridhub up` gives its children and its API."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    return directory


def test_gauges_of_a_killed_child_vanish_and_its_counters_stay(tmp_path: Path, metrics_dir: Path) -> None:
    ready = tmp_path / "ready"

    async def scenario() -> tuple[float | None, float | None, float | None]:
        supervisor = Supervisor(tmp_path)
        service = Service("gateway", metrics_child(tmp_path, ready), lambda: file_probe(ready),
                          env={MULTIPROC_ENV: str(metrics_dir)})
        await supervisor.start(service)
        try:
            before = metric_value(INFLIGHT)
            os.kill(int(ready.read_text()), signal.SIGKILL)
            deadline = time.monotonic() + 15
            # the files are the only signal: poll them until the gauge is gone, with a deadline
            while time.monotonic() < deadline and metric_value(INFLIGHT) is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            return before, metric_value(INFLIGHT), metric_value(RECEIVED)
        finally:
            await supervisor.stop()

    before, after, received = asyncio.run(scenario())
    assert before == 7.0
    assert after is None
    assert received == 3.0


def test_gauges_of_a_stopped_child_vanish(tmp_path: Path, metrics_dir: Path) -> None:
    ready = tmp_path / "ready"

    async def scenario() -> float | None:
        supervisor = Supervisor(tmp_path)
        service = Service("gateway", metrics_child(tmp_path, ready), lambda: file_probe(ready),
                          env={MULTIPROC_ENV: str(metrics_dir)})
        await supervisor.start(service)
        before = metric_value(INFLIGHT)
        await supervisor.stop()
        return before

    assert asyncio.run(scenario()) == 7.0
    assert metric_value(INFLIGHT) is None
    assert metric_value(RECEIVED) == 3.0
