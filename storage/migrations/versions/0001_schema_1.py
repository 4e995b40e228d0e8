"""Schema 1: every table GridHub had before migrations, and the adoption of a database created then.

A database created before migrations (`create_all`; `gridhub_meta.schema_version` "1") has no revision, so
this runs on it too: it creates the tables that database lacks, as `create_all` did at every start, adds the
`devices.enabled` column where the table predates it, as a start-up hook did, and drops the schema_version
row, which alembic_version replaces. On an empty database it creates the schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = (
    "devices", "removed_devices", "cases", "case_events", "stream_cells", "telemetry_readings",
    "telemetry_status_changes", "telemetry_store_positions", "gridhub_meta",
)


def upgrade() -> None:
    """Create the tables and indexes that are missing, and give an older devices table its `enabled` column."""
    op.create_table(
        "devices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("grid_code", sa.String(15), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("report_interval_s", sa.Integer(), nullable=False),
        sa.Column("battery_floor_v", sa.Float()),
        sa.Column("component_id", sa.String(16)),
        sa.Column("well_depth_cm", sa.Float()),
        sa.Column("zone_area_m2", sa.Float()),
        sa.Column("secret_hash", sa.String(256)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("secret_set_at", sa.DateTime(timezone=True)),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_devices_grid_code", "devices", ["grid_code"], if_not_exists=True)
    if "enabled" not in {column["name"] for column in sa.inspect(op.get_bind()).get_columns("devices")}:
        op.add_column("devices", sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.create_table(
        "removed_devices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("grid_code", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("department", sa.String()),
        sa.Column("tier", sa.String(16)),
        sa.Column("reported_ms", sa.BigInteger(), nullable=False),
        sa.Column("filed_ms", sa.BigInteger()),
        sa.Column("dispatched_ms", sa.BigInteger()),
        sa.Column("deadline_ms", sa.BigInteger()),
        sa.Column("handled_ms", sa.BigInteger()),
        sa.Column("closed_ms", sa.BigInteger()),
        sa.Column("voided_ms", sa.BigInteger()),
        sa.Column("doc", sa.Text(), nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_cases_reported", "cases", ["reported_ms", "id"], if_not_exists=True)
    op.create_index("ix_cases_grid_reported", "cases", ["grid_code", "reported_ms"], if_not_exists=True)
    op.create_index("ix_cases_state_reported", "cases", ["state", "reported_ms"], if_not_exists=True)
    op.create_table(
        "case_events",
        sa.Column("case_id", sa.String(), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "stream_cells",
        sa.Column("grid_code", sa.String(32), primary_key=True),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("saved_ms", sa.BigInteger(), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "telemetry_readings",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("ts_ms", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("grid_code", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("rain_mm", sa.Float()),
        sa.Column("count", sa.Integer()),
        sa.Column("tilt_deg", sa.Float()),
        sa.Column("cover_open", sa.Boolean()),
        sa.Column("water_level_cm", sa.Float()),
        sa.Column("battery_v", sa.Float()),
        if_not_exists=True,
    )
    op.create_index("ix_telemetry_readings_grid_time", "telemetry_readings", ["grid_code", "ts_ms"],
                    if_not_exists=True)
    op.create_table(
        "telemetry_status_changes",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("ts_ms", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("online", sa.Boolean(), primary_key=True),
        sa.Column("grid_code", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_telemetry_status_grid_time", "telemetry_status_changes", ["grid_code", "ts_ms"],
                    if_not_exists=True)
    op.create_table(
        "telemetry_store_positions",
        sa.Column("consumer_group", sa.String(255), primary_key=True),
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("kafka_partition", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("last_record", sa.String(64), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "gridhub_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
        if_not_exists=True,
    )
    op.execute(sa.text("DELETE FROM gridhub_meta WHERE key = 'schema_version'"))


def downgrade() -> None:
    """Drop every table of schema 1, and with them the data."""
    for table in TABLES:
        op.drop_table(table)
