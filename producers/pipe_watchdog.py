"""The pipe process's priority watchdog: promote a starving idle pipe process, demote it
again once it keeps up.

Invariant: the watchdog only observes the emitter (``PipeHost.observe``) and acts through
it (``begin_promotion``, ``mark_idle``); it owns its thread, its stop event, its
``PriorityPolicy`` and its last run-queue sample. Starvation cannot stall the audit
trail: design in docs/design/pipe.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Final, Literal, Protocol

#: The emitter's logger: these lines read as the pipe emitter's, as before the split.
logger = logging.getLogger("producers.pipe")

__all__ = ["PipeHost", "PipeObservation", "PipeWatchdog", "PriorityPolicy"]

#: How often the watchdog looks at the pipe process's acknowledgements and CPU waits.
WATCH_EVERY: Final = 0.25
#: A pipe process is starving when it spent at least this share of the last look waiting for
#: a CPU (run-queue delay over wall time).
_STARVED_SHARE: Final = 0.5

Verdict = Literal["promote", "demote"]


class PriorityPolicy:
    """When to promote an idle pipe process, and when to let a promoted one go back to
    idle.

    Pure: ``decide`` gets what the watchdog observed and says ``"promote"``,
    ``"demote"`` or ``None``. An idle pipe process is promoted when frames have waited
    unacknowledged for more than ``starved_seconds`` and it spent at least half of the
    last look on the run queue (without schedstat, waiting is taken as starving). A
    promoted pipe process is demoted once it has kept up (nothing waiting, or
    acknowledged within the last look) for ``demote_seconds``. A pipe process starved
    again soon after a demotion (within ten of those waits) doubles the wait, up to
    ``MAX_DEMOTE_SECONDS``:
    on a host busy for hours the pipe process is not replaced every half minute.
    """

    MAX_DEMOTE_SECONDS: Final = 1800.0

    def __init__(self, *, starved_seconds: float, demote_seconds: float) -> None:
        self._starved_seconds = starved_seconds
        self._base_demote = demote_seconds
        self.demote_seconds = demote_seconds
        self._kept_up_since: float | None = None
        self._demoted_at: float | None = None

    def decide(
        self,
        *,
        now: float,
        idle: bool,
        waiting: bool,
        stalled_for: float,
        run_queue_share: float | None,
        schedstat: bool,
    ) -> Verdict | None:
        if idle:
            self._kept_up_since = None
            if run_queue_share is not None:
                starving = run_queue_share >= _STARVED_SHARE
            else:
                starving = not schedstat
            if not (waiting and stalled_for > self._starved_seconds and starving):
                return None
            recently = (
                self._demoted_at is not None and now - self._demoted_at < 10 * self.demote_seconds
            )
            self.demote_seconds = (
                min(self.demote_seconds * 2, self.MAX_DEMOTE_SECONDS)
                if recently
                else self._base_demote
            )
            return "promote"
        if waiting and stalled_for >= WATCH_EVERY:
            self._kept_up_since = None
            return None
        if self._kept_up_since is None:
            self._kept_up_since = now
        if now - self._kept_up_since < self.demote_seconds:
            return None
        self._kept_up_since = None
        self._demoted_at = now
        return "demote"


@dataclass(frozen=True, slots=True, kw_only=True)
class PipeObservation:
    """What the emitter shows the watchdog at one look."""

    proc: subprocess.Popen[bytes] | None
    #: The current pipe process runs at idle priority.
    idle: bool
    #: Frames wait, or the first pipe process has not sent its numbers yet.
    waiting: bool
    #: Seconds since the pipe process last acknowledged, or frames began waiting.
    stalled_for: float


class PipeHost(Protocol):
    """The emitter, as the watchdog sees it."""

    def observe(self) -> PipeObservation | None:
        """The state at this look; None once the emitter stops or closes."""
        ...

    def begin_promotion(self, proc: subprocess.Popen[bytes]) -> int | None:
        """Mark ``proc`` as being replaced at normal priority; the frames pending, or None
        when ``proc`` is not the current idle pipe process."""
        ...

    def mark_idle(self, proc: subprocess.Popen[bytes]) -> None:
        """Record that ``proc`` (if still current) and the next pipe process run idle."""
        ...


class PipeWatchdog:
    """Feeds the priority policy what it needs four times a second; acts on its word."""

    def __init__(self, host: PipeHost, *, starved_seconds: float, demote_seconds: float) -> None:
        self._host = host
        self._policy = PriorityPolicy(
            starved_seconds=starved_seconds, demote_seconds=demote_seconds
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="phi-ledger-pipe-watchdog", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> bool:
        """End the watchdog and wait (up to 5 s) for it; False (nothing done) when called
        from the watchdog's own thread."""
        if self._thread is threading.current_thread():
            return False
        self._stop.set()
        self._thread.join(5.0)
        return True

    def _watch(self) -> None:
        last: tuple[int, float, int] | None = None  # (pid, wall, run-queue ns)
        # Whether this kernel reports run-queue waits at all (asked once: a pipe process's own file
        # can be unreadable for a moment, while it starts or ends, and that is no answer).
        schedstat = run_queue_ns(os.getpid()) is not None
        while not self._stop.wait(WATCH_EVERY):
            seen = self._host.observe()
            if seen is None:
                return
            proc = seen.proc
            if proc is None or proc.poll() is not None:
                last = None
                continue
            now = time.monotonic()
            queued = run_queue_ns(proc.pid)
            share: float | None = None
            if last is not None and last[0] == proc.pid and queued is not None:
                share = (queued - last[2]) / 1e9 / max(now - last[1], 1e-3)
            last = None if queued is None else (proc.pid, now, queued)
            verdict = self._policy.decide(
                now=now,
                idle=seen.idle,
                waiting=seen.waiting,
                stalled_for=seen.stalled_for,
                run_queue_share=share,
                schedstat=schedstat,
            )
            if verdict == "promote":
                self._promote(proc, seen.stalled_for, share)
                last = None
            elif verdict == "demote":
                self._demote(proc, self._policy.demote_seconds)

    def _promote(self, proc: subprocess.Popen[bytes], since: float, share: float | None) -> None:
        """Replace a starving idle pipe process with one at normal priority."""
        pending = self._host.begin_promotion(proc)
        if pending is None:
            return
        logger.warning(
            "the idle-priority pipe process acknowledged nothing for %.1fs while waiting for a CPU "
            "(%s of the time); replacing it with one at normal priority (%d event(s) re-sent)",
            since,
            "unknown share" if share is None else f"{share:.0%}",
            pending,
        )
        with contextlib.suppress(OSError):
            proc.kill()

    def _demote(self, proc: subprocess.Popen[bytes], kept_up: float) -> None:
        """Back to idle priority: every thread of the pipe process (a lower priority needs no
        privilege)."""
        try:
            for task in os.listdir(f"/proc/{proc.pid}/task"):
                os.sched_setscheduler(int(task), os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError) as exc:
            logger.warning("cannot return the pipe process to idle priority: %r", exc)
            return
        self._host.mark_idle(proc)
        logger.info("the pipe process kept up for %.0fs; back to idle priority", kept_up)


def run_queue_ns(pid: int) -> int | None:
    """How long the process's main thread has waited for a CPU (ns), or None where the
    kernel does not say (``/proc/<pid>/schedstat``, CONFIG_SCHED_INFO)."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as stat:
            return int(stat.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
