"""How `make test` shares the suite between its pytest-xdist processes.

- **A file is one unit of work** (its module fixtures are built once), except that
- **the heavy files are one unit together** (``HEAVY``: fault streams, the Kafka
  cluster, the PostgreSQL failover, the 100k-event planted simulations): they run one
  after another on one process, first, while the other process works through the rest.
  Two of them at once on two cores starve each other's timeouts.
- **An ``alone`` test runs with no other test beside it.** A few tests judge how the
  machine's cores are shared (the pipe process's idle priority, with busy loops on every
  core); the two 100k-event planted simulations are CPU-bound pipelines that ran four
  times slower beside other tests and slowed those too. Every test takes a shared lock
  around its whole protocol (fixture setup included, so a module fixture's heavy setup
  counts); an ``alone`` test takes it exclusively. A turnstile lock is taken first, so
  a waiting ``alone`` test stops new shared holders from overtaking it. Without xdist
  there is one process and no lock.

(pytest-xdist's own ``--dist loadgroup`` does not group on pytest 9.2: its node id
suffix no longer takes effect, pytest-xdist issue 1386; hence the scheduler below.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

#: Test files that take minutes of CPU each: one unit of work, scheduled first.
HEAVY: Final = frozenset(
    {
        "tests/faults/test_faults.py",
        "tests/faults/test_kafka_cluster.py",
        "tests/faults/test_pg_failover.py",
        "tests/integration/test_planted_violations.py",
    }
)


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or ``heavy``."""
    path = nodeid.split("::", 1)[0]
    return "heavy" if path in HEAVY else path


def make_scheduler(config: object, log: object) -> object:
    """A LoadScope scheduler whose scopes are ``unit_of`` (needs --no-loadscope-reorder
    to keep collection order, which puts the heavy unit first)."""
    from xdist.scheduler import LoadScopeScheduling

    class _Units(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return _Units(config, log)


def _lock_dir() -> Path | None:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return None
    path = Path(tempfile.gettempdir()) / f"ledger-tests-{run}"
    path.mkdir(exist_ok=True)
    return path


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def turn(alone: bool) -> Iterator[None]:
    """Hold this test's turn: exclusive when ``alone``, shared otherwise."""
    where = _lock_dir()
    if where is None:
        yield
        return
    turnstile, room = where / "turnstile", where / "room"
    if alone:
        with _flock(turnstile, fcntl.LOCK_EX), _flock(room, fcntl.LOCK_EX):
            yield
        return
    with _flock(turnstile, fcntl.LOCK_EX):
        pass
    with _flock(room, fcntl.LOCK_SH):
        yield
