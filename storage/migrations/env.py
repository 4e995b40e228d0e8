"""Alembic's environment: how GridHub's migrations run, from storage/schema.py or the `alembic` command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from core.settings import load_settings
from storage.db import connect
from storage.schema import metadata


def run(connection: Connection) -> None:
    """Run the pending migrations on `connection`, in the transaction its caller holds or a new one."""
    # Batch mode, so that a revision can alter a column on SQLite too (it copies the table).
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:  # the `alembic` command line, writing a revision against the configured database
    with connect(load_settings().database_url).connect() as own:
        run(own)
