"""Files replaced whole: new content, the permissions asked for, nothing left behind, the old file kept on failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.files import write_atomically


def test_the_file_holds_the_new_content(tmp_path: Path) -> None:
    path = tmp_path / "ready.json"
    path.write_bytes(b"old")

    write_atomically(path, b"new")

    assert path.read_bytes() == b"new"


def test_the_file_is_private_unless_another_mode_is_asked_for(tmp_path: Path) -> None:
    write_atomically(tmp_path / "private", b"x")
    write_atomically(tmp_path / "shared", b"x", mode=0o640)

    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o640


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    write_atomically(tmp_path / "acl", b"x")
    write_atomically(tmp_path / "acl", b"y")

    assert [p.name for p in tmp_path.iterdir()] == ["acl"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "acl"
    path.write_bytes(b"old")

    with pytest.raises(TypeError):
        write_atomically(path, "text, not bytes")  # type: ignore[arg-type]

    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["acl"]
