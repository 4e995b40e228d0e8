"""The embedded runtime: `gridhub up` starts, supervises and stops every service on one machine."""

from __future__ import annotations

import os
from pathlib import Path

READY_FILE_ENV = "GRIDHUB_READY_FILE"


def mark_ready() -> None:
    """Tell the supervisor this service is ready (no-op when it runs on its own)."""
    path = os.environ.get(READY_FILE_ENV)
    if path:
        Path(path).touch()
