"""The SQLAlchemy metadata every table of GridHub's database is defined on, and a table of facts about the database."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table

metadata = MetaData()

#: Facts about the database as a whole (which registry it holds); its schema revision is in alembic_version.
meta_table = Table(
    "gridhub_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)
