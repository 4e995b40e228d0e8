"""The evidence store: camera snapshots and citizens' and departments' photos, kept by reference.

The embedded profile keeps them as files under one directory; a reference is a path relative to it, made by
GridHub (never by a client), and reading one checks that it stays inside the directory. Another store (S3,
the case database) would implement the same methods.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Protocol

from core.files import write_atomically

_REFERENCE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class EvidenceStore(Protocol):
    """Somewhere to keep snapshots and photos."""

    def put(self, name: str, data: bytes) -> str:
        """Store the image under `name` (a relative path); return the reference to record."""
        ...


class DirectoryEvidence:
    """Images as files under a directory; the reference is the path relative to it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, name: str, data: bytes) -> str:
        """Write the file atomically (a reader never sees half an image) and return its relative path."""
        path = self._path(name)
        if path is None:
            raise ValueError(f"not an evidence name: {name!r:.80}")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)
        return name

    def put_new(self, folder: str, suffix: str, data: bytes) -> str:
        """Store under a fresh random name in `folder`; return its reference."""
        return self.put(f"{folder}/{secrets.token_hex(12)}{suffix}", data)

    def read(self, reference: str) -> bytes | None:
        """The image behind a reference GridHub recorded; None if it is gone or not a reference of this store."""
        path = self._path(reference)
        if path is None or not path.is_file():
            return None
        return path.read_bytes()

    def latest(self, folder: str) -> str | None:
        """The reference of the newest image in `folder` (e.g. a camera's), if any."""
        path = self._path(folder)
        if path is None or not path.is_dir():
            return None
        images = (p for p in path.iterdir() if _complete(p.name))
        newest = max(images, key=lambda p: p.stat().st_mtime_ns, default=None)
        return f"{folder}/{newest.name}" if newest is not None and newest.is_file() else None

    def holds_any(self, folder: str) -> bool:
        """Whether `folder` holds an image: cheaper than `latest`, which looks at every one."""
        path = self._path(folder)
        if path is None or not path.is_dir():
            return False
        with os.scandir(path) as entries:
            return any(_complete(entry.name) and entry.is_file() for entry in entries)

    def _path(self, reference: str) -> Path | None:
        if not _REFERENCE.fullmatch(reference) or any(part in (".", "..") for part in reference.split("/")):
            return None
        path = (self.root / reference).resolve()
        return path if path.is_relative_to(self.root.resolve()) else None


def _complete(name: str) -> bool:
    # A name starting with a dot is an image still being written (core.files.write_atomically's temporary file).
    return not name.startswith(".")


def camera_folder(camera_id: str) -> str:
    """The folder of a camera's snapshots: its id with every character unsafe in a file name replaced by '_'."""
    return _UNSAFE.sub("_", camera_id)
