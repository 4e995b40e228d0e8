"""The stream worker's Faust app: where it keeps its own files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.settings import DatabaseSettings, Settings
from storage.db import connect
from storage.schema import init_db
from streams.app import StreamWorker
from tests.streams import CITY


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
