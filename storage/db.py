"""The case and registry database (SQLite embedded, PostgreSQL in production) through SQLAlchemy."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def connect(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout so that several processes can share it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # As many pooled connections as the API's worker threads can use at once (AnyIO's default: 40): a
        # connection opened beyond the pool is closed after one request, with its page cache, and the next
        # one sets the pragmas again — measured, a fifth of a loaded API's time went to that.
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=40, max_overflow=10)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # PostgreSQL: a pool per process, each connection checked before use (a server restarted under the pool
    # costs one failed ping, not a failed request) and renewed after 30 min (idle connections cut by firewalls).
    # 10 + 20 overflow covers the API's busiest bursts; more pooled connections only queue in the server.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_recycle=1800)


def shown(url: str) -> str:
    """The URL as messages and banners show it: a password in it as ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy reads: mask what stands before an @
        return re.sub(r"(?<=//)[^@/]*@", "***@", url)


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
