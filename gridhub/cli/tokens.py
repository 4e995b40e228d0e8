"""`gridhub tokens`: API bearer tokens in the database. Registered on `gridhub.cli.cli`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from gridhub.cli.common import EXIT_CONFIG, config_option, fail, load

ROLES = ("viewer", "operator", "commander", "device-admin", "admin")


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens; a revoked or expired token is refused at once, without a restart."""


@tokens.command()
@config_option
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option("--scope", required=True,
              help="Grid code prefix it covers: district (6 digits), street (9) or community (12).")
@click.option("--expires", "expires", default="90d", show_default=True,
              help="Lifetime, e.g. 12h, 30d; 'never' for a token that does not expire.")
@click.option("--name", default=None, help="Who or what holds it (shown in case timelines); default role@scope.")
def create(config_file: Path | None, role: str, scope: str, expires: str, name: str | None) -> None:
    """Issue a token; its secret is printed once, only its hash is stored."""
    from api.auth import scope_error
    from api.routes.telemetry import parse_duration_ms
    from core.city import CityError, load_city
    from storage.db import connect
    from storage.schema import SchemaError, init_db
    from storage.tokens import create_token

    settings = load(config_file)
    try:
        city = load_city(settings)
    except CityError as exc:
        fail(f"city error: {exc}", EXIT_CONFIG)
    problem = scope_error(scope, known_prefix=True) or scope_error(scope, known_prefix=bool(city.cells.under(scope)))
    if problem:
        fail(problem, EXIT_CONFIG)
    lifetime: timedelta | None = None
    if expires != "never":
        ms = parse_duration_ms(expires)
        if not ms:
            fail(f"--expires {expires!r}: give a duration like 12h or 30d, or 'never'", EXIT_CONFIG)
        lifetime = timedelta(milliseconds=ms)
    engine = connect(settings.database_url)
    try:
        init_db(engine)
    except SchemaError as exc:
        fail(str(exc), EXIT_CONFIG)
    token, record = create_token(engine, role=role, scope=scope, name=name or f"{role}@{scope}", expires_in=lifetime)
    until = record.expires_at.isoformat() if record.expires_at else "never"
    click.echo(f"token {record.id}: {role} over {scope}, expires {until}", err=True)
    click.echo(token)


@tokens.command(name="list")
@config_option
@click.option("--all", "show_all", is_flag=True, help="Include revoked and expired tokens.")
def list_(config_file: Path | None, show_all: bool) -> None:
    """The tokens (never their secrets): id, role, scope, name, expiry and state."""
    from storage.db import connect
    from storage.tokens import list_tokens

    now = datetime.now(UTC)
    records = [r for r in list_tokens(connect(load(config_file).database_url)) if show_all or r.valid_at(now)]
    click.echo(f"{'ID':<13} {'ROLE':<12} {'SCOPE':<15} {'EXPIRES':<26} {'STATE':<8} NAME")
    for r in records:
        state = "revoked" if r.revoked_at else ("expired" if not r.valid_at(now) else "valid")
        expires = r.expires_at.isoformat(timespec="seconds") if r.expires_at else "never"
        click.echo(f"{r.id:<13} {r.role:<12} {r.scope:<15} {expires:<26} {state:<8} {r.name}")


@tokens.command()
@config_option
@click.argument("token_id")
def revoke(config_file: Path | None, token_id: str) -> None:
    """Revoke a token by its id (from `gridhub tokens list`); the API refuses it from the next request."""
    from storage.db import connect
    from storage.tokens import revoke_tokens

    if not revoke_tokens(connect(load(config_file).database_url), token_id=token_id):
        fail(f"no live token {token_id!r}", 1)
    click.echo(f"token {token_id} revoked")
