"""producers.files: the durable-write and directory-lock helpers the stores share."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from producers import (
    DirectoryInUseError,
    DirectoryLock,
    atomic_write,
    fsync_directory,
    truncate_durably,
    write_all,
)


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "cursor"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cursor"]


def test_atomic_write_uses_the_temporary_name_given(tmp_path: Path) -> None:
    target = tmp_path / "stamps.log"
    (tmp_path / "stamps.log.tmp").write_bytes(b"left over by a crash")
    atomic_write(target, b"x", tmp_name="stamps.log.tmp")
    assert target.read_bytes() == b"x"
    assert not (tmp_path / "stamps.log.tmp").exists()


def test_write_all_and_truncate_durably(tmp_path: Path) -> None:
    path = tmp_path / "segment"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_all(fd, memoryview(b"0123456789" * 1000))
    finally:
        os.close(fd)
    truncate_durably(path, 15)
    assert path.read_bytes() == b"012345678901234"
    fsync_directory(tmp_path)


def test_a_directory_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    first = DirectoryLock(tmp_path / "lock")
    second = DirectoryLock(tmp_path / "lock")
    assert not first.held
    first.acquire()
    assert first.held
    with pytest.raises(DirectoryInUseError):
        second.acquire()
    assert not second.held
    first.release()
    first.release()  # idempotent
    second.acquire()
    assert second.held
    second.release()


def test_a_lock_in_a_missing_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        DirectoryLock(tmp_path / "missing" / "lock").acquire()
    assert not isinstance(caught.value, DirectoryInUseError)
