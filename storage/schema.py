"""The whole schema: every table module of storage/, and the Alembic migrations that build it (storage/migrations/)."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

# Every module that defines tables on `metadata`, so that migrations and their drift test see them all.
from storage import cases, checkpoints, citizen, devices, tokens  # noqa: F401
from storage.metadata import metadata
from storage.telemetry import sql  # noqa: F401

__all__ = ["SchemaError", "current_revision", "head_revision", "init_db", "metadata", "migrations_config"]

log = logging.getLogger(__name__)
# Alembic says at INFO which dialect it runs on, at every start; the upgrade line below is the one that matters.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Any fixed number: the PostgreSQL advisory lock held by the one process that upgrades the database.
_UPGRADE_LOCK = 0x67726964


class SchemaError(RuntimeError):
    """A database whose schema revision this GridHub does not know: a newer GridHub migrated it."""


def init_db(engine: Engine) -> None:
    """Bring the database to the newest schema revision: create the schema if empty, upgrade it if older.

    A database created before migrations (by `create_all`) has no revision; revision 0001 adopts it. Services
    starting together upgrade one at a time; the others find the work done.
    """
    head = head_revision()
    with engine.connect() as conn:
        if _known_revision(conn) == head:
            return
    with engine.connect() as conn:
        _lock_for_upgrade(conn)
        current = _known_revision(conn)
        if current != head:
            log.info("upgrading the database schema from revision %s to %s", current or "none", head)
            command.upgrade(migrations_config(conn), "head")
        conn.commit()


def migrations_config(connection: Connection) -> Config:
    """Alembic's configuration for running GridHub's migrations on `connection` (storage/migrations/env.py)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision; None for an empty database or one created before migrations."""
    with engine.connect() as conn:
        return _known_revision(conn)


def head_revision() -> str:
    """The newest schema revision this GridHub knows."""
    head = _scripts().get_current_head()
    assert head is not None, "storage/migrations/versions has no revision"
    return head


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS_DIR))


def _known_revision(conn: Connection) -> str | None:
    """The revision recorded in the database; SchemaError if this GridHub has no such revision."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is not None and revision not in {script.revision for script in _scripts().walk_revisions()}:
        raise SchemaError(
            f"the database is at schema revision {revision}, which this GridHub does not know (its newest is "
            f"{head_revision()}): run the newer GridHub that migrated it, or point database.url elsewhere"
        )
    return revision


def _lock_for_upgrade(conn: Connection) -> None:
    """Begin a transaction that no other process's upgrade can run beside, for the upgrade and its check."""
    if conn.dialect.name == "sqlite":
        # A write lock from the start: SQLite has one writer at a time, and the others wait (busy timeout).
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
