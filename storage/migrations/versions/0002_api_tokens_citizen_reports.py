"""Schema 2: API tokens in the database (they were a file of hashes), citizen reports received by Open311, and an
indexes for listing cases by deadline."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the `api_tokens` and `citizen_reports` tables and the cases' deadline indexes."""
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(15), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger()),
        sa.Column("revoked_ms", sa.BigInteger()),
    )
    op.create_index("ix_api_tokens_name", "api_tokens", ["name"])
    op.create_table(
        "citizen_reports",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("case_id", sa.String(), nullable=False),
        sa.Column("grid_code", sa.String(15), nullable=False),
        sa.Column("category", sa.String(8), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("photo", sa.String()),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_citizen_reports_case", "citizen_reports", ["case_id"])
    op.create_index("ix_cases_deadline", "cases", ["deadline_ms", "id"])
    op.create_index("ix_cases_state_deadline", "cases", ["state", "deadline_ms", "id"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_cases_state_deadline", "cases")
    op.drop_index("ix_cases_deadline", "cases")
    op.drop_table("citizen_reports")
    op.drop_table("api_tokens")
