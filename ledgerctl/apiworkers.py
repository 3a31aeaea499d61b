"""``ledger serve --workers N``: N API processes sharing one port (SO_REUSEPORT).

Invariant: every worker records its reads under a producer id (and spool and sequence
numbers) of its own, so no two processes ever stamp the same (producer id, sequence
number); page tokens sealed by one worker open in every other (one cursor key for all);
when one worker exits, the others are stopped and the command exits with its status, so
the supervisor restarts the whole set; SIGTERM reaches every worker, which drains.
"""

from __future__ import annotations

import multiprocessing
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from ledger.audit.cursors import MIN_KEY_BYTES


@dataclass(frozen=True, slots=True, kw_only=True)
class Worker:
    """Which of the API's processes this is: worker ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def producer_id(self, base: str) -> str:
        """The producer id this worker records reads as (worker 0: ``base`` itself)."""
        return base if self.index == 0 else f"{base}-w{self.index}"

    def key_file(self, path: str | None) -> str | None:
        """The producer key file of this worker: ``path`` for worker 0, else ``path`` with
        ``-w<k>`` before its suffix (``api.key`` -> ``api-w1.key``); refused when missing,
        since a worker may not sign as another process's producer id."""
        if path is None or self.index == 0:
            return path
        p = Path(path)
        mine = p.with_name(f"{p.stem}-w{self.index}{p.suffix}")
        if not mine.is_file():
            raise SystemExit(
                f"API worker {self.index} needs a producer key of its own: {mine} is missing "
                f"(issue one to {p.stem}-w{self.index}'s producer id, docs/api.md)"
            )
        return str(mine)

    def ops_port(self, port: int) -> int:
        """This worker's ops listener port (0: any free port, for every worker)."""
        return port if port == 0 else port + self.index


def shared_cursor_key(configured: bytes | None) -> bytes:
    """The cursor key every worker seals with: the configured one, else a fresh key for
    this set of workers (tokens then die with the set, as with one process)."""
    return configured if configured is not None else secrets.token_bytes(MIN_KEY_BYTES)


def run_workers(count: int, target: Callable[[Worker, bytes], None], cursor_key: bytes) -> int:
    """Run ``target(worker, cursor_key)`` in ``count`` spawned processes until SIGTERM or
    SIGINT (forwarded to each), or until one exits (then the others are stopped); the
    exit status is the first failing worker's, else 0."""
    context = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = [
        context.Process(
            target=target, args=(Worker(index=k, count=count), cursor_key), name=f"api-w{k}"
        )
        for k in range(count)
    ]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for p in processes:
            p.start()
        while not stopping and all(p.is_alive() for p in processes):
            time.sleep(0.2)
        for p in processes:
            if p.is_alive() and p.pid is not None:
                p.terminate()  # SIGTERM: the worker stops accepting and drains
        for p in processes:
            p.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    # A worker killed by a signal has a negative exit code: report it as a shell would.
    codes = [c if c >= 0 else 128 - c for c in (p.exitcode or 0 for p in processes)]
    failed = [c for c in codes if c not in (0, 128 + signal.SIGTERM)]
    return 0 if stopping and not failed else (failed[0] if failed else 1)
