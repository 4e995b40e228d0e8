"""`gridhub store` on its own: serves its metrics, waits for a Kafka that does not answer, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from core.metrics import MULTIPROC_ENV
from tests.brokers import free_port


def read_until(process: subprocess.Popen[bytes], needle: bytes, timeout_s: float) -> bytes:
    """The process's output up to the first line holding `needle`; the process is killed if that takes longer."""
    assert process.stdout is not None
    deadline = threading.Timer(timeout_s, process.kill)
    deadline.start()
    seen = b""
    try:
        for line in process.stdout:
            seen += line
            if needle in line:
                return seen
    finally:
        deadline.cancel()
    raise AssertionError(f"never logged {needle!r}:\n{seen.decode(errors='replace')}")


@pytest.mark.integration
def test_gridhub_store_serves_metrics_and_waits_for_kafka_until_sigterm(tmp_path: Path) -> None:
    metrics_port, kafka_port = free_port(), free_port()  # nothing listens on kafka_port
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_") and k != MULTIPROC_ENV}
    env |= {"GRIDHUB_STATE_DIR": str(tmp_path), "GRIDHUB_KAFKA__BOOTSTRAP": f"127.0.0.1:{kafka_port}"}
    process = subprocess.Popen([sys.executable, "-m", "gridhub", "store", "--metrics-port", str(metrics_port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                assert time.monotonic() < deadline, "no metrics endpoint"
                time.sleep(0.1)
        assert response.status_code == 200
        assert "gridhub_store_write_seconds_count 0.0" in response.text
        seen = read_until(process, b"does not answer", timeout_s=30)  # a failed attempt reached Kafka
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = (seen + (process.stdout.read() if process.stdout else b"")).decode()
    assert f"Kafka at 127.0.0.1:{kafka_port} does not answer" in output
    assert (tmp_path / "gridhub.db").exists()  # it created the store's tables while Kafka was away
