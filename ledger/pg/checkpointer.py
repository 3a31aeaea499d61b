"""Issuing signed checkpoints on a cadence, never one inconsistent with the last.

Invariant: before signing size n, the checkpointer opens the latest stored
checkpoint with its own verifiers (so a tampered row is not trusted), proves
from the stored tiles that the size-n tree extends it (RFC 9162 consistency),
and only then signs; on any failure it signs nothing and raises
``VerificationError``. Checkpoints are issued when ``every_leaves`` new leaves
or ``every_ms`` milliseconds have accumulated, whichever comes first. A closed log (its
partition moved on to a later period) is sealed: a checkpoint at its final size, then a
signed seal naming it and the next log (``ledger.log.seal``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from ledger.errors import MalformedInputError, VerificationError
from ledger.log.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.log.merkle import verify_consistency
from ledger.log.note import Signer
from ledger.log.seal import Seal, sign_seal
from ledger.log.types import RootHash
from ledger.pg import sql, tree
from ledger.pg.pool import transient_as_unavailable

logger = logging.getLogger(__name__)

#: How often the sweep asks pg_partman to make the months ahead (it makes 3 ahead).
MAINTENANCE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointPolicy:
    every_leaves: int = 100_000
    every_ms: int = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCheckpoint:
    log_id: int
    size: int
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedSeal:
    """A closed log's seal: its final size, and the note signed over it."""

    log_id: int
    size: int
    note: str


class Checkpointer:
    """Signs checkpoints for logs on a pool whose role may INSERT into ``checkpoints``."""

    def __init__(
        self, *, pool: asyncpg.Pool, signers: Sequence[Signer], policy: CheckpointPolicy
    ) -> None:
        if not signers:
            raise ValueError("at least one signer is required")
        self._pool = pool
        self._signers = tuple(signers)
        self._verifiers = tuple(s.verifier for s in signers)
        self._policy = policy
        self._last_attempt: dict[int, float] = {}
        self._signed: dict[int, int] = {}
        self._tiles = tree.TileCache()
        self._maintained_at: float | None = None

    async def after_append(self, log_id: int, size: int) -> IssuedCheckpoint | None:
        """Cheap hook for the consumer: touches the database only when a checkpoint is due."""
        known = self._signed.get(log_id)
        if known is not None and not self.due(log_id, unsigned_leaves=size - known):
            return None
        issued = await self.checkpoint(log_id)
        return issued

    @property
    def policy(self) -> CheckpointPolicy:
        return self._policy

    @property
    def sweep_interval(self) -> float:
        return self._policy.every_ms / 1000

    def due(self, log_id: int, *, unsigned_leaves: int) -> bool:
        if unsigned_leaves <= 0:
            return False
        if unsigned_leaves >= self._policy.every_leaves:
            return True
        last = self._last_attempt.get(log_id)
        return last is None or (time.monotonic() - last) * 1000 >= self._policy.every_ms

    async def checkpoint(
        self, log_id: int, *, force: bool = False, size: int | None = None
    ) -> IssuedCheckpoint | None:
        """Sign the log's current size if due (or ``force``); return what was issued."""
        with transient_as_unavailable():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(sql.LOCK_CHECKPOINT, log_id)
                return await self._checkpoint_locked(conn, log_id, force=force, size=size)

    async def _checkpoint_locked(
        self, conn: tree.Conn, log_id: int, *, force: bool, size: int | None
    ) -> IssuedCheckpoint | None:
        log = await conn.fetchrow(sql.LOG_BY_ID, log_id)
        if log is None:
            raise VerificationError(f"no log {log_id}")
        current = await tree.log_size(conn, log_id)
        target = current if size is None else min(size, current)
        latest = await conn.fetchrow(sql.LATEST_CHECKPOINT, log_id)
        signed_size = 0 if latest is None else int(latest["size"])
        self._signed[log_id] = signed_size
        if target < signed_size or (target == signed_size and (latest or not force)):
            return None  # (an empty log gets a checkpoint only when forced: its seal)
        if not force and not self.due(log_id, unsigned_leaves=target - signed_size):
            return None
        self._last_attempt[log_id] = time.monotonic()
        root = await tree.root_at(conn, log_id, target, current, self._tiles)
        if latest is not None:
            await self._check_extends(
                conn,
                log_id,
                origin=log["origin"],
                note=latest["note"],
                signed_size=signed_size,
                target=target,
                current=current,
                root=root,
            )
        note = sign_checkpoint(
            Checkpoint(origin=log["origin"], size=target, root_hash=root), self._signers
        )
        await conn.execute(sql.INSERT_CHECKPOINT, log_id, target, root, note)
        self._signed[log_id] = target
        return IssuedCheckpoint(log_id=log_id, size=target, note=note)

    async def _check_extends(
        self,
        conn: tree.Conn,
        log_id: int,
        *,
        origin: str,
        note: str,
        signed_size: int,
        target: int,
        current: int,
        root: bytes,
    ) -> None:
        """Refuse to sign ``target`` unless the stored checkpoint verifies with our keys
        and the tree at ``target`` is consistent with it (an append-only extension)."""
        try:
            previous = open_checkpoint(note, self._verifiers)
        except (VerificationError, MalformedInputError) as exc:
            raise VerificationError(
                f"log {log_id}: the stored checkpoint at size {signed_size} does not verify "
                "with our keys; refusing to sign past it"
            ) from exc
        if previous.size != signed_size or previous.origin != origin:
            raise VerificationError(
                f"log {log_id}: stored checkpoint row disagrees with its signed note"
            )
        proof = await tree.consistency_hashes(
            conn, log_id, signed_size, target, current, self._tiles
        )
        try:
            verify_consistency(
                size1=signed_size,
                size2=target,
                proof=proof,
                root1=previous.root_hash,
                root2=root,
            )
        except VerificationError as exc:
            logger.critical(
                "log %s: tree at size %d is NOT consistent with signed checkpoint %d; "
                "not signing (possible tampering)",
                origin, target, signed_size,
            )  # fmt: skip
            raise VerificationError(
                f"log {log_id}: size {target} is inconsistent with checkpoint {signed_size}"
            ) from exc

    async def maintain_partitions(self) -> bool:
        """At most every ``MAINTENANCE_SECONDS``: have pg_partman make the months ahead, so
        a new month's first append does not make its partitions (and lock the parent
        tables) itself. Returns whether it ran."""
        now = time.monotonic()
        if self._maintained_at is not None and now - self._maintained_at < MAINTENANCE_SECONDS:
            return False
        self._maintained_at = now
        with transient_as_unavailable():
            async with self._pool.acquire() as conn:
                await conn.execute(sql.PARTITION_MAINTENANCE)
        return True

    async def seal_closed_logs(self) -> list[IssuedSeal]:
        """Seal every closed log (one whose partition has moved on to a later period):
        sign its final size (consistent with what was signed before, as any checkpoint),
        then a seal naming that checkpoint, the next log and its first offset."""
        with transient_as_unavailable():
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(sql.UNSEALED_CLOSED_LOGS)
        sealed = []
        for r in rows:
            try:
                sealed.append(await self._seal(r))
            except VerificationError as exc:
                logger.critical("seal refused: %s", exc)
        return sealed

    async def _seal(self, closed: asyncpg.Record) -> IssuedSeal:
        log_id = int(closed["log_id"])
        with transient_as_unavailable():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(sql.LOCK_CHECKPOINT, log_id)
                await self._checkpoint_locked(conn, log_id, force=True, size=None)
                final = await conn.fetchrow(sql.LATEST_CHECKPOINT, log_id)
                size = await tree.log_size(conn, log_id)
                if final is None or int(final["size"]) != size:
                    raise VerificationError(f"log {log_id}: no checkpoint at its final size")
                head = Checkpoint(
                    origin=closed["origin"],
                    size=size,
                    root_hash=RootHash(bytes(final["root_hash"])),
                )
                seal = Seal(
                    checkpoint=head,
                    next_origin=closed["next_origin"],
                    next_first_offset=int(closed["next_first_offset"]),
                )
                note = sign_seal(seal, self._signers)
                await conn.execute(
                    sql.INSERT_SEAL, log_id, size, int(closed["next_log_id"]),
                    seal.next_first_offset, note,
                )  # fmt: skip
        logger.info("sealed %s at size %d", closed["origin"], size)
        return IssuedSeal(log_id=log_id, size=size, note=note)

    async def checkpoint_all_due(self) -> list[IssuedCheckpoint]:
        """Check every log; sign those that are due. Errors are logged per log."""
        with transient_as_unavailable():
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(sql.LOGS_DUE_CHECKPOINT)
        issued = []
        await self.maintain_partitions()
        await self.seal_closed_logs()
        for r in rows:
            if not self.due(int(r["log_id"]), unsigned_leaves=int(r["size"]) - int(r["signed"])):
                continue
            try:
                done = await self.checkpoint(int(r["log_id"]))
            except VerificationError as exc:
                logger.critical("checkpoint refused: %s", exc)
                continue
            if done is not None:
                issued.append(done)
        return issued
