"""Bearer tokens with roles. Only SHA-256 hashes of tokens are stored; plaintext is shown once."""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum
from pathlib import Path

import orjson


class Role(StrEnum):
    """Who is calling: roles grant increasing rights from viewer to admin."""

    VIEWER = "viewer"  # read cases and figures (other systems, dashboards)
    OPERATOR = "operator"  # camera operators: review detections
    COMMANDER = "commander"  # command center (指挥中心): file, dispatch, verify
    ADMIN = "admin"  # engineers: registry and configuration


class TokenStoreError(Exception):
    """A tokens file that cannot be read."""


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_tokens(path: Path) -> dict[str, str]:
    """Create one fresh token per role, store their hashes in `path` (mode 0600), return role → token."""
    tokens = {role.value: "gh_" + secrets.token_urlsafe(24) for role in Role}
    entries = [{"role": role, "sha256": token_hash(token)} for role, token in tokens.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(orjson.dumps({"tokens": entries}, option=orjson.OPT_INDENT_2))
    return tokens


def load_token_hashes(path: Path) -> dict[str, Role]:
    """Hash → role from a tokens file written by `issue_tokens` (or by an operator in the same format)."""
    try:
        data = orjson.loads(path.read_bytes())
        return {str(entry["sha256"]): Role(entry["role"]) for entry in data["tokens"]}
    except OSError as exc:
        raise TokenStoreError(f"{path}: cannot read tokens file: {exc.strerror}") from None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TokenStoreError(f"{path}: malformed tokens file: {exc}") from None
