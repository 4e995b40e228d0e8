"""Bearer tokens for tests: issued into the database of a state directory, as `gridhub tokens create` does."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from core.settings import Settings
from storage.db import connect
from storage.schema import init_db
from storage.tokens import create_token

DISTRICT = "310104"  # the demo city's district: a token over all of it


def mint(state_dir: Path, role: str = "viewer", scope: str = DISTRICT, *, name: str | None = None,
         expires_in: timedelta | None = None) -> str:
    """A new token of `role` over `scope` in the state directory's database (created if need be)."""
    engine = connect(Settings(state_dir=state_dir).database_url)
    try:
        init_db(engine)
        return create_token(engine, role=role, scope=scope, name=name or f"test {role}@{scope}",
                            expires_in=expires_in)[0]
    finally:
        engine.dispose()


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}
