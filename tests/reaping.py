"""Servers a test is done with, stopped off the test's clock.

A graceful Orthanc stop takes ~4.5 s (its HTTP and DICOM servers' own shutdown); a
fixture's teardown need not wait for it when nothing is read afterwards. ``stop_later``
sends SIGTERM at once and a thread reaps the process (SIGKILL after ``timeout``); every
reaper is joined when the test process exits, so no server outlives the run.
"""

from __future__ import annotations

import atexit
import subprocess
import threading
from collections.abc import Callable

_reapers: list[threading.Thread] = []


def stop_later(
    proc: subprocess.Popen[bytes], *, then: Callable[[], object] | None = None, timeout: float = 30
) -> None:
    """SIGTERM ``proc`` now; wait for it (then ``then()``) in the background."""
    proc.terminate()

    def reap() -> None:
        wait_or_kill(proc, timeout)
        if then is not None:
            then()

    reaper = threading.Thread(target=reap, name=f"reap-{proc.pid}", daemon=True)
    reaper.start()
    _reapers.append(reaper)


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait for a process told to stop; SIGKILL it after ``timeout``."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@atexit.register
def _join_reapers() -> None:
    for reaper in _reapers:
        reaper.join()
