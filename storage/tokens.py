"""API bearer tokens: who may call the API, in which role, over which part of the city, until when.

Only a SHA-256 hash of each token is stored: a token is 32 random bytes, so a fast hash is as strong as a slow
one, and the lookup on every request stays one indexed read. A token shows its public id (`gh_<id>_<secret>`)
so that `gridhub tokens list` and the logs can name it without the secret. Revoking or expiring a token takes
effect on the next request: nothing is cached.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, Column, Engine, Index, String, Table, select, update

from domain.epoch import EPOCH
from storage.metadata import metadata

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("scope", String(15), nullable=False),  # a grid code prefix: district, street or community
    Column("name", String(128), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger),
    Column("revoked_ms", BigInteger),
    Index("ix_api_tokens_name", "name"),
)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token, without its secret."""

    id: str
    role: str
    scope: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def valid_at(self, moment: datetime) -> bool:
        """Neither revoked nor expired at `moment`."""
        return self.revoked_at is None and (self.expires_at is None or moment < self.expires_at)


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, *, role: str, scope: str, name: str, expires_in: timedelta | None,
                 now: datetime | None = None) -> tuple[str, TokenRecord]:
    """Store a new token; return its plaintext (shown once) and its record."""
    now = _time(_ms(now or datetime.now(UTC)))  # as stored: milliseconds
    token_id = secrets.token_hex(6)
    token = f"gh_{token_id}_{secrets.token_urlsafe(32)}"
    expires = now + expires_in if expires_in is not None else None
    with engine.begin() as conn:
        conn.execute(api_tokens.insert().values(
            id=token_id, sha256=token_hash(token), role=role, scope=scope, name=name,
            created_ms=_ms(now), expires_ms=_ms(expires) if expires else None, revoked_ms=None,
        ))
    return token, TokenRecord(token_id, role, scope, name, now, expires, None)


def find_token(engine: Engine, token: str) -> TokenRecord | None:
    """The record of a presented token (valid or not); None if no such token was ever issued."""
    with engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.sha256 == token_hash(token))).first()
    return _record(row) if row is not None else None


def list_tokens(engine: Engine) -> list[TokenRecord]:
    """Every token, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_ms, api_tokens.c.id)).all()
    return [_record(row) for row in rows]


def revoke_tokens(engine: Engine, *, token_id: str | None = None, name_prefix: str | None = None,
                  now: datetime | None = None) -> int:
    """Revoke the token with this id, or every live token whose name starts with `name_prefix`; how many."""
    if (token_id is None) == (name_prefix is None):
        raise ValueError("revoke by id or by name prefix, exactly one")
    t = api_tokens.c
    query = update(api_tokens).where(t.revoked_ms.is_(None)).values(revoked_ms=_ms(now or datetime.now(UTC)))
    query = query.where(t.id == token_id) if token_id is not None else query.where(
        t.name.startswith(name_prefix or "", autoescape=True))
    with engine.begin() as conn:
        return conn.execute(query).rowcount


def _record(row: object) -> TokenRecord:
    r = row._mapping  # type: ignore[attr-defined]
    return TokenRecord(r["id"], r["role"], r["scope"], r["name"], _time(r["created_ms"]),
                       _time(r["expires_ms"]) if r["expires_ms"] is not None else None,
                       _time(r["revoked_ms"]) if r["revoked_ms"] is not None else None)


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _time(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)
