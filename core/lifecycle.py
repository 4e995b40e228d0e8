"""How every service starts and stops: SIGINT/SIGTERM handling, the ready signal to a supervisor, and the
numbered slot a replica of a scaled service holds while it runs."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
from pathlib import Path

READY_FILE_ENV = "GRIDHUB_READY_FILE"
MAX_SLOTS = 64


class NoFreeSlot(Exception):
    """Every slot in the directory is held by a running process."""


def claim_slot(directory: Path, limit: int = MAX_SLOTS) -> int:
    """Hold the lowest free slot 1..limit in `directory` until this process exits, and return its number.

    A slot is `slot-N.lock` locked with flock: the kernel releases it when the process dies however it
    dies, so a replica restarted or killed frees its slot for the one that replaces it, which takes the
    same number (and with it the same broker session)."""
    directory.mkdir(parents=True, exist_ok=True)
    for slot in range(1, limit + 1):
        fd = os.open(directory / f"slot-{slot}.lock", os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot  # the descriptor stays open, and the lock held, for the life of the process
    raise NoFreeSlot(f"all {limit} slots in {directory} are taken by running processes")


def mark_ready() -> None:
    """Tell the supervisor this service is ready (no-op when it runs on its own)."""
    path = os.environ.get(READY_FILE_ENV)
    if path:
        Path(path).touch()


def stop_event() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets: every GridHub service stops cleanly on either."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
