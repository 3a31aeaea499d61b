"""Authenticate one poll's records, keeping the producer key registry and seals fresh.

Invariant: every record of a poll gets a verdict from the current key registry
(re-read every ``refresh_seconds``, or at once, at most every ``refresh_min_seconds``,
when a record names a key id not in it) and the seals this consumer has seen or
reads back from the database; a verdict is never weaker than the registry allows.
docs/producer-auth.md has the scheme.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ledger.audit.producerauth import (
    REASON_UNKNOWN_KEY,
    REASON_UNKNOWN_SEAL,
    Authenticated,
    AuthFailure,
    ProducerAuthenticator,
    ProducerSealSource,
    envelope_ref,
)
from ledger.errors import LedgerError

#: The consumer's logger: these warnings read as the consumer's, as before the split.
logger = logging.getLogger("consumers.consumer")

#: One record to authenticate: its topic, its value and its envelope header, if any.
Row = tuple[str, bytes, bytes | None]


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

    async def authenticate_poll(self, rows: list[Row]) -> list[Authenticated | AuthFailure]:
        """A verdict per row, in order; an unknown key re-reads the registry once."""
        auth = self.authenticator
        checked = auth.authenticate_many(rows)
        unknown = any(
            isinstance(v, AuthFailure) and v.reason == REASON_UNKNOWN_KEY for v in checked
        )
        if unknown and await self.refresh_keys(on_unknown_key=True):
            checked = auth.authenticate_many(rows)  # a key registered since the last read
        return await self._with_stored_seals(rows, checked)

    async def _with_stored_seals(
        self,
        rows: list[Row],
        checked: list[Authenticated | AuthFailure],
    ) -> list[Authenticated | AuthFailure]:
        """Records refused as ``unknown_seal`` checked again once their seals are read from
        the database (a seal read before this consumer started, or evicted from its
        cache), each verified like a received one; one query per poll at most. A seal that
        is not there either leaves its records ``unknown_seal``."""
        auth, source = self.authenticator, self._source
        redo = [
            i
            for i, v in enumerate(checked)
            if isinstance(v, AuthFailure) and v.reason == REASON_UNKNOWN_SEAL
        ]
        if not redo:
            return checked
        wanted = {ref[0] for i in redo if (ref := envelope_ref(rows[i][2])) is not None}
        for seal in await source.producer_seals(sorted(wanted)):
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
