"""The stream worker's Faust app: where it keeps its own files, and how it waits out its database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from core import kafka
from core.settings import DatabaseSettings, Settings
from domain.telemetry import TelemetryBatch, encode_record
from storage.checkpoints import load_cell
from storage.db import connect
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
