"""The embedded amqtt broker's accounts: the same password and ACL files Mosquitto reads, per listener.

Devices log in on the device listener (`passwd`, `acl`), the hub's service accounts on the hub listener
(`hub-passwd`, `hub-acl`), so an account can only ever log in where it belongs. The files are re-read when
they change on disk (`gridhub devices add`, `rotate-secret`, `disable`, `remove`); the broker then logs every
connected session in again with the credentials it connected with, and ends those that no longer pass.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from core.credentials import check_password
from storage.broker_files import (
    ACL_FILE,
    HUB_ACL_FILE,
    HUB_PASSWORD_FILE,
    PASSWORD_FILE,
    Access,
    Acl,
    BrokerAuthError,
    read_acl_file,
    read_password_file,
)

log = logging.getLogger("gridhub.mqtt.auth")


class Listener(StrEnum):
    """Where a client connected: devices, or the hub's own service accounts."""

    DEVICES = "devices"
    HUB = "hub"


@dataclass
class _Files:
    """One listener's password and ACL files, with what was last read from them."""

    password_file: Path
    acl_file: Path
    passwords: dict[str, str]
    acl: Acl
    signature: tuple[tuple[int, int, int], ...]


class Accounts:
    """Logins and topic rules of both listeners, from the files in `auth_dir`."""

    def __init__(self, auth_dir: Path) -> None:
        self._files: dict[Listener, _Files] = {}
        for listener, password_file, acl_file in (
            (Listener.DEVICES, auth_dir / PASSWORD_FILE, auth_dir / ACL_FILE),
            (Listener.HUB, auth_dir / HUB_PASSWORD_FILE, auth_dir / HUB_ACL_FILE),
        ):
            # A missing or malformed file stops the broker from starting, with the reason.
            self._files[listener] = _Files(password_file, acl_file, read_password_file(password_file),
                                           read_acl_file(acl_file), _signature(password_file, acl_file))

    def refresh(self) -> bool:
        """Re-read the files that changed on disk; True if any did. A bad file keeps the rules loaded before."""
        changed = False
        for files in self._files.values():
            try:
                signature = _signature(files.password_file, files.acl_file)
            except OSError as exc:
                log.warning("%s; keeping the accounts loaded before", exc)
                continue
            if signature == files.signature:
                continue
            try:
                files.passwords = read_password_file(files.password_file)
                files.acl = read_acl_file(files.acl_file)
            except BrokerAuthError as exc:
                log.warning("%s; keeping the accounts loaded before", exc)
                continue
            files.signature = signature
            changed = True
            log.info("reloaded %s and %s", files.password_file.name, files.acl_file.name)
        return changed

    def login(self, listener: Listener, username: str | None, password: str | None) -> bool:
        """May `username` log in on `listener` with `password`?"""
        if not username or password is None:
            return False
        hashed = self._files[listener].passwords.get(username)
        return hashed is not None and check_password(password, hashed)

    def allows(self, listener: Listener, username: str | None, client_id: str, topic: str, access: Access) -> bool:
        """May this client publish (WRITE) to, or receive (READ) a message on, this topic name?"""
        return self._files[listener].acl.allows(username, client_id, topic, access)

    def may_subscribe(self, listener: Listener, username: str | None, client_id: str, topic_filter: str) -> bool:
        """May this client subscribe to this topic filter?"""
        return self._files[listener].acl.may_subscribe(username, client_id, topic_filter)


def will_refusal(topic: str | None) -> str | None:
    """Why a will topic is unacceptable (empty, or a wildcard: a will is published to one topic), or None."""
    if not topic:
        return "an empty will topic"
    if "+" in topic or "#" in topic:
        return f"a wildcard in its will topic {topic!r}"
    if topic.startswith("$"):
        return f"a will topic starting with '$' ({topic!r})"
    return None


def _signature(*paths: Path) -> tuple[tuple[int, int, int], ...]:
    # os.replace gives a new inode, which catches two writes within one mtime tick
    stats = [os.stat(path) for path in paths]
    return tuple((stat.st_mtime_ns, stat.st_size, stat.st_ino) for stat in stats)
