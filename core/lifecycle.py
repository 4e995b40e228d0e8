"""How every service starts and stops: SIGINT/SIGTERM handling and the ready signal to a supervisor."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

READY_FILE_ENV = "GRIDHUB_READY_FILE"


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
