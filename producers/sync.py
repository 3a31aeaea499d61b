"""A synchronous, thread-safe facade over the async ``Emitter``, for hosts without asyncio.

Invariant: ``emit`` validates and encodes in the calling thread (an invalid event raises
there and is never queued), waits at most ``block_seconds`` for room in a bounded queue
(then ``EmitterPushbackError``), and never waits on Kafka; one background thread runs the
real ``Emitter``, hands events over in the order ``emit`` accepted them, and retries
transient refusals in order. Nothing accepted is dropped except what is counted and
logged as ``lost``. Design, order and lifecycle: docs/design/emitter.md ("The threaded
facade").
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from enum import Enum
from types import TracebackType
from typing import Final, Self, TypeVar

from producers.codec import Codec, PreparedEvent
from producers.emitter import MAX_EVENT_BYTES, Emitter, EmitterConfig, EmitterHealth
from producers.errors import (
    EmitterPushbackError,
    EmitterUnavailableError,
    EventValidationError,
    ProducerError,
)
from producers.events import AuditEvent, check_producer_id
from producers.handoff import HandOff

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Default bound on events accepted by ``emit`` and not yet taken by the ``Emitter``.
DEFAULT_MAX_PENDING: Final = 10_000
#: Default longest ``emit`` waits for room in the queue before ``EmitterPushbackError``.
DEFAULT_BLOCK_SECONDS: Final = 0.05
#: Most events handed to the ``Emitter`` at once (their fsyncs are grouped while spooling).
_BATCH: Final = 64
#: The largest sequence number's encoding (9 bytes): an event that fits with it fits.
_PROBE_SEQ: Final = 2**62
_RETRY_FIRST: Final = 0.05
_RETRY_MAX: Final = 2.0
#: Slack on top of ``stop_timeout_seconds`` for handing the queue over and closing.
_STOP_SLACK: Final = 10.0


class _State(Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class SyncEmitter:
    """``with SyncEmitter(config) as em: em.emit(event)`` from any thread."""

    def __init__(
        self,
        config: EmitterConfig,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        block_seconds: float = DEFAULT_BLOCK_SECONDS,
        codec: Codec | None = None,
        thread_name: str = "phi-ledger-emitter",
    ) -> None:
        if max_pending <= 0:
            raise ValueError("max_pending must be positive")
        if block_seconds < 0:
            raise ValueError("block_seconds must not be negative")
        self._config = config
        self._codec = codec or Codec()
        self._max_pending = max_pending
        self._block_seconds = block_seconds
        self._thread_name = thread_name
        self._cond = threading.Condition()
        #: The queue and its counts; guarded by ``_cond``, like ``_state``.
        self._handoff = HandOff()
        self._state = _State.NEW
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._emitter = Emitter(config, codec=self._codec)
        self._ready: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._give_up_at: float | None = None

    @property
    def config(self) -> EmitterConfig:
        return self._config

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float | None = None) -> None:
        """Start the background thread and the ``Emitter``; idempotent.

        Raises what ``Emitter.start`` raised (without a spool: Kafka unreachable), or
        ``TimeoutError`` if it did not start within ``timeout`` (default: the connect
        timeout plus a few seconds), or ``EmitterUnavailableError`` once stopped.
        """
        with self._cond:
            if self._state is _State.RUNNING:
                return
            if self._state in (_State.STOPPING, _State.STOPPED):
                raise EmitterUnavailableError("this SyncEmitter was stopped; create a new one")
            if self._state is _State.NEW:
                self._state = _State.STARTING
                self._thread = threading.Thread(
                    target=self._run, name=self._thread_name, daemon=True
                )
                self._thread.start()
        limit = self._config.connect_timeout_seconds + 5.0 if timeout is None else timeout
        if not self._started.wait(limit):
            raise TimeoutError(f"the emitter did not start within {limit}s")
        error = self._start_error
        if error is not None:
            if self._thread is not None:
                self._thread.join(5.0)
            raise error
        atexit.register(self._stop_at_exit)

    def stop(self, timeout: float | None = None) -> bool:
        """Refuse new events, flush what is pending (to Kafka, else the spool), stop.

        Idempotent. Returns True when everything accepted was handed to the ``Emitter``
        and the thread ended within ``timeout`` (default ``stop_timeout_seconds`` plus
        10 s); False otherwise (what was still queued is logged and counted as lost).
        """
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("SyncEmitter.stop() cannot be called from the emitter's thread")
        limit = self._config.stop_timeout_seconds + _STOP_SLACK if timeout is None else timeout
        with self._cond:
            lost_before = self._handoff.lost
            if self._state is _State.NEW:
                self._state = _State.STOPPED
                return True
            if self._state in (_State.STARTING, _State.RUNNING):
                self._state = _State.STOPPING
                self._give_up_at = time.monotonic() + max(0.0, limit - 1.0)
                self._cond.notify_all()  # callers waiting for room get EmitterUnavailableError
        with contextlib.suppress(Exception):
            atexit.unregister(self._stop_at_exit)
        self._started.wait(limit)
        loop, stop_requested = self._loop, self._stop_requested
        if loop is not None and stop_requested is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stop_requested.set)
        thread = self._thread
        if thread is not None:
            thread.join(limit)
            if thread.is_alive():
                logger.error(
                    "the emitter thread did not stop within %ss; %d event(s) not handed over",
                    limit,
                    self._handoff.pending,
                )
                return False
        with self._cond:
            self._state = _State.STOPPED
            return self._handoff.lost == lost_before and self._start_error is None

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ emitting

    def check(self, event: AuditEvent) -> None:
        """Raise ``EventValidationError`` if the ``Emitter`` would refuse the event."""
        self._prepare(event)

    def _prepare(self, event: AuditEvent) -> PreparedEvent:
        prepared = self._codec.prepare(event)  # validates every field
        producer_id = prepared.producer_id
        if producer_id is None:
            producer_id = self._config.producer_id
            check_producer_id(producer_id)
        size = prepared.encoded_size(producer_id, _PROBE_SEQ)
        if size > MAX_EVENT_BYTES:
            raise EventValidationError(
                f"encoded event is {size} bytes; at most {MAX_EVENT_BYTES} are accepted",
                field="<event>",
            )
        return prepared

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """For callers that also drive a ``PipeEmitter``: emits are queued one by one
        here, so a batch changes nothing."""
        return contextlib.nullcontext()

    def emit(self, event: AuditEvent) -> None:
        """Validate the event here and queue it for the emitter thread; thread-safe.

        Returns once the event is queued (it is then sent, or spooled, in the
        background). Raises ``EventValidationError`` (nothing queued),
        ``EmitterPushbackError`` when ``max_pending`` events are still waiting after
        ``block_seconds``, or ``EmitterUnavailableError`` before ``start`` or after ``stop``.
        """
        prepared = self._prepare(event)
        with self._cond:
            self._require_running()
            if self._handoff.pending >= self._max_pending:
                deadline = time.monotonic() + self._block_seconds
                while self._handoff.pending >= self._max_pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise EmitterPushbackError(
                            f"{self._handoff.pending} audit events are still waiting for the "
                            f"emitter after {self._block_seconds}s "
                            f"(max_pending={self._max_pending})"
                        )
                    self._cond.wait(left)
                    self._require_running()
            schedule = self._handoff.put(prepared)
            loop, ready = self._loop, self._ready
        if schedule and loop is not None and ready is not None:
            loop.call_soon_threadsafe(ready.set)

    def _require_running(self) -> None:
        if self._state is not _State.RUNNING:
            if self._state in (_State.STOPPING, _State.STOPPED):
                raise EmitterUnavailableError("the emitter is stopped")
            raise EmitterUnavailableError("the emitter is not started")

    # ------------------------------------------------------------------ observing

    @property
    def pending(self) -> int:
        """Events accepted by ``emit`` that the ``Emitter`` has not taken yet."""
        with self._cond:
            return self._handoff.pending

    @property
    def counts(self) -> dict[str, int]:
        """accepted (by ``emit``), delivered (to the ``Emitter``), pending, lost."""
        with self._cond:
            return self._handoff.counts()

    def health(self, timeout: float = 1.0) -> EmitterHealth:
        """The ``Emitter``'s health snapshot (taken on its own thread while running)."""
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError, TimeoutError):
                return self._call(self._health(), timeout)
        return self._emitter.health()

    async def _health(self) -> EmitterHealth:
        return self._emitter.health()

    def flush(self, timeout: float) -> None:
        """Wait until Kafka acknowledged every event accepted so far (spooled ones too).

        Raises ``TimeoutError`` if that takes longer than ``timeout``.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._handoff.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self._handoff.pending} event(s) still queued after {timeout}s"
                    )
                self._cond.wait(left)
        self._call(self._emitter.flush(), max(0.0, deadline - time.monotonic()))

    def _call(self, coro: Coroutine[object, object, T], timeout: float) -> T:
        loop = self._loop
        if loop is None or self._state not in (_State.RUNNING, _State.STOPPING):
            coro.close()
            raise EmitterUnavailableError("the emitter is not running")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    # ------------------------------------------------------------------ the emitter thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        except BaseException as exc:  # never let the thread die silently
            logger.exception("the emitter thread failed")
            if not self._started.is_set():
                self._start_error = exc
                self._started.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            with self._cond:
                self._loop = None
                self._cond.notify_all()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._ready = asyncio.Event()
        self._stop_requested = asyncio.Event()
        try:
            await self._emitter.start()
        except BaseException as exc:
            self._start_error = exc
            with self._cond:
                self._state = _State.STOPPED
            self._started.set()
            return
        with self._cond:
            self._loop = loop
            if self._state is _State.STARTING:
                self._state = _State.RUNNING
            if self._handoff:
                self._ready.set()
        self._started.set()
        pump = asyncio.create_task(self._pump())
        try:
            await self._stop_requested.wait()
            self._ready.set()
            await self._wait_drained()
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await self._emitter.stop()
            self._count_abandoned()

    async def _wait_drained(self) -> None:
        while True:
            with self._cond:
                if self._handoff.pending == 0:
                    return
            if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                return
            await asyncio.sleep(0.01)

    def _count_abandoned(self) -> None:
        with self._cond:
            left = self._handoff.abandon_all()
            if left:
                self._cond.notify_all()
        if left:
            logger.error(
                "emitter %s stopped with %d accepted audit event(s) not handed over; they are lost",
                self._config.producer_id,
                left,
            )

    async def _pump(self) -> None:
        ready = self._ready
        if ready is None:  # pragma: no cover - set by _main before the pump starts
            return
        while True:
            await ready.wait()
            ready.clear()
            while True:
                with self._cond:
                    batch = self._handoff.take(_BATCH)
                    if not batch:
                        break
                await self._deliver(batch)

    async def _deliver(self, batch: list[PreparedEvent]) -> None:
        """Hand a batch to the ``Emitter`` in order; retry transient refusals in order."""
        remaining = batch
        delay = _RETRY_FIRST
        while remaining:
            # gather starts the emits in order and the Emitter serialises them in that order.
            results = await asyncio.gather(
                *(self._emitter.emit_prepared(event) for event in remaining),
                return_exceptions=True,
            )
            retry, invalid = self._sort_results(remaining, results)
            giving_up = (
                self._give_up_at is not None and time.monotonic() > self._give_up_at and retry
            )
            done = len(remaining) - len(retry)
            with self._cond:
                self._handoff.settle(done=done, invalid=invalid)
                self._cond.notify_all()
            if not retry:
                return
            if giving_up:
                self._abandon(retry)
                return
            first = next(r for r in results if isinstance(r, BaseException))
            log = logger.warning if delay == _RETRY_FIRST else logger.debug
            log(
                "emitter %s refused %d event(s) (%s); retrying in order",
                self._config.producer_id,
                len(retry),
                type(first).__name__,
            )
            await asyncio.sleep(delay)
            delay = min(_RETRY_MAX, delay * 2)
            remaining = retry

    def _sort_results(
        self, events: list[PreparedEvent], results: list[int | BaseException]
    ) -> tuple[list[PreparedEvent], int]:
        """The events to retry (a transient refusal), in order, and how many were refused
        as invalid (logged: they are lost); anything else ends the hand-over."""
        retry: list[PreparedEvent] = []
        invalid = 0
        for event, result in zip(events, results, strict=True):
            if isinstance(result, int):
                continue
            if isinstance(result, EventValidationError):
                invalid += 1
                logger.error(
                    "emitter %s refused an accepted event as invalid (field %s); it is lost",
                    self._config.producer_id,
                    result.field,
                )
            elif isinstance(result, ProducerError | OSError):
                retry.append(event)
            else:  # CancelledError and the like: stop handing over, count as lost
                raise result
        return retry, invalid

    def _abandon(self, retry: list[PreparedEvent]) -> None:
        """Stopping, out of time: the events still refused are lost (counted, logged)."""
        with self._cond:
            self._handoff.give_up(len(retry))
            self._cond.notify_all()
        logger.error(
            "emitter %s is stopping and could not hand %d event(s) over; they are lost",
            self._config.producer_id,
            len(retry),
        )
