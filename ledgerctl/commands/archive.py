"""``ledger archive``: one sealed period as a self-verifying bundle (docs/archive.md).

Invariant: the archive reads every patient's PHI of the period, so it records the read in
the ledger (OS user and ``--reason``) before the first byte is written; a period that is
unknown or not wholly sealed, a target that is not a new or empty directory, or a missing
reason is refused before anything is read. It ends with the manifest's SHA-256, the one
digest that stands for the archive. Verify it with ``ledger verify --bundle DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledgerctl.commands.common import REASON, console, fail, progress, report_console_stdout
from ledgerctl.settings import Settings

archive_app = typer.Typer(
    help="Archive a sealed period (`ledger archive --period 2026-11 --out DIR --reason ...`); "
    "verify it offline with `ledger verify --bundle DIR`.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@archive_app.callback()
def archive(
    ctx: typer.Context,
    period: Annotated[
        str | None, typer.Option(help="The period to archive: YYYY-MM (a month) or YYYY-MM-DD.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="New (or empty) directory for the archive.")
    ] = None,
    reason: Annotated[str | None, REASON] = None,
) -> None:
    """Write one sealed period as a self-verifying archive bundle (phi-ledger-archive/v1):
    its logs' leaves, tiles, checkpoints with witness cosignatures, seals, index rows,
    the previous period's seals, schemas, producer keys and seals, and the public keys,
    with every file's SHA-256 in the manifest.

    The archive holds the period's PHI: the read is recorded in the ledger (your OS user
    and --reason) before anything is written, and the files are owner-only.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ledger.errors import LedgerError
    from ledgerctl.clireads import run_archive

    if period is None or out is None:
        raise fail("give --period (YYYY-MM or YYYY-MM-DD) and --out DIR")
    if reason is None:
        raise fail("give --reason: why this period's PHI is read (recorded in the ledger)")
    settings = Settings.load()
    with progress() as report:
        try:
            summary = run_archive(settings, period=period, out=out, reason=reason, progress=report)
        except LedgerError as exc:
            raise fail(str(exc)) from exc
    console.print(
        f"archived period {summary.period}: {summary.logs} logs, {summary.leaves:,} leaves and "
        f"{summary.checkpoints:,} checkpoints to {out} (owner-only; this read is in the ledger)"
    )
    report_console_stdout().print(
        f"manifest sha256 {summary.digest}", highlight=False, soft_wrap=True
    )


@archive_app.command("detach")
def detach(
    period: Annotated[str, typer.Option(help="The month whose partitions leave: YYYY-MM.")],
    bundle: Annotated[
        Path, typer.Option("--bundle", help="Its archive (`ledger archive --period ...`).")
    ],
    copies: Annotated[
        str,
        typer.Option(help="Where the archive's copies are kept (recorded in the ledger)."),
    ],
    reason: Annotated[str, REASON],
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="Verifier key to check the archive with (default: settings)."),
    ] = None,
    record_timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait for the record to be appended (then: nothing done)."),
    ] = 60.0,
) -> None:
    """Take an archived month out of the database: the only way a period leaves it.

    Refused unless the month is older than LEDGER_LIVE_MONTHS and every one of its logs is
    sealed at its full size; the archive verifies offline with the ledger's keys (and the
    witness policy, when LEDGER_WITNESSES is set); and it holds exactly the month's logs,
    sizes, seals and index rows. Then a signed record (who, the month, the archive's
    manifest digest, --copies) is appended to the ledger, and in one transaction the
    month's partitions are detached (kept as tables until dropped) and the month is
    recorded as detached. Runs as the owner role (DATABASE_URL). docs/archive.md.
    """
    from ledger.errors import LedgerError
    from ledgerctl.commands.common import load_verifiers
    from ledgerctl.detaching import archive_verifier, run_detach
    from ledgerctl.witnesses import WitnessSettingsError, witness_policy

    settings = Settings.load()
    verifiers = load_verifiers(settings, key)
    try:
        witnesses = witness_policy(settings)
    except WitnessSettingsError as exc:
        raise fail(str(exc)) from exc
    try:
        done = run_detach(
            settings, period=period, bundle=bundle, copies=copies, reason=reason,
            verify=archive_verifier(verifiers, witnesses), record_timeout=record_timeout,
        )  # fmt: skip
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"detached {done.month:%Y-%m}: {done.logs} logs, {done.events:,} events; archive "
        f"sha256 {done.manifest_digest}; record {done.record_event_id} is in the ledger",
        soft_wrap=True,
    )
    report_console_stdout().print(
        "detached tables (drop them once the archive's copies are confirmed): "
        + " ".join(done.tables),
        highlight=False,
        soft_wrap=True,
    )
