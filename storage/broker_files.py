"""Broker-side identity: Mosquitto's password and ACL files, written from the device registry.

Two listeners, two pairs of files. Devices connect to the device listener (`passwd`, `acl`), log in with
username = device id, which the broker also makes their client id, and may publish only
`gridhub/v1/+/<id>/telemetry` and `.../status`; they read nothing. Service accounts (the gateway) log in
only on the hub listener (`hub-passwd`, `hub-acl`), read everything under `gridhub/v1/` and publish
nothing. Mosquitto reads the files itself (`per_listener_settings true`); the embedded amqtt broker's
plugins (`gridhub.runtime.mqtt_auth`) read the same files through `read_password_file` and `Acl`, which
follow Mosquitto 2.0's own rules, so one set of files means the same thing to both brokers.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntFlag
from pathlib import Path

from sqlalchemy import Engine

from core.credentials import check_password, password_hash
from core.files import write_atomically
from core.settings import MqttSettings, Settings
from storage.devices import device_ids, secret_hashes

PASSWORD_FILE = "passwd"
ACL_FILE = "acl"
HUB_PASSWORD_FILE = "hub-passwd"
HUB_ACL_FILE = "hub-acl"
CONF_FILE = "mosquitto.conf"
TOPIC_ROOT = "gridhub/v1"
RETIRE_TOPIC_PATTERN = "gridhub/retire/%c"  # one topic per client id
#: The topics a device may publish, `%u` standing for its username, which is its device id.
DEVICE_TOPICS = (f"{TOPIC_ROOT}/+/%u/telemetry", f"{TOPIC_ROOT}/+/%u/status")
FILE_MODE = 0o640  # group-readable, so a Mosquitto in the directory's group can read the files
#: Ports of the production configuration when the settings leave them to the broker.
DEVICE_PORT, HUB_PORT = 1883, 1884
#: Seconds between Mosquitto's saves of its sessions and queued messages (it also saves when it stops).
AUTOSAVE_INTERVAL_S = 60

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_HASH = re.compile(r"\$7\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+")
_SHARED = "$share/"


class BrokerAuthError(ValueError):
    """A password or ACL file that cannot be written or read: which file or account, and why."""


class Access(IntFlag):
    """What an ACL line grants; DENY (no bits) refuses both."""

    DENY = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Where the broker's files were written."""

    password_file: Path
    acl_file: Path
    hub_password_file: Path
    hub_acl_file: Path
    conf_file: Path


def auth_dir(settings: Settings) -> Path:
    """The directory of the broker's password and ACL files: `mqtt.auth_dir`, or `mqtt/` in the state directory."""
    return settings.mqtt.auth_dir or settings.state_dir / "mqtt"


def configured_service_accounts(settings: Settings) -> dict[str, str]:
    """The gateway's account from the settings (username → fresh `$7$` hash), if a password is configured."""
    password = settings.mqtt_password()
    return {settings.mqtt.username: password_hash(password)} if password else {}


def current_service_accounts(engine: Engine, directory: Path) -> dict[str, str]:
    """Service accounts in place now: the hub password file, or the non-devices of an older single password file."""
    hub_file = directory / HUB_PASSWORD_FILE
    if hub_file.exists():
        return read_password_file(hub_file)
    path = directory / PASSWORD_FILE
    if not path.exists():
        return {}
    devices = device_ids(engine)
    return {user: hashed for user, hashed in read_password_file(path).items() if user not in devices}


def hub_accounts(engine: Engine, settings: Settings) -> dict[str, str]:
    """The service accounts to write after a registry change: those in place, with the configured gateway's."""
    accounts = current_service_accounts(engine, auth_dir(settings))
    password = settings.mqtt_password()
    # A hash in place that the password matches stays: a broker may end the sessions of an account whose hash changes.
    if password is not None and not check_password(password, accounts.get(settings.mqtt.username, "")):
        accounts[settings.mqtt.username] = password_hash(password)
    return accounts


def write_broker_files(
    engine: Engine, directory: Path, service_accounts: Mapping[str, str], mqtt: MqttSettings | None = None
) -> BrokerFiles:
    """Write the device listener's files (enabled devices with a secret), the hub listener's (the
    `service_accounts`) and a production mosquitto.conf with `mqtt`'s ports and limits.

    Each file is replaced atomically, so a broker never reads half a file; a lock serialises concurrent
    writers, so the last one to finish has read every change committed before it started.
    """
    for username, hashed in service_accounts.items():
        _check_account(username, hashed)
    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    with _locked(directory):
        devices = secret_hashes(engine)
        clashes = sorted(device for device in device_ids(engine)
                         if any(device.startswith(account) for account in service_accounts))
        if clashes:
            raise BrokerAuthError(
                f"registered device(s) {', '.join(clashes)} have a name that begins with a service account's "
                f"({', '.join(sorted(service_accounts))}): its gateways' client ids begin with it, and a device's "
                "client id is its name"
            )
        files = BrokerFiles(directory / PASSWORD_FILE, directory / ACL_FILE, directory / HUB_PASSWORD_FILE,
                            directory / HUB_ACL_FILE, directory / CONF_FILE)
        # ACLs first: an account can log in only once the rules that limit it are in place.
        write_atomically(files.hub_acl_file, render_hub_acl(service_accounts).encode(), FILE_MODE)
        write_atomically(files.acl_file, render_device_acl().encode(), FILE_MODE)
        write_atomically(files.hub_password_file, render_password_file(service_accounts).encode(), FILE_MODE)
        write_atomically(files.password_file, render_password_file(devices).encode(), FILE_MODE)
        write_atomically(files.conf_file, production_mosquitto_conf(directory, mqtt or MqttSettings()).encode(),
                         FILE_MODE)
    return files


def render_password_file(accounts: Mapping[str, str]) -> str:
    """Mosquitto's password file: one `username:$7$...` line per account, in name order."""
    lines = ["# Generated by GridHub from its device registry; change it with `gridhub devices`, not by hand."]
    lines += [f"{username}:{accounts[username]}" for username in sorted(accounts)]
    return "\n".join(lines) + "\n"


def render_device_acl() -> str:
    """The device listener's ACL: each device publishes under its own id only, and reads nothing."""
    lines = [
        "# Generated by GridHub; change it with `gridhub devices`, not by hand.",
        "# Devices (username = device id = client id) may publish their own telemetry and status, under any",
        "# kind, and read nothing; the gateway rejects a kind that does not match the registry.",
        *(f"pattern write {topic}" for topic in DEVICE_TOPICS),
    ]
    return "\n".join(lines) + "\n"


def render_hub_acl(service_accounts: Iterable[str]) -> str:
    """The hub listener's ACL: service accounts read everything under gridhub/v1/ and publish nothing there;
    each client may use its own gridhub/retire/<client id>, where a retiring gateway marks the end of its
    session's queue (`ingest.gateway`)."""
    lines = [
        "# Generated by GridHub; change it with `gridhub devices`, not by hand.",
        "# Service accounts read everything under gridhub/v1/, also through $share/<group>/ subscriptions",
        "# (Mosquitto checks what it delivers against the message's own topic), and publish nothing there.",
        "# A retiring gateway publishes one marker to its own topic and reads it back (gridhub gateway --retire).",
        f"pattern readwrite {RETIRE_TOPIC_PATTERN}",
    ]
    for username in sorted(service_accounts):
        lines += [f"user {username}", f"topic read {TOPIC_ROOT}/#"]
    return "\n".join(lines) + "\n"


def production_mosquitto_conf(directory: Path, mqtt: MqttSettings) -> str:
    """mosquitto.conf for a broker of its own: the device listener on every interface, the hub listener on
    `mqtt.hub_bind`, the ports from `mqtt` (1883 and 1884 where unset or 0)."""
    return mosquitto_conf(directory, mqtt, port=mqtt.port or DEVICE_PORT, hub_port=mqtt.hub_port or HUB_PORT,
                          hub_bind=mqtt.hub_bind)


def mosquitto_conf(
    directory: Path, limits: MqttSettings, *, port: int, hub_port: int, bind: str | None = None,
    hub_bind: str | None = None, persistence_dir: Path = Path("/var/lib/mosquitto"),
    autosave_interval_s: int = AUTOSAVE_INTERVAL_S,
) -> str:
    """A complete Mosquitto 2.0 configuration: the device and hub listeners on the files in `directory`."""
    listener = f"listener {port} {bind}" if bind else f"listener {port}"
    hub_listener = f"listener {hub_port} {hub_bind}" if hub_bind else f"listener {hub_port}"
    return f"""\
# Mosquitto 2.0 configuration for GridHub, generated next to the password and ACL files it names.
# Mosquitto reads those files at start and on reload: after `gridhub devices add`, `rotate-secret`,
# `disable` or `remove`, reload it (SIGHUP, or `systemctl reload mosquitto`); it then disconnects the
# clients whose password entry is gone or changed. Started as root, it drops to the mosquitto user
# before reading them; GridHub writes them mode 0640, so give the directory that group:
#   install -d -g mosquitto -m 2750 {directory}

# Each listener has its own password and ACL files: devices cannot log in where the gateways do, nor
# gateways where devices do.
per_listener_settings true

# Devices. The broker makes each device's username its client id, so no device can claim another's
# client id, nor a gateway's (device ids may not begin with a service account's name, which begins the
# gateways' client ids): a CONNECT with a taken client id would otherwise end that client's session.
# Passwords cross this listener in clear: add certfile/keyfile (TLS) where devices use networks you do not control.
{listener}
allow_anonymous false
use_username_as_clientid true
password_file {directory / PASSWORD_FILE}
acl_file {directory / ACL_FILE}

# The hub's own accounts (gateways, each with its own client id, gridhub-gateway-1, -2, ...): keep it on a
# network only the hub's hosts reach, and give the gateways its port (mqtt.hub_port).
{hub_listener}
allow_anonymous false
password_file {directory / HUB_PASSWORD_FILE}
acl_file {directory / HUB_ACL_FILE}

# A device's largest valid reading plus topic and header (mqtt.max_packet_bytes). A client that sends a
# larger packet is disconnected and the packet is not delivered.
max_packet_size {limits.max_packet_bytes}

# Keep persistent sessions (the gateway's) and their queued QoS 1 messages across a restart. Mosquitto
# saves them when it stops and every autosave_interval seconds, not after each message: a crash loses
# what arrived since the last save. A save writes every queued message and the broker waits for it, so
# not much more often than this.
persistence true
persistence_location {persistence_dir}/
autosave_interval {autosave_interval_s}

# The gateway acknowledges a QoS 1 message only after Kafka has it, so every message it has not yet
# acknowledged waits here. With the defaults (20 in flight, 1,000 queued) a gateway would be held to
# 20 messages per Kafka round trip, and Mosquitto silently drops the rest of a burst: with 1,000 queued,
# a gateway offline while 200,000 readings arrived got 1,000 of them back; with the values below, all
# 200,000 (Mosquitto 2.0.11).
# In flight: 5,000 unacknowledged messages per v3.1.1 client sustain 15,000 msg/s with up to 330 ms
# between delivery and acknowledgement (Kafka batching plus the produce round trip). An MQTT v5 client
# that sends Receive Maximum in its CONNECT gets that window instead, larger or smaller.
max_inflight_messages {limits.max_inflight_messages}
# Queued: one million messages per client is a minute of a 15,000 msg/s burst, or ten minutes of a
# 100,000-device fleet reporting once a minute while its gateway restarts. The queue is in memory, about
# 450 bytes a reading (200,000 queued took 88 MB), so a full one is under 0.5 GB; max_queued_bytes caps
# the payload bytes as well, should devices send large payloads.
max_queued_messages {limits.max_queued_messages}
max_queued_bytes {limits.max_queued_bytes}
"""


def read_password_file(path: Path) -> dict[str, str]:
    """Username → hash from a Mosquitto password file (comments and blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BrokerAuthError(f"{path}: cannot read the password file: {exc.strerror}") from None
    accounts = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        username, colon, hashed = line.partition(":")
        if not colon or not username.strip() or not hashed.strip():
            raise BrokerAuthError(f"{path}:{number}: expected username:hash")
        accounts[username.strip()] = hashed.strip()
    return accounts


def read_acl_file(path: Path) -> Acl:
    """Parse a Mosquitto ACL file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BrokerAuthError(f"{path}: cannot read the ACL file: {exc.strerror}") from None
    return Acl.parse(text, str(path))


@dataclass(frozen=True, slots=True)
class _Rule:
    topic: str
    access: Access


class Acl:
    """A Mosquitto 2.0 ACL file (`user`, `topic`, `pattern` lines), evaluated the way Mosquitto does."""

    def __init__(self, users: Mapping[str | None, list[_Rule]], patterns: list[_Rule]) -> None:
        self._users = users
        self._patterns = patterns
        self._decisions: dict[tuple[str | None, str, str, Access], bool] = {}

    @classmethod
    def parse(cls, text: str, source: str = "ACL") -> Acl:
        """Parse ACL text; raise BrokerAuthError naming the line of anything Mosquitto would refuse."""
        users: dict[str | None, list[_Rule]] = {}
        patterns: list[_Rule] = []
        user: str | None = None  # lines before the first `user` apply to anonymous clients
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split(maxsplit=2)
            if not words or line.startswith("#"):
                continue
            where = f"{source}:{number}"
            if words[0] == "user":
                if len(words) < 2:
                    raise BrokerAuthError(f"{where}: user without a name")
                user = line.split(maxsplit=1)[1].strip()
            elif words[0] in ("topic", "pattern"):
                if len(words) < 2:
                    raise BrokerAuthError(f"{where}: {words[0]} without a topic")
                rule = _rule(words[1:], where)
                (patterns if words[0] == "pattern" else users.setdefault(user, [])).append(rule)
            else:
                raise BrokerAuthError(f"{where}: unknown directive {words[0]!r}")
        return cls(users, patterns)

    def allows(self, username: str | None, client_id: str, topic: str, access: Access) -> bool:
        """May this client publish (WRITE) to, or be sent a message (READ) on, this topic name?"""
        key = (username, client_id, topic, access)
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) >= 100_000:
                self._decisions.clear()  # a bound, not a policy: the hot topics come straight back
            decision = self._decisions[key] = self._allows(username, client_id, topic, access)
        return decision

    def may_subscribe(self, username: str | None, client_id: str, topic_filter: str) -> bool:
        """May this client subscribe to this filter: does a read grant cover every topic the filter can match?

        Mosquitto 2.0 accepts any subscription and filters what it delivers; refusing the subscription up
        front gives the same deliveries and tells the client. `$share/<group>/` is checked as its filter.
        """
        if topic_filter.startswith(_SHARED):
            group, _, inner = topic_filter[len(_SHARED):].partition("/")
            if not group or not inner:
                return False
            topic_filter = inner
        grants = [r.topic for r in self._users.get(username, []) if r.access & Access.READ]
        grants += [topic for topic, access in self._pattern_rules(username, client_id) if access & Access.READ]
        return any(_covers(grant, topic_filter) for grant in grants)

    def _allows(self, username: str | None, client_id: str, topic: str, access: Access) -> bool:
        # Mosquitto's order: the user's own lines (denials first), then the patterns (denials first).
        rules = [r for r in self._users.get(username, []) if not (topic[:1] == "$" and r.topic[:1] != "$")]
        verdict = _first_verdict(((r.topic, r.access) for r in rules), topic, access)
        if verdict is not None:
            return verdict
        return bool(_first_verdict(self._pattern_rules(username, client_id), topic, access))

    def _pattern_rules(self, username: str | None, client_id: str) -> list[tuple[str, Access]]:
        if _has_wildcard(username or "") or _has_wildcard(client_id):
            return []  # Mosquitto denies such names every pattern: a wildcard would widen it
        return [(_substitute(r.topic, username, client_id), r.access) for r in self._patterns
                if username is not None or "%u" not in r.topic]  # Mosquitto skips %u patterns for anonymous


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching of a topic name against a filter; wildcards at the first level skip `$` topics."""
    if topic[:1] == "$" and topic_filter[:1] in ("+", "#"):
        return False
    levels = topic.split("/")
    for i, level in enumerate(topic_filter.split("/")):
        if level == "#":
            return True
        if i >= len(levels) or level not in ("+", levels[i]):
            return False
    return len(levels) == len(topic_filter.split("/"))


def _first_verdict(rules: Iterable[tuple[str, Access]], topic: str, access: Access) -> bool | None:
    """False if a matching rule denies, True if one grants `access`, None if none decides."""
    matching = [rule_access for rule_topic, rule_access in rules if topic_matches(rule_topic, topic)]
    if Access.DENY in matching:
        return False
    if any(rule_access & access for rule_access in matching):
        return True
    return None


def _covers(grant: str, topic_filter: str) -> bool:
    """Does every topic that `topic_filter` matches also match `grant`?"""
    if topic_filter[:1] == "$" and grant[:1] in ("+", "#"):
        return False
    wanted = topic_filter.split("/")
    for i, level in enumerate(grant.split("/")):
        if level == "#":
            return True
        if i >= len(wanted) or wanted[i] == "#" or (level != "+" and wanted[i] != level):
            return False
    return len(wanted) == len(grant.split("/"))


def _substitute(pattern: str, username: str | None, client_id: str) -> str:
    return pattern.replace("%c", client_id).replace("%u", username or "")


def _has_wildcard(name: str) -> bool:
    return "+" in name or "#" in name


def _rule(words: list[str], where: str) -> _Rule:
    accesses = {"read": Access.READ, "write": Access.WRITE, "readwrite": Access.READ | Access.WRITE,
                "deny": Access.DENY}
    if len(words) == 2:
        if words[0] not in accesses:
            raise BrokerAuthError(f"{where}: access {words[0]!r} must be read, write, readwrite or deny")
        access, topic = accesses[words[0]], words[1].strip()
    else:
        access, topic = Access.READ | Access.WRITE, words[0]
    levels = topic.split("/")
    if any(("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+")
           for i, level in enumerate(levels)):
        raise BrokerAuthError(f"{where}: invalid topic {topic!r}")
    return _Rule(topic, access)


def _check_account(username: str, hashed: str) -> None:
    if not _USERNAME.fullmatch(username):
        raise BrokerAuthError(f"service account {username!r}: a username is 1-64 characters of [A-Za-z0-9_.@-]")
    if not _HASH.fullmatch(hashed):
        raise BrokerAuthError(f"service account {username}: the password must be a $7$ hash")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
