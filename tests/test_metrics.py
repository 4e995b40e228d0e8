"""The metric definitions: what `/metrics` can promise about processes that are gone."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import Gauge

from core import metrics


def test_every_gauge_is_dropped_with_its_dead_process() -> None:
    # mark_process_dead removes only the files of `live*` gauges; any other mode keeps a dead process's value
    gauges = {value._name: value._multiprocess_mode for value in vars(metrics).values() if isinstance(value, Gauge)}
    assert gauges
    assert {name: mode for name, mode in gauges.items() if not mode.startswith("live")} == {}


def test_metrics_are_served_on_the_address_given_and_no_other() -> None:
    server = metrics.serve_metrics("127.0.0.2", 0)  # on Linux all of 127.0.0.0/8 is loopback
    try:
        port = server.server_address[1]
        assert "gridhub_store_write_seconds" in httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=5).text
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
