"""Parses batches of messages in worker processes, or in the event loop when there are none.

Invariant: parsing is pure (``parsing.parse_batch``), so a batch whose worker died, or
that finds the pool broken, is parsed again in the event loop with the same result; the
workers are spawned (not forked: this process has threads) and warmed up in ``start``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from integrations.atna.parsing import Parsed, parse_batch, register_pickling, warm_up
from integrations.atna.senders import SenderPolicy
from producers import Codec

__all__ = ["ParsePool"]

# One logger name for all the receiver's log lines.
logger = logging.getLogger("integrations.atna.receiver")


class ParsePool:
    """``parse_workers`` worker processes (none: parse in the event loop)."""

    def __init__(
        self, codec: Codec, policy: SenderPolicy, default_facility: str | None, workers: int
    ) -> None:
        self._codec = codec
        self._policy = policy
        self._default_facility = default_facility
        self._workers = workers
        #: The worker processes, while they work.
        self.pool: ProcessPoolExecutor | None = None

    async def start(self) -> None:
        workers = self._workers
        if workers < 1:
            return
        # spawn, not fork: this process has threads (the kept store's, aiokafka's).
        register_pickling()
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=register_pickling,
        )
        try:
            await asyncio.gather(
                *(asyncio.wrap_future(pool.submit(warm_up)) for _ in range(workers))
            )
        except Exception as exc:
            logger.error("ATNA: cannot start parse workers (%r); parsing in the event loop", exc)
            await asyncio.to_thread(
                functools.partial(pool.shutdown, wait=True, cancel_futures=True)
            )
            return
        self.pool = pool

    async def stop(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            await asyncio.to_thread(
                functools.partial(pool.shutdown, wait=True, cancel_futures=True)
            )

    def parse(self, raws: list[bytes | None], senders: list[str]) -> asyncio.Future[list[Parsed]]:
        """Start parsing a batch in a worker (else parse it here, now)."""
        pool = self.pool
        if pool is not None:
            try:
                return asyncio.wrap_future(
                    pool.submit(
                        parse_batch,
                        raws,
                        senders,
                        self._default_facility,
                        self._codec,
                        self._policy,
                    )
                )
            except RuntimeError as exc:  # BrokenProcessPool, or shut down
                logger.error("ATNA: the parse worker failed (%r); parsing in the event loop", exc)
                self.pool = None
                pool.shutdown(wait=False, cancel_futures=True)
        future: asyncio.Future[list[Parsed]] = asyncio.get_running_loop().create_future()
        future.set_result(self.parse_here(raws, senders))
        return future

    def parse_here(self, raws: list[bytes | None], senders: list[str]) -> list[Parsed]:
        """Parse a batch in the event loop."""
        return parse_batch(raws, senders, self._default_facility, self._codec, self._policy)
