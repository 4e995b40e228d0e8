"""The metric definitions: what `/metrics` can promise about processes that are gone."""

from __future__ import annotations

from prometheus_client import Gauge

from core import metrics


def test_every_gauge_is_dropped_with_its_dead_process() -> None:
    # mark_process_dead removes only the files of `live*` gauges; any other mode keeps a dead process's value
    gauges = {value._name: value._multiprocess_mode for value in vars(metrics).values() if isinstance(value, Gauge)}
    assert gauges
    assert {name: mode for name, mode in gauges.items() if not mode.startswith("live")} == {}
