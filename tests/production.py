"""The production profile's servers for tests: Apache Kafka, PostgreSQL, InfluxDB 2 and Mosquitto from
`gridhub.services`, fresh for the fixture that asks, in a directory the postgres user can reach."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import create_engine, text

from gridhub.services import Postgres, Services, running_services


def reachable_dir() -> Path:
    """A fresh directory under /tmp that others may traverse: as root, PostgreSQL runs as the postgres user, who
    cannot enter pytest's 0700 tmp_path."""
    directory = Path(tempfile.mkdtemp(prefix="gridhub-services-"))
    directory.chmod(0o755)
    return directory


@contextlib.contextmanager
def servers(which: Iterable[str]) -> Iterator[Services]:
    """Fresh servers of the production profile until the block ends."""
    directory = reachable_dir()
    try:
        with running_services(directory, which) as started:
            yield started
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def fresh_database(postgres: Postgres, prefix: str = "gridhub") -> str:
    """A new, empty database on the server; its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"
