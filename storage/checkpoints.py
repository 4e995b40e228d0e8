"""The stream worker's checkpoint: each grid cell's rule state and open cases, saved in the database.

The embedded Kafka keeps no durable state, so Faust's changelog-backed tables are not the truth here:
the database is. A cell's state is saved after the case events it produced were delivered and before
the records that led to it are acknowledged, so Kafka's committed offsets never run ahead of the saved
state. A worker that starts, or takes over a partition, loads the state of the
partition's cells and reads on from the committed offset; records read a second time change
nothing, because the rules key samples by device and measurement time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Engine, LargeBinary, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from storage.metadata import metadata

cells_table = Table(
    "stream_cells",
    metadata,
    Column("grid_code", String(32), primary_key=True),
    Column("state", LargeBinary, nullable=False),  # JSON of streams.engine.cell_doc
    Column("saved_ms", BigInteger, nullable=False),
)


def load_cell(engine: Engine, grid_code: str) -> dict[str, Any] | None:
    """The saved state of one cell, or None for a cell never saved."""
    with engine.connect() as conn:
        state = conn.execute(select(cells_table.c.state).where(cells_table.c.grid_code == grid_code)).scalar()
    return orjson.loads(state) if state is not None else None


def saved_cells(engine: Engine) -> list[str]:
    """The grid codes of every saved cell."""
    with engine.connect() as conn:
        return list(conn.execute(select(cells_table.c.grid_code).order_by(cells_table.c.grid_code)).scalars())


def save_cells(engine: Engine, states: Mapping[str, bytes]) -> None:
    """Save the state of several cells (JSON of `streams.engine.cell_doc`) in one transaction."""
    if not states:
        return
    now = int(time.time() * 1000)
    rows = [{"grid_code": code, "state": state, "saved_ms": now} for code, state in states.items()]
    insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(cells_table)
    statement = insert.on_conflict_do_update(
        index_elements=[cells_table.c.grid_code],
        set_={"state": insert.excluded.state, "saved_ms": insert.excluded.saved_ms},
    )
    with engine.begin() as conn:
        conn.execute(statement, rows)
