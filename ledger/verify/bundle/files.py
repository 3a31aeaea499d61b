"""Owner-only bundle files: a bundle is PHI at rest.

Invariant: the writer creates a bundle's directories 0700 and its files 0600 whatever
the umask, never opens an existing file or follows a symlink, and refuses a target
directory that others can open or that is not empty.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from ledger.errors import MalformedInputError

#: Owner-only: a bundle is PHI at rest.
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
_NEW_FILE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def check_target(path: str | Path) -> None:
    """Refuse a bundle target that exists and is not an empty, owner-only directory of ours.

    A missing target is fine (the writer creates it 0700). Checked before anything is
    read, so a refused export reads nothing.
    """
    target = Path(path)
    try:
        st = target.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise MalformedInputError(f"{target} exists and is not a directory")
    if st.st_uid != os.geteuid():
        raise MalformedInputError(f"{target} belongs to another user; name a new directory")
    if any(target.iterdir()):
        raise MalformedInputError(f"{target} exists and is not an empty directory")
    if st.st_mode & 0o077:
        raise MalformedInputError(
            f"{target} can be opened by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            "chmod 700 it or name a new directory"
        )


def new_file(path: Path) -> int:
    """A new owner-only file (never an existing one, never through a symlink)."""
    return os.open(path, _NEW_FILE, FILE_MODE)


def write_new(path: Path, text: str) -> None:
    with open(new_file(path), "w", encoding="utf-8") as out:
        out.write(text)


def new_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE)
    os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask: make it exactly 0700
