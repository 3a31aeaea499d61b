"""Emit from a host process through a child process, the pipe process, that owns the
Kafka client (``PipeEmitter``; the child is ``python -m producers.pipe``).

Invariant: a frame keeps its stamp for good (sent again, it is byte-identical); the host
keeps every frame until the pipe process acknowledges it as durable (in Kafka or its
fsynced spool) and re-sends them, in order, to a new pipe process if it exits; at most
``max_pending`` frames wait, then ``emit`` pushes back. Design, priorities and the wire
format: docs/design/pipe.md.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Final

from producers.emitter import EmitterConfig
from producers.errors import EmitterPushbackError, EmitterUnavailableError
from producers.events import AuditEvent, schema_name, to_record
from producers.pipe_protocol import (
    BLOCK,
    IDLE_ENV,
    MAX_PENDING,
    NICE_ENV,
    PIPE_BYTES,
    PIPE_COMMAND,
    frame,
    read_message,
)
from producers.pipe_watchdog import PipeObservation, PipeWatchdog, PriorityPolicy

logger = logging.getLogger(__name__)

__all__ = ["MAX_PENDING", "PipeEmitter", "PriorityPolicy", "main"]

_RESTART_FIRST: Final = 0.2
_RESTART_MAX: Final = 5.0


def _config_fields(config: EmitterConfig) -> dict[str, object]:
    """The emitter's settings, one level deep (nested settings stay dataclasses)."""
    return {f.name: getattr(config, f.name) for f in fields(config)}


def default_python() -> str:
    """The interpreter for the pipe process: this one, or (embedded in a host such as Orthanc,
    where ``sys.executable`` is the host) the system's ``pythonX.Y``."""
    name = os.path.basename(sys.executable or "")
    if name.startswith("python"):
        return sys.executable
    return f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"


class PipeEmitter:
    """``with PipeEmitter(config) as em: em.emit(event)`` from any thread."""

    def __init__(
        self,
        config: EmitterConfig,
        *,
        max_pending: int = 10_000,
        block_seconds: float = 0.05,
        python: str | None = None,
        pythonpath: Sequence[str] | None = None,
        nice: int = 0,
        idle: bool = True,
        starved_seconds: float = 1.0,
        demote_seconds: float = 30.0,
    ) -> None:
        if not 0 < max_pending < BLOCK // 2:
            raise ValueError(f"max_pending must be between 1 and {BLOCK // 2 - 1}")
        self._config = config
        self._max_pending = max_pending
        self._block_seconds = block_seconds
        self._python = python or default_python()
        #: Where the pipe process finds ``producers`` and its dependencies besides its own
        #: site-packages (default: the directory holding this package).
        self._pythonpath = tuple(pythonpath or (str(Path(__file__).resolve().parents[1]),))
        #: The nice value of a pipe process not at idle priority (``idle=False``, or
        #: promoted): under CPU contention the host's threads go first, and
        #: ``max_pending`` absorbs bursts.
        self._nice = nice
        #: Run the pipe process at idle priority (docs/design/pipe.md), promoting
        #: one whose oldest unacknowledged frame waits ``starved_seconds`` while it waits
        #: for a CPU, and demoting it again after ``demote_seconds`` of keeping up.
        self._idle = idle
        self._starved_seconds = starved_seconds
        self._demote_seconds = demote_seconds
        #: The next pipe process starts idle; the current one runs idle.
        self._spawn_idle = idle
        self._pipe_idle = False
        #: When the pipe process last acknowledged, or frames began waiting (monotonic).
        self._progress_at = 0.0
        self._promoting = False
        self._watchdog: PipeWatchdog | None = None
        self._cond = threading.Condition()
        #: Bytes for the current pipe process that its pipe did not take yet.
        self._out = bytearray()
        #: frame number -> framed bytes, oldest first
        self._unacked: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._blocks: collections.deque[tuple[int, int]] = collections.deque()
        self._next_frame = 1
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._running = False
        self._stopping = False
        self._closing = False
        self._counts = collections.Counter[str]()
        #: Open ``batch`` blocks: while any is open, ``emit`` leaves its bytes in ``_out``.
        self._batches = 0

    @property
    def config(self) -> EmitterConfig:
        return self._config

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Start the pipe process and wait for its first block of sequence numbers."""
        with self._cond:
            if self._running:
                return
            self._running = True
        self._spawn()
        if self._idle:
            self._watchdog = PipeWatchdog(
                self, starved_seconds=self._starved_seconds, demote_seconds=self._demote_seconds
            )
            self._watchdog.start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._blocks:
                left = deadline - time.monotonic()
                if left <= 0 or not self._running:
                    break
                self._cond.wait(left)
            if self._blocks:
                return
        self.stop(timeout=5.0)
        raise EmitterUnavailableError(f"the pipe process did not start within {timeout}s")

    def _spawn(self) -> None:
        """Start a pipe process and queue for it the configuration and every unacknowledged frame,
        in order (never called holding ``_cond``)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(self._pythonpath)
        env[NICE_ENV] = str(self._nice)
        with self._cond:
            idle = self._spawn_idle
        env[IDLE_ENV] = "1" if idle else "0"
        proc = subprocess.Popen(  # noqa: S603 - our own module, no shell
            [self._python, *PIPE_COMMAND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        if proc.stdin is None:  # pragma: no cover - PIPE gives one
            raise EmitterUnavailableError("the pipe process has no stdin")
        os.set_blocking(proc.stdin.fileno(), False)  # emit() never waits on the pipe
        with contextlib.suppress(OSError):  # more frames per write (the rest waits in _out)
            fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._reader = threading.Thread(
            target=self._read, args=(proc,), name="phi-ledger-pipe-reader", daemon=True
        )
        with self._cond:
            self._proc = proc
            self._pipe_idle = idle
            self._progress_at = time.monotonic()
            self._out = bytearray(frame(("config", _config_fields(self._config))))
            for data in self._unacked.values():
                self._out += data
            self._flush()
        self._reader.start()

    def _flush(self) -> None:
        """Write what the pipe takes now (holding ``_cond``); the rest goes when the pipe process
        acknowledges (it has read more) or at the next emit."""
        proc = self._proc
        if proc is None or proc.stdin is None or not self._out:
            return
        try:
            while self._out:
                written = os.write(proc.stdin.fileno(), self._out)
                del self._out[:written]
        except BlockingIOError:
            pass
        except OSError:  # the pipe process is gone: the reader starts another and re-sends
            self._out.clear()

    def stop(self, timeout: float = 20.0) -> bool:
        """Close the pipe, let the pipe process flush and exit; True if nothing was lost."""
        with self._cond:
            if not self._running:
                return True
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        with self._cond:  # every frame acknowledged (a pipe process that dies is replaced)
            while self._unacked:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
            self._closing = True  # from now on a pipe process that exits is not replaced
            proc = self._proc
            if proc is not None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        if proc is not None:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(5.0)
        watchdog = self._watchdog
        if watchdog is not None and watchdog.stop():
            self._watchdog = None
        with self._cond:
            lost = len(self._unacked)
            self._counts["lost"] += lost
            self._unacked.clear()
            self._running = False
        if lost:
            logger.error("pipe process stopped with %d audit event(s) not acknowledged: lost", lost)
        return lost == 0

    def __enter__(self) -> PipeEmitter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ emitting

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Write the frames of the ``emit`` calls inside the block to the pipe process together,
        when the block ends: one write and one pipe process wake-up per batch, not per event."""
        with self._cond:
            self._batches += 1
        try:
            yield
        finally:
            with self._cond:
                self._batches -= 1
                if not self._batches:
                    self._flush()

    def emit(self, event: AuditEvent) -> None:
        """Stamp the event, hand it to the pipe process; thread-safe, waits at most
        ``block_seconds`` for room (then ``EmitterPushbackError``). Inside ``batch`` the
        frame is written when the batch ends."""
        with self._cond:
            if not self._running or self._stopping:
                raise EmitterUnavailableError("the pipe emitter is not running")
            if len(self._unacked) >= self._max_pending or not self._blocks:
                self._flush()  # what a batch held back: the pipe process must see it to make room
                deadline = time.monotonic() + self._block_seconds
                while len(self._unacked) >= self._max_pending or not self._blocks:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._counts["pushback"] += 1
                        raise EmitterPushbackError(
                            f"{len(self._unacked)} audit events wait for the pipe process "
                            f"(max_pending={self._max_pending})"
                        )
                    self._cond.wait(left)
            record = to_record(event)
            if event.producer_id is None or event.producer_seq is None:  # keep a stamp
                record["producer_id"] = self._config.producer_id
                record["producer_seq"] = self._take_number()
            if not self._unacked:
                self._progress_at = time.monotonic()
            frame_no = self._next_frame
            self._next_frame += 1
            data = frame(("event", frame_no, schema_name(event), record))
            self._unacked[frame_no] = data
            self._counts["accepted"] += 1
            self._out += data
            if not self._batches:
                self._flush()

    def _take_number(self) -> int:
        first, count = self._blocks[0]
        if count == 1:
            self._blocks.popleft()
        else:
            self._blocks[0] = (first + 1, count - 1)
        return first

    def health(self) -> dict[str, object]:
        """For the host's health checks: the pipe process's state and the hand-off counters."""
        with self._cond:
            proc = self._proc
            alive = proc is not None and proc.poll() is None
            state = "stopped" if not self._running else ("running" if alive else "restarting")
            priority = "idle" if self._pipe_idle else "normal"
        return {"mode": "pipe", "state": state, "priority": priority, **self.counts}

    @property
    def counts(self) -> dict[str, int]:
        with self._cond:
            return {
                "accepted": self._counts["accepted"],
                "acknowledged": self._counts["acknowledged"],
                "pending": len(self._unacked),
                "refused": self._counts["refused"],
                "lost": self._counts["lost"],
                "pipe_restarts": self._counts["restarts"],
                "pipe_promotions": self._counts["promotions"],
            }

    # ------------------------------------------------------------------ for the watchdog

    def observe(self) -> PipeObservation | None:
        """What the watchdog looks at (``PipeHost``); None once stopped or closing."""
        with self._cond:
            if not self._running or self._closing:
                return None
            return PipeObservation(
                proc=self._proc,
                idle=self._pipe_idle,
                # Frames wait, or the first pipe process has not even sent its numbers yet
                # (one starting on busy cores must not fail the host's start()).
                waiting=bool(self._unacked) or not self._blocks,
                stalled_for=time.monotonic() - self._progress_at,
            )

    def begin_promotion(self, proc: subprocess.Popen[bytes]) -> int | None:
        """The next pipe process starts at normal priority; the frames to re-send, or None
        when ``proc`` is not the current idle pipe process."""
        with self._cond:
            if self._proc is not proc or not self._pipe_idle:
                return None
            self._spawn_idle = False
            self._promoting = True
            self._counts["promotions"] += 1
            return len(self._unacked)

    def mark_idle(self, proc: subprocess.Popen[bytes]) -> None:
        """``proc`` was returned to idle priority: so is the next pipe process."""
        with self._cond:
            if self._proc is proc:
                self._pipe_idle = True
                self._spawn_idle = True

    # ------------------------------------------------------------------ the reader

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        stream = proc.stdout
        while stream is not None:
            try:
                message = read_message(stream)
            except (OSError, pickle.UnpicklingError, EOFError):
                message = None
            if message is None:
                break
            self._on_message(message)
        if proc.poll() is None:  # a garbled stream from a live pipe process: replace it
            proc.kill()
        proc.wait()
        with self._cond:
            self._cond.notify_all()
            if not self._wanted():
                return
            promoted, self._promoting = self._promoting, False
            if not promoted:
                self._counts["restarts"] += 1
            delay = min(_RESTART_MAX, _RESTART_FIRST * 2 ** min(self._counts["restarts"], 5))
        if promoted:
            delay = 0.0  # the watchdog's doing, already logged
        else:
            logger.error(
                "the pipe process exited (%s); restarting it in %.1fs and re-sending %d event(s)",
                proc.returncode,
                delay,
                len(self._unacked),
            )
        time.sleep(delay)
        if not self._wanted():
            return
        try:
            self._spawn()
        except OSError as exc:
            logger.error("cannot restart the pipe process: %r", exc)
            with self._cond:
                self._running = False
                self._cond.notify_all()

    def _wanted(self) -> bool:
        """A pipe process is needed: running, and either not stopping or frames still to deliver."""
        with self._cond:
            return (
                self._running and not self._closing and (not self._stopping or bool(self._unacked))
            )

    def _on_message(self, message: tuple[object, ...]) -> None:
        kind = message[0]
        with self._cond:
            if kind == "ack" and isinstance(message[1], int):
                upto = message[1]
                while self._unacked and next(iter(self._unacked)) <= upto:
                    self._unacked.popitem(last=False)
                    self._counts["acknowledged"] += 1
                self._progress_at = time.monotonic()
                self._flush()
            elif kind == "block" and isinstance(message[1], int) and isinstance(message[2], int):
                self._blocks.append((message[1], message[2]))
            elif kind == "refused":
                self._counts["refused"] += 1
                logger.error(
                    "the pipe process refused an audit event as invalid (field %s)", message[2]
                )
            self._cond.notify_all()


# ---------------------------------------------------------------------- the pipe process


def main() -> None:  # pragma: no cover - runs in the child; tests/integration/test_pipe.py
    """``python -m producers.pipe``: read frames on stdin, emit, acknowledge on stdout."""
    from producers import pipe_process

    pipe_process.main()


if __name__ == "__main__":  # pragma: no cover
    main()
