"""When the consumer asks for checkpoints: after an append, and on a time-based sweep.

Invariant: signing never blocks ingestion. A failed checkpoint is logged and retried by
the next sweep (the lag is visible); the sweep runs at most once per the checkpointer's
``sweep_interval``. Without a checkpointer nothing is signed here.
"""

from __future__ import annotations

import logging
import time

from ledger.audit.ingest import AppendResult, Checkpointing
from ledger.errors import LedgerError

#: The consumer's logger: these lines read as the consumer's, as before the split.
logger = logging.getLogger("consumers.consumer")


class CheckpointCadence:
    """Asks the ``Checkpointing`` port to sign; keeps the time of the last sweep."""

    def __init__(self, checkpointer: Checkpointing | None) -> None:
        self._checkpointer = checkpointer
        self._last_sweep = 0.0

    async def after_append(self, result: AppendResult) -> None:
        """A checkpoint for the batch's log once it appended leaves, when it is due."""
        if self._checkpointer is not None and result.appended:
            try:
                await self._checkpointer.after_append(
                    result.log_id, result.first_leaf + result.appended
                )
            except LedgerError as exc:
                # Never block ingestion on signing; the sweep retries and the lag is visible.
                logger.error("checkpoint for log %d failed: %s", result.log_id, exc)

    async def sweep(self) -> None:
        """Time-based cadence: sign logs whose unsigned leaves have waited long enough."""
        if self._checkpointer is None:
            return
        now = time.monotonic()
        if now - self._last_sweep < self._checkpointer.sweep_interval:
            return
        self._last_sweep = now
        try:
            await self._checkpointer.checkpoint_all_due()
        except LedgerError as exc:
            logger.warning("checkpoint sweep failed: %s", exc)
