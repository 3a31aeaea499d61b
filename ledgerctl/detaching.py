"""``ledger archive detach``: the only way a period leaves the database.

Invariant: nothing is detached unless, in this order, the month may be detached
(``check_detachable``), its bundle verified offline with the ledger's keys, the bundle
matches the database (``check_matches_bundle``), and the signed archive record (a CLI
read record naming the month, the bundle's manifest digest and where its copies are)
was appended to the ledger. The detach itself is one transaction (``detach_month``).
docs/archive.md "Detaching".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg

from ledger.audit.readlog import LedgerRead
from ledger.audit.retention import (
    BundleLog,
    DetachRefused,
    PeriodContents,
    check_detachable,
    check_matches_bundle,
)
from ledger.errors import MalformedInputError, UnavailableError
from ledger.log.cosignature import WitnessPolicy
from ledger.log.note import Verifier
from ledger.log.periods import PeriodLength, parse_label
from ledger.pg.detach import ArchiveRecord, detach_month, event_recorded, period_contents
from ledgerctl.cliaudit import LogHead, cli_read, record_cli_read
from ledgerctl.settings import Settings
from ledgerctl.verifying import verify_archive

#: How long to wait for the archive record to be appended before giving up (nothing is
#: detached then; run the command again once the consumer has caught up).
RECORD_WAIT_SECONDS = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedBundle:
    """What the offline verifier established about a bundle (only after it passed)."""

    manifest_digest: bytes
    #: The period label the archive's manifest names.
    period: str
    logs: Sequence[BundleLog]
    events: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DetachSummary:
    month: date
    tables: Sequence[str]
    logs: int
    events: int
    record_event_id: str
    manifest_digest: str


def archive_verifier(
    verifiers: Sequence[Verifier], witnesses: WitnessPolicy | None
) -> Callable[[Path], VerifiedBundle]:
    """Verify an archive offline (``ledger verify --bundle``'s checks, index included) and
    say what it holds; refuse, naming the failed checks, unless every report is ok."""

    def verify(path: Path) -> VerifiedBundle:
        reports, contents = verify_archive(path, verifiers, witnesses=witnesses)
        failed = [f"{r.origin}: {f.kind}" for r in reports if not r.ok for f in r.findings]
        if failed or not reports:
            shown = "; ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
            raise DetachRefused(f"the archive does not verify offline: {shown or 'empty'}")
        return VerifiedBundle(
            manifest_digest=contents.manifest_digest,
            period=contents.period,
            logs=[
                BundleLog(origin=g.origin, size=g.size, seal_note=g.seal_note)
                for g in contents.logs
            ],
            events=contents.events,
        )

    return verify


def month_of(label: str) -> date:
    """``2026-11``: the calendar month whose partitions leave (a day label is refused)."""
    period = parse_label(label)
    if period.length is not PeriodLength.MONTH:
        raise MalformedInputError(
            f"{label!r}: periods leave the database a month at a time (its partitions): "
            "give YYYY-MM"
        )
    return period.start


def run_detach(
    settings: Settings,
    *,
    period: str,
    bundle: Path,
    copies: str,
    reason: str,
    verify: Callable[[Path], VerifiedBundle],
    today: date | None = None,
    record_timeout: float = RECORD_WAIT_SECONDS,
) -> DetachSummary:
    """Check, verify, record, detach (see the module's invariant)."""
    month = month_of(period)
    if not copies.strip():
        raise MalformedInputError("--copies must say where the bundle's copies are kept")
    owner = settings.require("database_url")
    contents = asyncio.run(_contents(owner, month))
    check_detachable(
        contents, today=today or datetime.now(UTC).date(), live_months=settings.live_months
    )
    verified = verify(bundle)
    if verified.period != f"{month:%Y-%m}":
        raise DetachRefused(f"the archive is of {verified.period}, not of {month:%Y-%m}")
    check_matches_bundle(contents, verified.logs, verified.events)
    read = cli_read(
        command="archive detach",
        reason=reason,
        parameters={
            "period": f"{month:%Y-%m}",
            "archive_sha256": verified.manifest_digest.hex(),
            "copies": copies.strip(),
        },
        heads=[LogHead(origin=g.origin, size=g.size) for g in contents.logs],
    )
    record = ArchiveRecord(
        manifest_digest=verified.manifest_digest,
        record_event_id=read.read_id,
        actor=read.subject,
        copies=copies.strip(),
    )
    tables = asyncio.run(
        _record_and_detach(settings, owner, contents, record, read, record_timeout)
    )
    return DetachSummary(
        month=month,
        tables=tables,
        logs=len(contents.logs),
        events=contents.events,
        record_event_id=str(read.read_id),
        manifest_digest=verified.manifest_digest.hex(),
    )


async def _contents(owner: str, month: date) -> PeriodContents:
    conn = await _connect(owner)
    try:
        return await period_contents(conn, month)
    finally:
        await conn.close()


async def _record_and_detach(
    settings: Settings,
    owner: str,
    contents: PeriodContents,
    record: ArchiveRecord,
    read: LedgerRead,
    record_timeout: float,
) -> list[str]:
    await record_cli_read(settings, read)
    conn = await _connect(owner)
    try:
        deadline = time.monotonic() + record_timeout
        while not await event_recorded(conn, record.record_event_id):
            if time.monotonic() > deadline:
                raise DetachRefused(
                    f"the archive record {record.record_event_id} is in Kafka but not yet in "
                    f"the ledger after {record_timeout:.0f} s (is the consumer running?); "
                    "nothing was detached: run the command again"
                )
            await asyncio.sleep(0.5)
        return await detach_month(conn, contents, record)
    finally:
        await conn.close()


async def _connect(owner: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(owner)
    except (OSError, asyncpg.PostgresError) as exc:
        raise UnavailableError(
            f"cannot reach PostgreSQL as the owner role: {type(exc).__name__}"
        ) from exc


__all__ = [
    "DetachSummary",
    "VerifiedBundle",
    "archive_verifier",
    "month_of",
    "run_detach",
]
