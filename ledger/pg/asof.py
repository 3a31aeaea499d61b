"""Which signed checkpoints a report is computed against (role ``ledger_reader``).

Invariant: a report reads only below checkpoints this module returned: each is of a log of
this ledger (its origin is under the ledger's name) and either stored here (and, when
trusted verifier keys are configured, its note verifies with one of them) or given with its
signed note (a report's own ``as_of_checkpoints``, re-run on a replayed copy), which must
verify with the trusted keys and whose root hash must be the root of this ledger's first
``size`` leaves of that log. Anything else is refused with ``MalformedInputError`` (code
``bad_checkpoint``, the API's 400) naming the checkpoint and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.audit.reports import CheckpointRef, ReportCheckpoint, checkpoint_facts
from ledger.audit.reports.asof import refused
from ledger.errors import MalformedInputError, VerificationError
from ledger.log.checkpoint import open_checkpoint
from ledger.log.note import Verifier
from ledger.pg import sql
from ledger.pg.tree import Conn, log_size, root_at


class CheckpointResolver:
    """Resolves ``as_of`` references (or the default, the latest of each log) to signed
    checkpoints, checking each against the ledger's name and the trusted keys."""

    def __init__(self, *, ledger_name: str | None, verifiers: Sequence[Verifier]) -> None:
        self._ledger_name = ledger_name
        self._verifiers = tuple(verifiers)

    async def resolve(
        self, conn: Conn, refs: Sequence[CheckpointRef] | None
    ) -> tuple[ReportCheckpoint, ...]:
        """The named checkpoints, or, for ``None``, the latest signed one of each log."""
        if refs is None:
            rows = await conn.fetch(sql.LATEST_CHECKPOINTS)
            return tuple(
                self._trusted(int(r["log_id"]), r["origin"], int(r["size"]), r["note"], latest=True)
                for r in rows
            )
        for ref in refs:
            self._check_ledger(ref)
        rows = await conn.fetch(
            sql.NAMED_CHECKPOINTS, [r.origin for r in refs], [r.size for r in refs]
        )
        notes = {r.origin: r.note for r in refs}
        out: list[ReportCheckpoint] = []
        for r in rows:
            where = f"{r['origin']}:{r['size']}"
            if r["log_id"] is None:
                raise refused(f"checkpoint {where}: this ledger has no log {r['origin']}")
            given = notes.get(r["origin"])
            if given is not None:
                out.append(await self._given(conn, int(r["log_id"]), r["origin"], r["size"], given))
                continue
            if r["note"] is None:
                raise refused(
                    f"checkpoint {where}: log {r['origin']} has no signed checkpoint of "
                    f"size {r['size']}"
                )
            out.append(self._trusted(int(r["log_id"]), r["origin"], int(r["size"]), r["note"]))
        return tuple(out)

    async def _given(
        self, conn: Conn, log_id: int, origin: str, size: int, note: str
    ) -> ReportCheckpoint:
        """A checkpoint given with its note: trusted only if a trusted key signed it and
        this ledger's leaves of that log have that root at that size."""
        where = f"{origin}:{size}"
        if not self._verifiers:
            raise refused(f"checkpoint {where}: a given note needs trusted keys to check it")
        try:
            opened = open_checkpoint(note, self._verifiers)
        except (MalformedInputError, VerificationError) as exc:
            raise refused(f"checkpoint {where} is not signed by a trusted key ({exc})") from exc
        if (opened.origin, opened.size) != (origin, size):
            raise refused(f"checkpoint {where}: its note is of {opened.origin}:{opened.size}")
        current = await log_size(conn, log_id)
        if current < size:
            raise refused(f"checkpoint {where}: this ledger holds only {current} leaves")
        if await root_at(conn, log_id, size, current) != opened.root_hash:
            raise refused(f"checkpoint {where}: its root is not the root of this ledger's leaves")
        return self._trusted(log_id, origin, size, note)

    def _check_ledger(self, ref: CheckpointRef) -> None:
        name = self._ledger_name
        if name is not None and not ref.origin.startswith(f"{name}/"):
            raise refused(
                f"checkpoint {ref}: belongs to another ledger (this ledger's logs are "
                f"{name}/<topic>/<partition>)"
            )

    def _trusted(
        self, log_id: int, origin: str, size: int, note: str, *, latest: bool = False
    ) -> ReportCheckpoint:
        where = f"{origin}:{size}"
        try:
            if self._verifiers:
                opened = open_checkpoint(note, self._verifiers)
                if (opened.origin, opened.size) != (origin, size):
                    raise VerificationError("its note names another log or size")
            root_hash, key_ids = checkpoint_facts(note)
        except (MalformedInputError, VerificationError) as exc:
            if latest:  # the ledger's own latest checkpoint does not verify: not a request error
                raise VerificationError(f"checkpoint {where} does not verify: {exc}") from exc
            raise refused(f"checkpoint {where} is not signed by a trusted key ({exc})") from exc
        return ReportCheckpoint(
            log_id=log_id, origin=origin, size=size, note=note, root_hash=root_hash, key_ids=key_ids
        )
