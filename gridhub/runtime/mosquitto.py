"""The embedded Mosquitto that `gridhub up` supervises: which broker runs, its configuration and its reloads.

`mqtt.embedded: auto` runs Debian's `mosquitto` when it is installed and the pip-only amqtt otherwise. The
configuration is the production one (`broker_auth.mosquitto_conf`) on the ports `gridhub up` resolved,
with its sessions in STATE/mosquitto/. Mosquitto reads its password and ACL files only at start and on
SIGHUP, so `watch_auth_files` sends it SIGHUP whenever `gridhub devices` rewrites them.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from core.settings import MqttSettings
from storage import broker_files as broker_auth

DEBIAN_BINARY = Path("/usr/sbin/mosquitto")  # Debian installs it outside a normal user's PATH
STATE_SUBDIR = "mosquitto"
AUTH_FILES = (broker_auth.PASSWORD_FILE, broker_auth.ACL_FILE, broker_auth.HUB_PASSWORD_FILE,
              broker_auth.HUB_ACL_FILE)
#: How often the auth files are looked at: a rewrite reaches the broker within this (plus its reload).
WATCH_INTERVAL_S = 0.25
#: Per auth file, what identifies its current version: (inode, mtime in ns, size), or None if absent.
Fingerprint = tuple[tuple[int, int, int] | None, ...]


class MosquittoNotFound(Exception):
    """`mqtt.embedded: mosquitto` and no mosquitto binary."""


def installed() -> str | None:
    """The mosquitto binary on PATH, else Debian's /usr/sbin/mosquitto if executable; None if neither."""
    found = shutil.which("mosquitto")
    if found is not None:
        return found
    return str(DEBIAN_BINARY) if os.access(DEBIAN_BINARY, os.X_OK) else None


def binary(mqtt: MqttSettings) -> str | None:
    """The mosquitto binary `mqtt.embedded` asks for, or None for amqtt; raise MosquittoNotFound if it is missing."""
    if mqtt.embedded == "amqtt":
        return None
    found = installed()
    if found is None and mqtt.embedded == "mosquitto":
        raise MosquittoNotFound(
            f"mqtt.embedded is mosquitto but no mosquitto binary is on PATH or at {DEBIAN_BINARY}; install it "
            "(Debian: apt-get install mosquitto) or set mqtt.embedded to auto or amqtt"
        )
    return found


def version(path: str) -> str:
    """The version Mosquitto reports, e.g. "2.0.11"; "unknown" if it does not say."""
    try:
        output = subprocess.run([path, "-h"], capture_output=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(rb"mosquitto version (\S+)", output)
    return found.group(1).decode() if found else "unknown"


def write_config(
    mqtt: MqttSettings, auth_dir: Path, state_dir: Path, *, port: int, hub_port: int
) -> Path:
    """Render the embedded broker's mosquitto.conf into STATE/mosquitto/ and return its path."""
    directory = state_dir / STATE_SUBDIR
    directory.mkdir(parents=True, exist_ok=True)
    config = broker_auth.mosquitto_conf(
        auth_dir, mqtt, port=port, bind=mqtt.bind, hub_port=hub_port, hub_bind=mqtt.hub_bind,
        persistence_dir=directory,
    )
    if os.geteuid() == 0:
        # As root, Mosquitto would switch to the `mosquitto` user before reading the 0640 files this user owns.
        config += f"\n# Started as root: stay root, who owns the password and ACL files.\nuser {getpass.getuser()}\n"
    path = directory / broker_auth.CONF_FILE
    path.write_text(config, encoding="utf-8")
    return path


def argv(path: str, config: Path) -> list[str]:
    """The command line of the embedded broker."""
    return [path, "-c", str(config)]


async def watch_auth_files(auth_dir: Path, reload: Callable[[], object], since: Fingerprint | None = None) -> None:
    """Call `reload` whenever a password or ACL file in `auth_dir` is replaced or changed; run until cancelled.

    `since` is a `fingerprint` taken before the broker started, so that a change made while it was starting
    is not missed. Files are replaced atomically, so a change is a new inode or mtime, never half a file.
    """
    seen = since if since is not None else fingerprint(auth_dir)
    while True:
        await asyncio.sleep(WATCH_INTERVAL_S)
        now = fingerprint(auth_dir)
        if now != seen:
            seen = now
            reload()


def fingerprint(auth_dir: Path) -> Fingerprint:
    """The current version of each auth file in `auth_dir`."""
    result: list[tuple[int, int, int] | None] = []
    for name in AUTH_FILES:
        try:
            stat = (auth_dir / name).stat()
        except FileNotFoundError:
            result.append(None)
            continue
        result.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(result)
