"""The telemetry store's contract: the SQL backend and the InfluxDB backend, given the same batches, give the same
answers to every query the API and the store writer ask.

SQL runs on SQLite; InfluxDB is a real influxd (gridhub.services, built into ~/.cache/gridhub on first use). The
history is two grid cells with gauges, crowd counters and manhole sensors over two hours: readings on window
boundaries, gaps, a gauge that reports in only some windows, late readings written after newer ones, a device
that moved between cells, statuses, and batches written twice (a consumer reading a partition again).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import NamedTuple

import pytest

from api.routes.telemetry import LATEST
from domain.epoch import EPOCH
from domain.registry import DeviceKind
from gridhub.services import Services, is_cached
from storage.db import connect
from storage.schema import init_db
from storage.telemetry.base import ReadingRow, SeriesRequest, StatusRow, StoreBatch, Window
from storage.telemetry.influx import InfluxTelemetryStore, reading_line, write_body
from storage.telemetry.sql import SqlTelemetryStore
from tests import production

# Starting influxd takes seconds; building it on a machine without the cache takes minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300 if is_cached("influxdb") else 1800)]

T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z
SECOND, MINUTE, HOUR = 1000, 60_000, 3_600_000
LATEST_MS = (LATEST - EPOCH) // timedelta(milliseconds=1)
CELL_A, CELL_B = "310104003001001", "310104003001003"
ELSEWHERE = "310104003001099"  # the cell of the tests that write more: none of the compared queries look there
RAIN, CROWD, MANHOLE = DeviceKind.RAIN, DeviceKind.CROWD, DeviceKind.MANHOLE


def reading(device: str, kind: DeviceKind, cell: str, ts_ms: int, seq: int, **values: float | bool | None
            ) -> ReadingRow:
    """A reading as the writer stores it, received on time 150 ms after it was measured."""
    return ReadingRow(device, ts_ms, seq, cell, kind, ts_ms + 150, False, **values)  # type: ignore[arg-type]


def gauge(device: str, cell: str, minutes: range, *, every_s: int = 60, offset_ms: int = 0,
          seq_from: int = 0) -> list[ReadingRow]:
    """A rain gauge reporting every `every_s` seconds over `minutes`; some reports carry the battery voltage."""
    rows = []
    for i, ts in enumerate(range(T0 + minutes.start * MINUTE + offset_ms, T0 + minutes.stop * MINUTE,
                                 every_s * SECOND)):
        seq = seq_from + i
        rows.append(reading(device, RAIN, cell, ts, seq, rain_mm=(seq * 7 % 5) * 0.2,
                            battery_v=3.9 - seq * 0.002 if seq % 10 == 3 else None))
    return rows


def counter(device: str, cell: str, minutes: range, every_s: int, scale: int) -> list[ReadingRow]:
    """A crowd counter reporting every `every_s` seconds over `minutes`."""
    times = range(T0 + minutes.start * MINUTE, T0 + minutes.stop * MINUTE, every_s * SECOND)
    return [reading(device, CROWD, cell, ts, seq, count=(seq * 13) % scale, battery_v=3.6 if seq % 7 == 0 else None)
            for seq, ts in enumerate(times)]


def manhole(device: str, cell: str, times: range, *, open_at: frozenset[int] = frozenset()) -> list[ReadingRow]:
    """A manhole sensor reporting at `times` (epoch ms); the cover is open at the seqs in `open_at`."""
    return [reading(device, MANHOLE, cell, ts, seq, tilt_deg=round(1.5 + (seq * 3 % 11) * 0.7, 2),
                    cover_open=seq in open_at, water_level_cm=80.0 - (seq * 5 % 17) * 1.25,
                    battery_v=3.3 + (seq % 4) * 0.05)
            for seq, ts in enumerate(times)]


def history() -> list[StoreBatch]:
    """The batches both stores are given, in order."""
    on_time = [
        *gauge("rain-a1", CELL_A, range(-10, 125)),  # from before the ranges asked to after them
        *gauge("rain-a2", CELL_A, range(0, 30), every_s=120, offset_ms=500, seq_from=100),
        *gauge("rain-a2", CELL_A, range(50, 120), every_s=120, offset_ms=500, seq_from=200),  # a 20-minute gap
        *gauge("rain-a3", CELL_B, range(2, 6), seq_from=0),  # then it was moved to cell A
        *gauge("rain-a3", CELL_A, range(10, 15), seq_from=10),  # reports in a few windows only
        *gauge("rain-a3", CELL_A, range(70, 75), seq_from=20),
        *gauge("rain-b1", CELL_B, range(0, 20), every_s=30, offset_ms=1),
        *gauge("rain-b1", CELL_B, range(26, 120), every_s=30, offset_ms=1, seq_from=40),
        *gauge("rain-b2", CELL_B, range(0, 120), every_s=300, offset_ms=-1),  # one ms before each boundary
        *counter("crowd-a1", CELL_A, range(0, 120), 30, 50),
        *counter("crowd-a2", CELL_A, range(15, 95), 90, 400),
        *counter("crowd-b1", CELL_B, range(-30, 60), 45, 120),
        *manhole("manhole-a1", CELL_A, range(T0, T0 + 2 * HOUR + 1, 5 * MINUTE), open_at=frozenset({7, 8})),  # on edges
        *manhole("manhole-a2", CELL_A, range(T0 + SECOND, T0 + 2 * HOUR, 3 * MINUTE), open_at=frozenset({30})),
        *manhole("manhole-b1", CELL_B, range(T0 + 7 * MINUTE, T0 + 100 * MINUTE, 13 * MINUTE)),
    ]
    # What rain-b1 measured during its gap, buffered and delivered half an hour late.
    late = [dataclasses.replace(row, received_ms=row.ts_ms + 30 * MINUTE, late=True)
            for row in gauge("rain-b1", CELL_B, range(20, 26), every_s=30, offset_ms=1, seq_from=1000)]
    statuses = [
        StatusRow("rain-a1", T0, True, CELL_A, RAIN),
        StatusRow("rain-a2", T0 + 30 * MINUTE, False, CELL_A, RAIN),
        StatusRow("rain-a2", T0 + 50 * MINUTE, True, CELL_A, RAIN),
        StatusRow("rain-b1", T0 + 20 * MINUTE, False, CELL_B, RAIN),
        StatusRow("crowd-b1", T0 + 60 * MINUTE, False, CELL_B, CROWD),
        StatusRow("rain-a3", T0 + 6 * MINUTE, False, CELL_B, RAIN),
        StatusRow("rain-a3", T0 + 9 * MINUTE, True, CELL_A, RAIN),  # online again in its new cell
        StatusRow("crowd-b2", T0 + 5 * MINUTE, True, CELL_B, CROWD),  # a status and never a reading
    ]
    first, second = on_time[: len(on_time) // 2], on_time[len(on_time) // 2:]
    return [
        batch(first[:40] + first[:40] + first[40:]),  # the gateway's record read twice within one batch
        batch(second, statuses[:4]),
        batch(second[-25:] + first[-10:], statuses[2:]),  # a partition read again after a rebalance
        batch(late),
    ]


def batch(readings: list[ReadingRow], statuses: list[StatusRow] | None = None) -> StoreBatch:
    return StoreBatch("gridhub-store", "gridhub.telemetry", readings, statuses or [])


class Stores(NamedTuple):
    sql: SqlTelemetryStore
    influx: InfluxTelemetryStore


@pytest.fixture(scope="module")
def influxdb() -> Iterator[Services]:
    """A real influxd for the module."""
    with production.servers(["influxdb"]) as services:
        yield services


@pytest.fixture(scope="module")
def stores(influxdb: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    """Both backends, each given the same history."""
    engine = connect(f"sqlite:///{tmp_path_factory.mktemp('contract') / 'gridhub.db'}")
    init_db(engine)
    handle = influxdb.influxdb
    both = Stores(SqlTelemetryStore(engine),
                  InfluxTelemetryStore(handle.url, handle.credentials["token"], "gridhub", "telemetry"))
    for written in history():
        both.sql.write(written)
        both.influx.write(written)
    yield both
    both.sql.close()
    both.influx.close()


REQUESTS = {
    "5m-over-2h": SeriesRequest(T0, T0 + 2 * HOUR, 5 * MINUTE),
    "1m-over-10m": SeriesRequest(T0 + 10 * MINUTE, T0 + 20 * MINUTE, MINUTE),
    "30s-during-the-late-readings": SeriesRequest(T0 + 18 * MINUTE, T0 + 28 * MINUTE, 30 * SECOND),
    "7m-from-an-odd-start-cut-short": SeriesRequest(T0 + 90 * SECOND, T0 + HOUR + 45 * SECOND, 7 * MINUTE),
    "90s-from-17s": SeriesRequest(T0 + 17 * SECOND, T0 + 40 * MINUTE + 17 * SECOND, 90 * SECOND),
    "from-and-to-on-readings": SeriesRequest(T0 + 5 * MINUTE, T0 + 25 * MINUTE, 5 * MINUTE),
    "from-and-to-one-ms-off-readings": SeriesRequest(T0 + 5 * MINUTE + 1, T0 + 25 * MINUTE + 1, 5 * MINUTE),
    "1h-around-everything": SeriesRequest(T0 - HOUR, T0 + 3 * HOUR, HOUR),
    "1d-from-noon-the-day-before": SeriesRequest(T0 - 12 * HOUR, T0 + 12 * HOUR, 24 * HOUR),
    "one-window-of-1h30m": SeriesRequest(T0, T0 + 90 * MINUTE, 90 * MINUTE),
    "366d-from-the-epoch-to-9999": SeriesRequest(0, LATEST_MS, 366 * 24 * HOUR),  # the widest span the API allows
    "nothing-stored-then": SeriesRequest(T0 + 5 * HOUR, T0 + 6 * HOUR, 5 * MINUTE),
}
DEVICES = ("rain-a1", "rain-a2", "rain-a3", "rain-b1", "rain-b2", "crowd-a1", "crowd-a2", "crowd-b1",
           "manhole-a1", "manhole-a2", "manhole-b1")
HEARD = (*DEVICES, "crowd-b2", "never-heard")


def comparable(windows: list[Window]) -> list[object]:
    """The SQL answer, its floats compared with a tolerance (the two backends sum in different orders)."""
    return [{name: pytest.approx(value, rel=1e-9, abs=1e-9) if isinstance(value, float) else value
             for name, value in dataclasses.asdict(window).items()} for window in windows]


def test_the_history_gives_every_device_and_cell_windows_to_compare(stores: Stores) -> None:
    request = REQUESTS["5m-over-2h"]
    assert all(stores.sql.device_series(device_id, request) for device_id in DEVICES)
    assert all(len(stores.sql.grid_series(cell, request)) == 24 for cell in (CELL_A, CELL_B))


@pytest.mark.parametrize("name", REQUESTS)
@pytest.mark.parametrize("device_id", DEVICES)
def test_a_devices_windows_are_the_same_in_both_stores(stores: Stores, device_id: str, name: str) -> None:
    request = REQUESTS[name]
    expected = stores.sql.device_series(device_id, request)
    assert [dataclasses.asdict(w) for w in stores.influx.device_series(device_id, request)] == comparable(expected)


@pytest.mark.parametrize("name", REQUESTS)
@pytest.mark.parametrize("grid_code", [CELL_A, CELL_B])
def test_a_grid_cells_windows_are_the_same_in_both_stores(stores: Stores, grid_code: str, name: str) -> None:
    request = REQUESTS[name]
    expected = stores.sql.grid_series(grid_code, request)
    assert [dataclasses.asdict(w) for w in stores.influx.grid_series(grid_code, request)] == comparable(expected)


def test_a_cells_rain_is_the_mean_of_its_gauges_totals_in_both_stores(stores: Stores) -> None:
    start, end = T0 + 10 * MINUTE, T0 + 15 * MINUTE  # rain-a3 reported in this window of cell A and not the next
    totals: dict[str, float] = collections.defaultdict(float)
    for row in {(r.device_id, r.ts_ms, r.seq): r for written in history() for r in written.readings}.values():
        if row.grid_code == CELL_A and row.rain_mm is not None and start <= row.ts_ms < end:
            totals[row.device_id] += row.rain_mm
    assert sorted(totals) == ["rain-a1", "rain-a2", "rain-a3"]

    for store in stores:
        first, second = store.grid_series(CELL_A, SeriesRequest(start, end + 5 * MINUTE, 5 * MINUTE))
        assert first.rain_gauges == 3
        assert first.rain_mm == pytest.approx(sum(totals.values()) / 3)
        assert second.rain_gauges == 2


@pytest.mark.parametrize("device_id", HEARD)
def test_what_a_device_was_last_heard_saying_is_the_same_in_both_stores(stores: Stores, device_id: str) -> None:
    expected = stores.sql.last_heard([device_id])
    assert stores.influx.last_heard([device_id]) == expected


def test_last_heard_of_many_devices_at_once_is_the_same_in_both_stores(stores: Stores) -> None:
    assert stores.influx.last_heard(HEARD) == stores.sql.last_heard(HEARD)


@pytest.mark.parametrize("device_id", HEARD)
def test_a_devices_latest_status_is_the_same_in_both_stores(stores: Stores, device_id: str) -> None:
    assert stores.influx.latest_statuses([device_id]) == stores.sql.latest_statuses([device_id])


def test_latest_statuses_of_many_devices_at_once_are_the_same_in_both_stores(stores: Stores) -> None:
    assert stores.influx.latest_statuses(HEARD) == stores.sql.latest_statuses(HEARD)


def test_only_the_sql_store_keeps_partition_positions(stores: Stores) -> None:
    assert stores.sql.keeps_positions
    # InfluxDB has no transactions to keep them in: the writer commits its Kafka offsets after each write.
    assert not stores.influx.keeps_positions
    assert stores.influx.positions("gridhub-store", "gridhub.telemetry") == {}


def test_a_large_batch_goes_gzip_compressed_and_influxdb_stores_every_point(stores: Stores) -> None:
    rows = gauge("rain-gzip", ELSEWHERE, range(0, 200))
    body, encoding = write_body([reading_line(row) for row in rows])
    assert encoding == "gzip" and len(body) < sum(map(len, map(reading_line, rows))) / 4

    stores.influx.write(batch(rows))

    (window,) = stores.influx.device_series("rain-gzip", SeriesRequest(T0, T0 + 4 * HOUR, 4 * HOUR))
    assert window.readings == 200


def test_a_point_after_2262_is_dropped_and_the_rest_of_its_batch_stored(stores: Stores) -> None:
    # InfluxDB refuses a whole batch over one time it cannot hold; retried, it would stop the writer for good.
    far = reading("rain-far", RAIN, ELSEWHERE, LATEST_MS - HOUR, 1, rain_mm=1.0)
    near = reading("rain-far", RAIN, ELSEWHERE, T0, 2, rain_mm=2.0)

    stores.influx.write(batch([far, near]))

    assert stores.influx.device_series("rain-far", SeriesRequest(0, LATEST_MS, 366 * 24 * HOUR)) == [
        Window(start_ms=T0 - T0 % (366 * 24 * HOUR), readings=1, rain_mm=2.0, rain_gauges=1)]


def test_two_readings_of_a_device_in_one_millisecond_are_both_kept(stores: Stores) -> None:
    rows = [reading("rain-twice", RAIN, ELSEWHERE, T0, seq, rain_mm=0.5) for seq in (1, 2)]
    for store in stores:
        store.write(batch(rows))
    request = SeriesRequest(T0, T0 + MINUTE, MINUTE)

    assert stores.influx.device_series("rain-twice", request) == stores.sql.device_series("rain-twice", request)


def test_online_wins_over_offline_in_the_same_millisecond(stores: Stores) -> None:
    statuses = [StatusRow("rain-flap", T0, online, ELSEWHERE, RAIN) for online in (True, False)]
    for store in stores:
        store.write(batch([], statuses))

    assert stores.influx.latest_statuses(["rain-flap"]) == stores.sql.latest_statuses(["rain-flap"])


@pytest.mark.xfail(strict=True, reason="InfluxDB keeps the fields of the last delivery of a point, SQL the first")
def test_a_reading_delivered_twice_keeps_its_first_receive_time(stores: Stores) -> None:
    first = reading("rain-redelivered", RAIN, ELSEWHERE, T0, 1, rain_mm=0.5)
    again = dataclasses.replace(first, received_ms=first.received_ms + 10 * MINUTE, late=True)
    for store in stores:
        store.write(batch([first]))
        store.write(batch([again]))

    assert stores.influx.last_heard(["rain-redelivered"]) == stores.sql.last_heard(["rain-redelivered"])
