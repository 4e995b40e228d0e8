"""The whole schema: every table module of storage/, and creating what is missing."""

from __future__ import annotations

from sqlalchemy import Engine, select

# Every module that defines tables on `metadata`, so that `init_db` creates them all.
from storage import cases, checkpoints, devices  # noqa: F401
from storage.metadata import SCHEMA_VERSION, meta_table, metadata
from storage.telemetry import sql  # noqa: F401


def init_db(engine: Engine) -> None:
    """Create missing tables and record the schema version."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        current = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
        if current is None:
            conn.execute(meta_table.insert().values(key="schema_version", value=SCHEMA_VERSION))
