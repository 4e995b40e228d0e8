"""The SQLAlchemy metadata every table of GridHub's database is defined on, and the schema's own record."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table

SCHEMA_VERSION = "1"

metadata = MetaData()

meta_table = Table(
    "gridhub_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)
