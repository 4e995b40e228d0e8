"""amqtt plugins that hold the embedded broker to the same password and ACL files as Mosquitto.

Both re-read their file when it changes on disk, so `gridhub devices add` or `rotate-secret` takes effect
at the next CONNECT without a restart. amqtt publishes a client's will without any topic check when the
client drops, so the will topic is checked here, at CONNECT: a client whose will it may not publish is
refused (Mosquitto 2.0 accepts it and silently drops the will when it fires).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from gridhub.broker_auth import Access, Acl, BrokerAuthError, read_acl_file, read_password_file
from gridhub.credentials import check_password

log = logging.getLogger("gridhub.mqtt.auth")
T = TypeVar("T")


class WatchedFile(Generic[T]):
    """A file's parsed content, parsed again whenever the file is replaced or modified."""

    def __init__(self, path: Path, parse: Callable[[Path], T]) -> None:
        self._path = path
        self._parse = parse
        self._signature: tuple[int, int, int] | None = self._stat()
        self._value = parse(path)  # a missing or malformed file stops the broker from starting

    def get(self) -> T:
        """The current content; after a failed reload, the last good one (the failure is logged once)."""
        try:
            signature = self._stat()
        except OSError as exc:
            signature = None
            if self._signature is not None:
                log.warning("%s: %s; keeping the rules loaded before", self._path, exc.strerror)
        if signature is not None and signature != self._signature:
            try:
                self._value = self._parse(self._path)
                log.info("reloaded %s", self._path)
            except BrokerAuthError as exc:
                log.warning("%s; keeping the rules loaded before", exc)
        self._signature = signature
        return self._value

    def _stat(self) -> tuple[int, int, int]:
        # os.replace gives a new inode, which catches two writes within one mtime tick
        stat = os.stat(self._path)
        return stat.st_mtime_ns, stat.st_size, stat.st_ino


class PasswordFileAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accept a CONNECT only with a username and password from the password file, and a permitted will."""

    @dataclass
    class Config:
        """Paths of the Mosquitto password and ACL files."""

        password_file: str
        acl_file: str

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._passwords = WatchedFile(Path(self.config.password_file), read_password_file)
        self._acl = WatchedFile(Path(self.config.acl_file), read_acl_file)

    async def authenticate(self, *, session: Session) -> bool:
        """True for a known username with its password and, if it set a will, a will topic it may publish."""
        username, password = session.username, session.password
        if not username or password is None:
            log.info("refused %s: no username and password", session.client_id)
            return False
        hashed = self._passwords.get().get(username)
        if hashed is None or not check_password(password, hashed):
            log.info("refused %s (client %s): unknown username or wrong password", username, session.client_id)
            return False
        if session.will_flag and not self._acl.get().allows(
                username, session.client_id or "", session.will_topic or "", Access.WRITE):
            log.info("refused %s: it may not publish its will topic %s", username, session.will_topic)
            return False
        return True


class AclTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Allow publishing, subscribing and delivery only as the ACL file says; anonymous clients get nothing."""

    @dataclass
    class Config:
        """Path of the Mosquitto ACL file."""

        acl_file: str

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._acl = WatchedFile(Path(self.config.acl_file), read_acl_file)

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        """Whether the session may do `action` on `topic` (a filter for SUBSCRIBE, a topic name otherwise)."""
        if session is None or not session.username or not topic:
            return False
        acl: Acl = self._acl.get()
        client_id = session.client_id or ""
        if action == Action.SUBSCRIBE:
            allowed = acl.may_subscribe(session.username, client_id, topic)
        elif action == Action.PUBLISH:
            allowed = acl.allows(session.username, client_id, topic, Access.WRITE)
        elif action == Action.RECEIVE:
            allowed = acl.allows(session.username, client_id, topic, Access.READ)
        else:
            allowed = False
        if not allowed:
            log.debug("denied %s %s on %s", session.username, action, topic)
        return allowed
