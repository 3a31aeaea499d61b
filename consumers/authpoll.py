"""Authenticate one poll's records, keeping the producer key registry and seals fresh.

Invariant: every record of a poll gets a verdict from the current key registry
(re-read every ``refresh_seconds``, or at once, at most every ``refresh_min_seconds``,
when a record names a key id not in it) and the seals this consumer has seen or
reads back from the database; a verdict is never weaker than the registry allows.
A seal this consumer verified stays at hand (``in_flight``) until the batch that
carried it is committed, since only then can the database give it back: the
authenticator's cache may evict it meanwhile, and ``unknown_seal`` is for good.
docs/producer-auth.md has the scheme.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ledger.audit.producerauth import (
    REASON_UNKNOWN_KEY,
    REASON_UNKNOWN_SEAL,
    Authenticated,
    AuthFailure,
    ProducerAuthenticator,
    ProducerSealSource,
    Seal,
    envelope_ref,
)
from ledger.errors import LedgerError

#: The consumer's logger: these warnings read as the consumer's, as before the split.
logger = logging.getLogger("consumers.consumer")

T = TypeVar("T")

#: One record to authenticate: its topic, its value and its envelope header, if any.
Row = tuple[str, bytes, bytes | None]

#: The most seals kept for uncommitted batches. Two polls are in hand at most, so this is
#: never reached in practice; a batch dropped at a rebalance leaves its seals here until
#: newer ones push them out (they are read again with their records).
MAX_IN_FLIGHT_SEALS = 65_536


class PollAuthenticator:
    """The consumer's producer authentication: a ``ProducerAuthenticator`` kept fresh."""

    def __init__(
        self,
        *,
        source: ProducerSealSource,
        refresh_seconds: float,
        refresh_min_seconds: float,
    ) -> None:
        self.authenticator = ProducerAuthenticator()
        self._source = source
        self._refresh_seconds = refresh_seconds
        self._refresh_min_seconds = refresh_min_seconds
        self._keys_read_at: float | None = None
        #: Seals verified here whose carrying batch is not committed yet, by seal id.
        self.in_flight: OrderedDict[bytes, Seal] = OrderedDict()

    def committed(self, seals: Iterable[Seal | None]) -> None:
        """The batch that carried these seals is committed (they are in the database)."""
        for seal in seals:
            if seal is not None:
                self.in_flight.pop(seal.seal_id, None)

    def _hold(self, verdicts: Iterable[Authenticated | AuthFailure]) -> None:
        for verdict in verdicts:
            seal = verdict.seal
            if seal is not None:
                self.in_flight[seal.seal_id] = seal
                if len(self.in_flight) > MAX_IN_FLIGHT_SEALS:
                    self.in_flight.popitem(last=False)

    async def authenticate_poll(self, rows: list[Row]) -> list[Authenticated | AuthFailure]:
        """A verdict per row, in order; an unknown key re-reads the registry once."""
        auth = self.authenticator
        checked = auth.authenticate_many(rows)
        unknown = any(
            isinstance(v, AuthFailure) and v.reason == REASON_UNKNOWN_KEY for v in checked
        )
        if unknown and await self.refresh_keys(on_unknown_key=True):
            checked = auth.authenticate_many(rows)  # a key registered since the last read
        checked = await self._with_stored_seals(rows, checked)
        self._hold(checked)
        return checked

    async def _with_stored_seals(
        self,
        rows: list[Row],
        checked: list[Authenticated | AuthFailure],
    ) -> list[Authenticated | AuthFailure]:
        """Records refused as ``unknown_seal`` checked again with their seals from the batches
        in flight, else read from the database (a seal read before this consumer started,
        or evicted from its cache), each verified like a received one; one query per poll
        at most. A seal found in neither leaves its records ``unknown_seal``."""
        auth, source = self.authenticator, self._source
        redo = [
            i
            for i, v in enumerate(checked)
            if isinstance(v, AuthFailure) and v.reason == REASON_UNKNOWN_SEAL
        ]
        if not redo:
            return checked
        wanted = {ref[0] for i in redo if (ref := envelope_ref(rows[i][2])) is not None}
        held = [self.in_flight[sid] for sid in wanted if sid in self.in_flight]
        missing = sorted(wanted - {seal.seal_id for seal in held})
        stored = list(await _until_read(lambda: source.producer_seals(missing))) if missing else []
        for seal in [*held, *stored]:
            try:
                auth.add_seal(seal)
            except AuthFailure as exc:
                logger.warning("a stored producer seal does not verify (%s)", exc.reason)
        out = list(checked)
        for i, verdict in zip(redo, auth.authenticate_many([rows[i] for i in redo]), strict=True):
            out[i] = verdict
        return out

    async def refresh_keys(self, *, on_unknown_key: bool) -> bool:
        """Re-read the key registry when it is due (``producer_keys_refresh_seconds``), or
        when a record named a key id not in it (a key registered since the last read):
        then at most once per ``producer_keys_refresh_min_seconds``, waiting out the rest
        of that interval, so records naming unknown keys slow this consumer to one poll
        per interval at worst. True when the registry was read."""
        age = None if self._keys_read_at is None else time.monotonic() - self._keys_read_at
        if not on_unknown_key and age is not None:
            if age < self._refresh_seconds:
                return False
        elif age is not None:
            wait = self._refresh_min_seconds - age
            if wait > 0:
                await asyncio.sleep(wait)
        if on_unknown_key:
            # A verdict of unknown_key is for good: wait for the registry rather than
            # refuse records of a key registered just before the database went away.
            keys = await _until_read(self._source.producer_keys)
        else:
            try:
                keys = await self._source.producer_keys()
            except (LedgerError, OSError) as exc:
                if self._keys_read_at is None:
                    raise
                logger.warning("cannot re-read the producer key registry (%s)", exc)
                return False
        self.authenticator.replace_keys(keys)
        self._keys_read_at = time.monotonic()
        return True


async def _until_read(read: Callable[[], Awaitable[T]]) -> T:
    """``read()``, tried again while the database cannot answer (0.5 s doubling to 10 s):
    a record's verdict must not depend on an outage. The consumer needs the database to
    append anyway, and stopping cancels the wait."""
    delay = 0.5
    while True:
        try:
            return await read()
        except (LedgerError, OSError) as exc:
            logger.warning(
                "producer authentication cannot read the ledger (%s); retrying in %.1fs",
                type(exc).__name__,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
