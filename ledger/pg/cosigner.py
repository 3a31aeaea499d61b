"""Submitting each log's newest checkpoint to the configured witnesses (C2SP tlog-witness)
and keeping the cosignatures they return.

Invariant: the cosigner never holds a database connection across a witness request and
never raises out of ``sweep`` (a failure is logged, kept in ``status`` and retried on the
next sweep), so no witness can slow or stop appending or signing. A cosignature is stored
only after it verified with the configured witness key over the checkpoint submitted. The
proof sent is always from the size the witness holds (its last cosigned size here, or the
size a 409 answer names), so a witness is never asked to roll back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import asyncpg

from ledger.errors import LedgerError
from ledger.log.witness import (
    ADD_CHECKPOINT_PATH,
    Conflict,
    Cosigned,
    Witness,
    WitnessTransport,
    add_checkpoint_body,
    read_answer,
)
from ledger.pg import sql, tree
from ledger.pg.pool import transient_as_unavailable

logger = logging.getLogger(__name__)

_MAX_CONFLICT_RETRIES: Final = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class CosignOutcome:
    """What one submission of one log's checkpoint to one witness came to."""

    witness: str
    log_id: int
    origin: str
    size: int
    ok: bool
    detail: str
    alarm: bool = False  # the witness holds a checkpoint beyond ours: rollback or split view


class Cosigner:
    """Submits checkpoints to ``witnesses`` over ``transport``; one instance per process."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        witnesses: Sequence[Witness],
        transport: WitnessTransport,
        timeout: float = 10.0,
    ) -> None:
        self._pool = pool
        self._witnesses = tuple(witnesses)
        self._transport = transport
        self._timeout = timeout
        self._known: dict[tuple[str, int], int] = {}  # (witness key, log) -> its size
        self._tiles = tree.TileCache()
        self.status: dict[tuple[str, int], CosignOutcome] = {}

    async def sweep(self) -> list[CosignOutcome]:
        """Submit every log's newest checkpoint to every witness that lacks it."""
        done = await asyncio.gather(*(self._guarded(w) for w in self._witnesses))
        return [outcome for outcomes in done for outcome in outcomes]

    async def _guarded(self, witness: Witness) -> list[CosignOutcome]:
        """One witness's sweep (witnesses are swept side by side: a slow one delays none
        of the others); a database failure is logged, and retried next sweep."""
        try:
            return await self._sweep_witness(witness)
        except LedgerError as exc:
            logger.warning("witness %s: cannot read checkpoints: %s", witness.name, exc)
            return []

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Sweep every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    async def _sweep_witness(self, witness: Witness) -> list[CosignOutcome]:
        with transient_as_unavailable():
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(sql.COSIGN_WORK, witness.name, witness.key.key_id)
        outcomes = []
        for r in rows:
            log_id, size = int(r["log_id"]), int(r["size"])
            if r["cosigned"] is not None and int(r["cosigned"]) >= size:
                continue
            key = (witness.key.key, log_id)
            old = self._known.get(key, 0 if r["cosigned"] is None else int(r["cosigned"]))
            try:
                outcome = await self._submit(witness, log_id, r["origin"], old, size, r["note"])
            except LedgerError as exc:
                outcome = CosignOutcome(
                    witness=witness.name, log_id=log_id, origin=r["origin"], size=size,
                    ok=False, detail=str(exc),
                )  # fmt: skip
            _log_change(self.status.get(key), outcome)
            self.status[key] = outcome
            outcomes.append(outcome)
        return outcomes

    async def _submit(
        self, witness: Witness, log_id: int, origin: str, old: int, size: int, note: str
    ) -> CosignOutcome:
        def outcome(ok: bool, detail: str) -> CosignOutcome:
            return CosignOutcome(
                witness=witness.name, log_id=log_id, origin=origin, size=size, ok=ok,
                detail=detail,
            )  # fmt: skip

        key = (witness.key.key, log_id)
        for _ in range(_MAX_CONFLICT_RETRIES):
            if old > size:
                return replace(
                    outcome(False, f"witness holds size {old}, beyond our {size}"), alarm=True
                )
            proof = await self._proof(log_id, old, size)
            answer = await self._transport.post(
                witness.url + ADD_CHECKPOINT_PATH,
                add_checkpoint_body(old, proof, note),
                timeout=self._timeout,
            )
            result = read_answer(answer, note, witness.key)
            if isinstance(result, Cosigned):
                await self._store(log_id, size, result)
                self._known[key] = size
                return outcome(True, "cosigned")
            if isinstance(result, Conflict):
                self._known[key] = old = result.known_size
                continue
            return outcome(False, f"HTTP {result.status}: {result.reason}")
        return outcome(False, f"witness answered 409 (it holds size {old}) twice")

    async def _proof(self, log_id: int, old: int, size: int) -> tuple[bytes, ...]:
        if old == 0 or old == size:
            return ()
        with transient_as_unavailable():
            async with self._pool.acquire() as conn:
                current = await tree.log_size(conn, log_id)
                return await tree.consistency_hashes(conn, log_id, old, size, current, self._tiles)

    async def _store(self, log_id: int, size: int, result: Cosigned) -> None:
        with transient_as_unavailable():
            async with self._pool.acquire() as conn:
                for c in result.cosignatures:
                    await conn.execute(
                        sql.INSERT_COSIGNATURE, log_id, size, c.name, c.key_id, c.timestamp,
                        c.line,
                    )  # fmt: skip


def _log_change(before: CosignOutcome | None, now: CosignOutcome) -> None:
    """Log when a submission starts failing, fails differently, or recovers (not once a
    sweep: the ongoing state is on /metrics)."""
    if now.ok:
        if before is not None and not before.ok:
            logger.info("witness %s cosigns %s again", now.witness, now.origin)
        return
    if before is not None and not before.ok and before.detail == now.detail:
        return
    if now.alarm:
        logger.critical(
            "witness %s %s of log %s: it saw a checkpoint this ledger does not have "
            "(a rollback after a restore, or a split view); nothing is submitted",
            now.witness, now.detail, now.origin,
        )  # fmt: skip
        return
    logger.warning(
        "witness %s did not cosign %s at size %d (retried every sweep): %s",
        now.witness, now.origin, now.size, now.detail,
    )  # fmt: skip
