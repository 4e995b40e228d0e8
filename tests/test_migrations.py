"""The Alembic migrations of storage/migrations/: they build the schema the tables define, adopt a database
created before migrations, and a database migrated by a newer GridHub is refused.

Runs on SQLite, and on PostgreSQL as well when GRIDHUB_TEST_POSTGRES_URL names a database to use, which it
empties (e.g. postgresql+psycopg://postgres@127.0.0.1/gridhub_test).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner, Result
from sqlalchemy import Engine, inspect, select, text

from gridhub.cli import cli
from storage.checkpoints import cells_table
from storage.citizen import citizen_reports
from storage.db import connect, ping
from storage.devices import devices_table
from storage.metadata import meta_table
from storage.schema import SchemaError, current_revision, head_revision, init_db, metadata, migrations_config
from storage.tokens import api_tokens

POSTGRES_URL = os.environ.get("GRIDHUB_TEST_POSTGRES_URL")
DEVICE = {
    "id": "RG-0001", "kind": "rain_gauge", "grid_code": "310104003001001", "lon": 121.43, "lat": 31.19,
    "report_interval_s": 60, "created_at": datetime(2026, 1, 1, tzinfo=UTC),
}


@pytest.fixture(params=["sqlite", *(["postgresql"] if POSTGRES_URL else [])])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gridhub.db'}"
    engine = connect(str(POSTGRES_URL))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return str(POSTGRES_URL)


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = connect(url)
    yield engine
    engine.dispose()


@pytest.fixture
def before_migrations(engine: Engine) -> Engine:
    """A database as GridHub left it before migrations: `create_all` of a release that had no stream_cells
    table and no devices.enabled column, the schema_version row, and a registered device (and none of the tables
    later revisions add)."""
    later = {cells_table, api_tokens, citizen_reports}
    metadata.create_all(engine, tables=[table for table in metadata.sorted_tables if table not in later])
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_cases_deadline"))  # added by revision 0002
        conn.execute(text("DROP INDEX ix_cases_state_deadline"))
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE devices DROP COLUMN enabled"))
        conn.execute(meta_table.insert().values(key="schema_version", value="1"))
        conn.execute(text("INSERT INTO devices (id, kind, grid_code, lon, lat, report_interval_s, created_at) "
                          "VALUES (:id, :kind, :grid_code, :lon, :lat, :report_interval_s, :created_at)"), DEVICE)
    return engine


def drift(engine: Engine) -> list[object]:
    """What differs between the database and the tables' metadata, as Alembic's autogenerate sees it."""
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def gridhub_db(tmp_path: Path, url: str, *args: str) -> Result:
    config = tmp_path / "gridhub.yaml"
    config.write_text(f"database:\n  url: {url}\nstate_dir: {tmp_path / 'state'}\n", encoding="utf-8")
    # The settings refuse GRIDHUB_* variables they do not know, this suite's own included.
    env = {"GRIDHUB_CONFIG": None, "GRIDHUB_TEST_POSTGRES_URL": None}
    return CliRunner().invoke(cli, ["db", *args, "--config", str(config)], env=env)


def stamp_newer(engine: Engine) -> None:
    """Record a revision that this GridHub does not have, as a newer GridHub's migration would."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))


def test_upgrade_on_an_empty_database_builds_exactly_the_tables_of_the_metadata(engine: Engine) -> None:
    init_db(engine)
    assert set(inspect(engine).get_table_names()) == {*metadata.tables, "alembic_version"}
    assert drift(engine) == []


def test_an_upgraded_database_is_at_the_head_revision(engine: Engine) -> None:
    init_db(engine)
    assert current_revision(engine) == head_revision()


def test_an_empty_database_has_no_revision(engine: Engine) -> None:
    assert current_revision(engine) is None


def test_services_starting_together_on_an_empty_database_all_find_it_upgraded(engine: Engine) -> None:
    # A new SQLite file turns to WAL at its first connection, which racing first connections can fail at; that
    # is not the race this test is about.
    ping(engine)
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait(timeout=30)
        init_db(engine)

    with ThreadPoolExecutor(6) as pool:
        for started in [pool.submit(start) for _ in range(6)]:
            started.result()
    assert current_revision(engine) == head_revision()


def test_downgrading_to_base_leaves_only_alembic_version(engine: Engine) -> None:
    init_db(engine)
    with engine.begin() as conn:
        command.downgrade(migrations_config(conn), "base")
    assert inspect(engine).get_table_names() == ["alembic_version"]


def test_a_database_created_before_migrations_is_brought_to_head_without_drift(before_migrations: Engine) -> None:
    init_db(before_migrations)
    assert current_revision(before_migrations) == head_revision()
    assert drift(before_migrations) == []


def test_a_database_created_before_migrations_keeps_its_devices_and_they_stay_enabled(
        before_migrations: Engine) -> None:
    init_db(before_migrations)
    with before_migrations.connect() as conn:
        rows = conn.execute(select(devices_table.c.id, devices_table.c.enabled)).all()
    assert [tuple(row) for row in rows] == [("RG-0001", True)]


def test_alembic_version_replaces_the_schema_version_row(before_migrations: Engine) -> None:
    init_db(before_migrations)
    with before_migrations.connect() as conn:
        keys = conn.execute(select(meta_table.c.key)).scalars().all()
    assert "schema_version" not in keys


def test_a_database_of_a_newer_gridhub_is_refused_naming_its_revision(engine: Engine) -> None:
    init_db(engine)
    stamp_newer(engine)
    with pytest.raises(SchemaError, match=f"revision 9999, which this GridHub does not know .*{head_revision()}"):
        init_db(engine)


def test_gridhub_db_upgrade_brings_the_configured_database_to_head(tmp_path: Path, url: str) -> None:
    result = gridhub_db(tmp_path, url, "upgrade")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"database at schema revision {head_revision()} (head)\n"


def test_gridhub_db_current_names_the_revision_and_whether_it_is_the_head(tmp_path: Path, url: str) -> None:
    assert gridhub_db(tmp_path, url, "current").stdout.startswith("none: an empty database")
    gridhub_db(tmp_path, url, "upgrade")
    assert gridhub_db(tmp_path, url, "current").stdout == f"{head_revision()} (head)\n"


@pytest.mark.parametrize("command_name", ["upgrade", "current"])
def test_gridhub_db_refuses_a_newer_database_in_one_line(tmp_path: Path, url: str, engine: Engine,
                                                         command_name: str) -> None:
    init_db(engine)
    stamp_newer(engine)
    result = gridhub_db(tmp_path, url, command_name)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "schema revision 9999" in result.stderr
    assert "run the newer GridHub that migrated it" in result.stderr


@pytest.mark.integration
def test_gridhub_up_refuses_a_newer_database_naming_its_revision(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    init_db(engine)
    stamp_newer(engine)
    env = {name: value for name, value in os.environ.items() if not name.startswith("GRIDHUB_")}
    result = subprocess.run(
        [sys.executable, "-m", "gridhub", "up", "--demo", "--state-dir", str(tmp_path), "--api-port", "0",
         "--mqtt-port", "0", "--kafka-port", "0"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"gridhub up: database sqlite:///{tmp_path / 'gridhub.db'}: the database is at schema revision 9999,")
