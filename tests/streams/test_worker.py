"""The stream worker's Faust app: where it keeps its own files, and how it waits out its database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from faust.types import TP
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from core import kafka
from core.settings import DatabaseSettings, Settings
from domain.telemetry import TelemetryBatch, encode_record
from storage.checkpoints import load_cell, save_cells, saved_cells
from storage.db import connect
from storage.devices import seed_devices
from storage.schema import init_db
from streams import app
from streams.app import StreamWorker
from tests.streams import CITY, T0_MS, manhole


def test_faust_keeps_its_data_in_a_new_state_directory_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    working_dir, state_dir = tmp_path / "cwd", tmp_path / "state" / "not-yet-made"
    working_dir.mkdir()
    monkeypatch.chdir(working_dir)
    settings = Settings(state_dir=state_dir, database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'cases.db'}"))
    db = connect(settings.database_url)
    init_db(db)

    worker = StreamWorker(settings, CITY, db)
    asyncio.run(worker.app.on_first_start())  # where Faust makes its directories

    assert (state_dir / "streams" / "v1" / "tables").is_dir()
    assert list(working_dir.iterdir()) == []


def test_a_cell_first_seen_while_the_database_is_down_waits_for_it_and_is_decided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(state_dir=tmp_path, database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'cases.db'}"))
    db = connect(settings.database_url)
    init_db(db)
    attempts = []

    def down_twice(engine: Engine, grid_code: str) -> dict[str, Any] | None:
        attempts.append(grid_code)
        if len(attempts) <= 2:
            raise OperationalError("SELECT state FROM stream_cells", {}, ConnectionRefusedError("connection refused"))
        return load_cell(engine, grid_code)

    monkeypatch.setattr(app, "load_cell", down_twice)
    worker = StreamWorker(settings, CITY, db)
    reading = manhole(T0_MS, tilt_deg=3.0, cover_open=True, water_level_cm=20.0)

    changes = worker.apply(kafka.TELEMETRY, None, encode_record([TelemetryBatch(reading.grid_code, (reading,))]))

    assert {change.case.category for change in changes} == {"0103"}  # the open cover's case, not a crash
    assert len(attempts) == 3


def test_partitions_assigned_while_the_database_is_down_load_their_saved_cells_once_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebalance during an outage: the silent cells of the new partitions must be watched all the same."""
    settings = Settings(state_dir=tmp_path, database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'cases.db'}"))
    db = connect(settings.database_url)
    init_db(db)
    reading = manhole(T0_MS, tilt_deg=0.0, cover_open=False, water_level_cm=20.0)
    first = StreamWorker(settings, CITY, db)
    first.apply(kafka.TELEMETRY, TP(kafka.TELEMETRY, 0), encode_record([TelemetryBatch(reading.grid_code,
                                                                                        (reading,))]))
    save_cells(db, {code: orjson.dumps(doc) for code, doc in first.engine.take_dirty().items()})
    attempts = []

    def down_twice(engine: Engine) -> list[str]:
        attempts.append(1)
        if len(attempts) <= 2:
            raise OperationalError("SELECT grid_code FROM stream_cells", {}, ConnectionRefusedError("refused"))
        return saved_cells(engine)

    monkeypatch.setattr(app, "saved_cells", down_twice)
    monkeypatch.setattr(app, "RETRY_DELAYS_S", (0.01,))
    worker = StreamWorker(settings, CITY, db)
    monkeypatch.setattr(worker.app.consumer, "topic_partitions", lambda topic: 1)

    loaded = asyncio.run(worker._load_cells({TP(kafka.TELEMETRY, 0)}))

    assert (loaded, len(attempts)) == (1, 3)
    assert reading.grid_code in worker.engine.cells


def test_a_worker_stopped_while_waiting_for_the_database_to_list_its_cells_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(state_dir=tmp_path, database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'cases.db'}"))
    db = connect(settings.database_url)
    init_db(db)

    def down(_engine: Engine) -> list[str]:
        worker.stopping.set()  # SIGTERM arrives during the outage
        raise OperationalError("SELECT grid_code FROM stream_cells", {}, ConnectionRefusedError("refused"))

    monkeypatch.setattr(app, "saved_cells", down)
    worker = StreamWorker(settings, CITY, db)
    monkeypatch.setattr(worker.app.consumer, "topic_partitions", lambda topic: 1)

    assert asyncio.run(worker._load_cells({TP(kafka.TELEMETRY, 0)})) == 0


def test_a_checkpoint_publishes_the_silence_its_records_imply_before_acknowledging_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whoever sees the records committed (a worker taking over, a reader waiting for the end of a stream)
    must find the 9902 case the ingest clock they advanced implies, not wait for a timer."""
    settings = Settings(state_dir=tmp_path, database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'cases.db'}"))
    db = connect(settings.database_url)
    init_db(db)
    seed_devices(db, CITY, demo=True)
    worker = StreamWorker(settings, CITY, db)
    happened: list[str] = []

    async def publish(changes: list[Any]) -> None:
        happened.extend(f"publish {change.case.category}" for change in changes)

    class Producer:
        async def flush(self) -> None:
            happened.append("flush")

    class Stream:
        async def ack(self, _event: object) -> None:
            happened.append("ack")

    monkeypatch.setattr(worker, "_publish", publish)
    monkeypatch.setattr(worker.app, "_producer", Producer())
    tp = TP(kafka.TELEMETRY, 0)
    # manhole-0080 reports every 120 s, so it is silent once the cell's clock passes its last word + 3 intervals.
    for at_ms, device_id in ((T0_MS, "manhole-0080"), (T0_MS, "manhole-0007"), (T0_MS + 10 * 60_000, "manhole-0007")):
        heard = manhole(at_ms, tilt_deg=0.0, cover_open=False, water_level_cm=20.0, device_id=device_id)
        worker.apply(kafka.TELEMETRY, tp, encode_record([TelemetryBatch(heard.grid_code, (heard,))]))
    worker._held.append((Stream(), object()))  # type: ignore[arg-type]

    asyncio.run(worker.checkpoint())

    *published, flushed, acked = happened
    assert published and set(published) == {"publish 9902"}  # opened, then filed and dispatched
    assert (flushed, acked) == ("flush", "ack")
