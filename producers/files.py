"""Durable file primitives shared by the spool and the services' local stores.

Invariant: ``write_all`` writes every byte (``os.write`` may write fewer); ``atomic_write``
leaves the old or the new file after a crash, never a mix (temporary file fsynced, renamed
over the target, directory fsynced); ``truncate_durably`` returns once the new size is on
disk; ``DirectoryLock`` holds an exclusive ``flock`` until ``release``, so two processes
never share one store. Every function does blocking I/O: call it off the event loop.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = [
    "DirectoryInUseError",
    "DirectoryLock",
    "atomic_write",
    "fsync_directory",
    "truncate_durably",
    "write_all",
]


def fsync_directory(directory: Path) -> None:
    """Make the directory's entries (files created, renamed, removed) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (not fsynced)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(path: Path, data: bytes, *, tmp_name: str | None = None) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new file, never a mix.

    The new file (mode 0600) is first written to ``tmp_name`` (default ``.<name>.tmp``)
    in the same directory.
    """
    tmp = path.with_name(tmp_name if tmp_name is not None else f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def truncate_durably(path: Path, size: int) -> None:
    """Cut the file at ``path`` to ``size`` bytes and fsync it."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryInUseError(OSError):
    """Another process holds the lock."""


class DirectoryLock:
    """An exclusive, non-blocking ``flock`` on one file (mode 0600) of a store's directory."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise ``DirectoryInUseError``; ``OSError`` when the file
        cannot be opened."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise DirectoryInUseError(exc.errno, f"{self.path} is locked: {exc}") from exc
        self._fd = fd

    def release(self) -> None:
        """Release the lock (closing its file); idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
