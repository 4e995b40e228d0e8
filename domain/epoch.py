"""The Unix epoch: GridHub's records, tables and queries count instants in milliseconds from it (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
