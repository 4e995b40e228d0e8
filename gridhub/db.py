"""The case and registry database (SQLite embedded, PostgreSQL in production) through SQLAlchemy."""

from __future__ import annotations

import importlib
from pathlib import Path

from sqlalchemy import Column, Engine, MetaData, String, Table, create_engine, event, select, text
from sqlalchemy.engine import make_url

SCHEMA_VERSION = "1"
#: Modules that define their tables on `metadata`; `init_db` imports them so that every table exists.
TABLE_MODULES = ("gridhub.devices", "ingest.store.sql", "streams.sink", "streams.checkpoint")

metadata = MetaData()

meta_table = Table(
    "gridhub_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)


def connect(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout so that several processes can share it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def init_db(engine: Engine) -> None:
    """Create missing tables and record the schema version."""
    for module in TABLE_MODULES:
        importlib.import_module(module)
    metadata.create_all(engine)
    with engine.begin() as conn:
        current = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
        if current is None:
            conn.execute(meta_table.insert().values(key="schema_version", value=SCHEMA_VERSION))


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
