"""`gridhub db`: the database's schema revision, and upgrading it. Registered on `gridhub.cli.cli`."""

from __future__ import annotations

from pathlib import Path

import click

from gridhub.cli.common import EXIT_CONFIG, config_option, fail, load


@click.group()
def db() -> None:
    """The database schema (Alembic migrations in storage/migrations/); every service start upgrades it too."""


@db.command()
@config_option
def upgrade(config_file: Path | None) -> None:
    """Bring the database to this GridHub's newest schema revision, creating the schema if it is empty."""
    from storage.db import connect
    from storage.schema import SchemaError, head_revision, init_db

    engine = connect(load(config_file).database_url)
    try:
        init_db(engine)
    except SchemaError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"database at schema revision {head_revision()} (head)")


@db.command()
@config_option
def current(config_file: Path | None) -> None:
    """Print the database's schema revision, and whether it is this GridHub's newest."""
    from storage.db import connect
    from storage.schema import SchemaError, current_revision, head_revision

    engine = connect(load(config_file).database_url)
    try:
        revision = current_revision(engine)
    except SchemaError as exc:
        fail(str(exc), EXIT_CONFIG)
    head = head_revision()
    if revision == head:
        click.echo(f"{revision} (head)")
    elif revision is None:
        click.echo(f"none: an empty database, or one created before migrations (`gridhub db upgrade` brings it "
                   f"to {head})")
    else:
        click.echo(f"{revision} (head is {head}: `gridhub db upgrade`)")
