"""The SQL telemetry store: idempotent rows, positions in the same transaction, windows computed by hand.

Runs on SQLite, and on PostgreSQL as well when GRIDHUB_TEST_POSTGRES_URL names a database to use
(e.g. postgresql+psycopg://postgres@127.0.0.1/gridhub_test, with a PostgreSQL driver installed).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.exc import OperationalError

from domain.registry import DeviceKind
from storage.db import connect
from storage.schema import init_db
from storage.telemetry.base import (
    LastHeard,
    Position,
    ReadingRow,
    SeriesRequest,
    StatusRow,
    StoreBatch,
    StoreUnavailable,
    Window,
)
from storage.telemetry.sql import SqlTelemetryStore, readings, status_changes

GRID = "310104003001001"
OTHER_GRID = "310104003001003"
MINUTE = 60_000
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z, a whole hour


POSTGRES_URL = os.environ.get("GRIDHUB_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", *(["postgresql"] if POSTGRES_URL else [])])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    else:
        engine = connect(str(POSTGRES_URL))
        with engine.begin() as conn:  # an empty database: init_db's migrations build every table again
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> SqlTelemetryStore:
    return SqlTelemetryStore(engine)


def rain(device: str, ts_ms: int, mm: float, seq: int = 1, grid: str = GRID) -> ReadingRow:
    return ReadingRow(device, ts_ms, seq, grid, DeviceKind.RAIN, ts_ms + 50, False, rain_mm=mm, battery_v=3.7)


def crowd(device: str, ts_ms: int, count: int, seq: int = 1) -> ReadingRow:
    return ReadingRow(device, ts_ms, seq, GRID, DeviceKind.CROWD, ts_ms + 50, False, count=count)


def manhole(device: str, ts_ms: int, seq: int, *, tilt: float, open_: bool, water: float,
            battery: float) -> ReadingRow:
    return ReadingRow(device, ts_ms, seq, GRID, DeviceKind.MANHOLE, ts_ms + 50, False, tilt_deg=tilt,
                      cover_open=open_, water_level_cm=water, battery_v=battery)


def batch(*rows: ReadingRow, statuses: tuple[StatusRow, ...] = (), at: dict[int, Position] | None = None,
          ) -> StoreBatch:
    return StoreBatch("gridhub-store", "gridhub.telemetry", list(rows), list(statuses), at or {})


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(readings)).scalar_one())


def test_writing_the_same_rows_again_adds_nothing_and_keeps_the_first_values(
    store: SqlTelemetryStore, engine: Engine
) -> None:
    store.write(batch(rain("rain-0001", T0, 1.5), rain("rain-0001", T0 + MINUTE, 0.5, seq=2)))
    store.write(batch(rain("rain-0001", T0, 9.9), rain("rain-0001", T0 + MINUTE, 0.5, seq=2)))

    assert count_rows(engine) == 2
    with engine.connect() as conn:
        assert conn.execute(select(readings.c.rain_mm).where(readings.c.ts_ms == T0)).scalar_one() == 1.5


def test_the_same_seq_at_another_time_is_another_reading(store: SqlTelemetryStore, engine: Engine) -> None:
    store.write(batch(rain("rain-0001", T0, 1.0, seq=7), rain("rain-0001", T0 + MINUTE, 1.0, seq=7)))
    assert count_rows(engine) == 2


def test_status_changes_are_stored_once(store: SqlTelemetryStore, engine: Engine) -> None:
    offline = StatusRow("rain-0001", T0, False, GRID, DeviceKind.RAIN)
    store.write(batch(statuses=(offline,)))
    store.write(batch(statuses=(offline, StatusRow("rain-0001", T0 + MINUTE, True, GRID, DeviceKind.RAIN))))
    with engine.connect() as conn:
        stored = conn.execute(select(status_changes.c.ts_ms, status_changes.c.online)
                              .order_by(status_changes.c.ts_ms)).all()
    assert [tuple(row) for row in stored] == [(T0, False), (T0 + MINUTE, True)]


def test_latest_statuses_are_each_devices_newest_for_the_devices_asked(store: SqlTelemetryStore) -> None:
    store.write(batch(statuses=(StatusRow("rain-0001", T0, True, GRID, DeviceKind.RAIN),
                                StatusRow("rain-0001", T0 + MINUTE, False, GRID, DeviceKind.RAIN),
                                StatusRow("rain-0002", T0 + MINUTE, True, GRID, DeviceKind.RAIN),
                                StatusRow("rain-0002", T0, False, GRID, DeviceKind.RAIN),
                                StatusRow("rain-0003", T0, True, GRID, DeviceKind.RAIN))))
    assert store.latest_statuses({"rain-0001", "rain-0002", "rain-0004"}) == {"rain-0001": False, "rain-0002": True}


def test_last_heard_is_each_devices_newest_reading_newest_battery_and_newest_status(store: SqlTelemetryStore) -> None:
    store.write(batch(
        manhole("manhole-0001", T0, 1, tilt=1.0, open_=False, water=10.0, battery=3.6),
        ReadingRow("manhole-0001", T0 + 2 * MINUTE, 2, GRID, DeviceKind.MANHOLE, T0 + 3 * MINUTE, True, tilt_deg=2.0),
        manhole("manhole-0001", T0 + MINUTE, 3, tilt=1.0, open_=False, water=10.0, battery=3.5),
        crowd("crowd-0016", T0, 40),
        statuses=(StatusRow("manhole-0001", T0 + MINUTE, False, GRID, DeviceKind.MANHOLE),
                  StatusRow("rain-0002", T0, False, GRID, DeviceKind.RAIN),
                  StatusRow("rain-0002", T0, True, GRID, DeviceKind.RAIN))))

    assert store.last_heard({"manhole-0001", "crowd-0016", "rain-0002", "rain-0004"}) == {
        "manhole-0001": LastHeard(received_ms=T0 + 3 * MINUTE, battery_v=3.5, status_ms=T0 + MINUTE, online=False),
        "crowd-0016": LastHeard(received_ms=T0 + 50, battery_v=None, status_ms=None, online=None),
        "rain-0002": LastHeard(received_ms=None, battery_v=None, status_ms=T0, online=True),
    }


def test_positions_are_stored_per_group_and_topic_and_move_with_each_write(store: SqlTelemetryStore) -> None:
    store.write(batch(rain("rain-0001", T0, 1.0), at={0: Position(10, "a"), 1: Position(4, "b")}))
    store.write(batch(rain("rain-0001", T0 + MINUTE, 1.0, seq=2), at={0: Position(12, "c")}))

    assert store.positions("gridhub-store", "gridhub.telemetry") == {0: Position(12, "c"), 1: Position(4, "b")}
    assert store.positions("another-group", "gridhub.telemetry") == {}


def test_rows_and_positions_commit_together_or_not_at_all(store: SqlTelemetryStore, engine: Engine) -> None:
    store.write(batch(rain("rain-0001", T0, 1.0), at={0: Position(1, "first")}))

    def refuse_positions(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "telemetry_store_positions" in statement:
            raise OperationalError(statement, None, Exception("disk I/O error"))

    event.listen(engine, "before_cursor_execute", refuse_positions)
    with pytest.raises(StoreUnavailable, match="disk I/O error"):
        store.write(batch(rain("rain-0002", T0, 2.0), at={0: Position(2, "second")}))
    event.remove(engine, "before_cursor_execute", refuse_positions)

    assert count_rows(engine) == 1  # the reading inserted before the failing statement was rolled back
    assert store.positions("gridhub-store", "gridhub.telemetry") == {0: Position(1, "first")}


def test_a_locked_database_is_reported_as_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    init_db(connect(f"sqlite:///{path}"))
    impatient = SqlTelemetryStore(create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05}))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="database is locked"):
            impatient.write(batch(rain("rain-0001", T0, 1.0)))
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_device_rain_is_summed_per_window_aligned_to_from(store: SqlTelemetryStore) -> None:
    store.write(batch(
        rain("rain-0001", T0 - 1, 5.0, seq=1),  # before the range
        rain("rain-0001", T0 + 30_000, 0.5, seq=2),  # 00:00:30 → window 00:00:30 (windows start at `from`)
        rain("rain-0001", T0 + 60_000, 1.5, seq=3),
        rain("rain-0001", T0 + 90_000, 2.0, seq=4),  # 00:01:30 → window 00:01:30
        rain("rain-0001", T0 + 150_000, 9.0, seq=5),  # at `to`: outside the range
        rain("rain-0002", T0 + 60_000, 7.0),  # another gauge
    ))
    windows = store.device_series("rain-0001", SeriesRequest(T0 + 30_000, T0 + 150_000, MINUTE))

    assert [(w.start_ms - T0, w.readings, w.rain_mm, w.rain_gauges) for w in windows] == [
        (30_000, 2, 2.0, 1),
        (90_000, 1, 2.0, 1),
    ]
    assert windows[0].battery_v_min == 3.7
    assert windows[0].count_mean is None and windows[0].cover_open is None


def test_grid_rain_is_the_mean_of_each_gauges_window_total(store: SqlTelemetryStore) -> None:
    store.write(batch(
        rain("rain-0001", T0 + 10_000, 1.0, seq=1),
        rain("rain-0001", T0 + 40_000, 2.0, seq=2),  # gauge 1: 3.0 mm in the first minute
        rain("rain-0002", T0 + 20_000, 4.0),  # gauge 2: 4.0 mm
        rain("rain-0003", T0 + 20_000, 100.0, grid=OTHER_GRID),  # another cell
        rain("rain-0001", T0 + 70_000, 0.2, seq=3),  # second minute: only gauge 1 reported
    ))
    windows = store.grid_series(GRID, SeriesRequest(T0, T0 + 2 * MINUTE, MINUTE))

    assert [(w.start_ms - T0, w.readings, w.rain_mm, w.rain_gauges) for w in windows] == [
        (0, 3, pytest.approx(3.5), 2),
        (MINUTE, 1, pytest.approx(0.2), 1),
    ]


def test_crowd_mean_is_over_readings_and_max_over_the_cell(store: SqlTelemetryStore) -> None:
    store.write(batch(
        crowd("crowd-0001", T0 + 1_000, 10, seq=1),
        crowd("crowd-0001", T0 + 2_000, 20, seq=2),
        crowd("crowd-0001", T0 + 3_000, 30, seq=3),
        crowd("crowd-0002", T0 + 4_000, 100),
    ))
    (window,) = store.grid_series(GRID, SeriesRequest(T0, T0 + MINUTE, MINUTE))

    assert window.count_mean == pytest.approx(40.0)  # 160 / 4 readings, not the mean of device means (60)
    assert window.count_max == 100
    assert window.rain_mm is None and window.rain_gauges is None


def test_manhole_window_has_means_maxima_any_open_and_lowest_battery(store: SqlTelemetryStore) -> None:
    store.write(batch(
        manhole("manhole-0001", T0 + 1_000, 1, tilt=2.0, open_=False, water=40.0, battery=3.6),
        manhole("manhole-0001", T0 + 2_000, 2, tilt=20.0, open_=True, water=80.0, battery=3.5),
        manhole("manhole-0001", T0 + 3_000, 3, tilt=5.0, open_=False, water=60.0, battery=3.55),
        manhole("manhole-0001", T0 + MINUTE, 4, tilt=1.0, open_=False, water=10.0, battery=3.5),
    ))
    first, second = store.device_series("manhole-0001", SeriesRequest(T0, T0 + 2 * MINUTE, MINUTE))

    assert first == Window(
        start_ms=T0, readings=3, tilt_deg_mean=pytest.approx(9.0), tilt_deg_max=20.0,
        water_level_cm_mean=pytest.approx(60.0), water_level_cm_max=80.0, cover_open=True, battery_v_min=3.5,
    )
    assert second.cover_open is False


def test_empty_windows_are_left_out(store: SqlTelemetryStore) -> None:
    store.write(batch(rain("rain-0001", T0, 1.0), rain("rain-0001", T0 + 3 * MINUTE, 1.0, seq=2)))
    windows = store.device_series("rain-0001", SeriesRequest(T0, T0 + 5 * MINUTE, MINUTE))
    assert [w.start_ms - T0 for w in windows] == [0, 3 * MINUTE]
