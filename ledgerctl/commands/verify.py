"""``ledger verify``: check a ledger (bundle, API or one proof) and report every finding.

Invariant: exit 0 when everything verifies, 1 on any finding, 2 when the ledger could not
be read at all (an unreachable API is not an inconsistency).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeAlias

import typer

from ledgerctl.commands.common import console, fail, load_verifiers, report_console_stdout
from ledgerctl.settings import Settings

# The options of ``ledger verify``, named so that its signature reads as their list.
_Keys: TypeAlias = Annotated[
    list[str] | None,
    typer.Option("--key", help="Verifier key (repeat for rotation); default LEDGER_VERIFIER_KEY."),
]
_Bundle: TypeAlias = Annotated[
    Path | None,
    typer.Option(
        help="Verify an export bundle (`ledger export`) or an archive of a sealed period "
        "(`ledger archive`: also its file digests, seals and chain of periods)."
    ),
]
_Api: TypeAlias = Annotated[
    str | None, typer.Option(help="Verify a running ledger through its read API.")
]
_Proof: TypeAlias = Annotated[
    Path | None, typer.Option(help="Verify one .tlog-proof file (offline).")
]
_CheckIndex: TypeAlias = Annotated[
    bool, typer.Option("--check-index/--no-check-index", help="Also decode every event.")
]
_Jobs: TypeAlias = Annotated[int, typer.Option(min=1, help="Processes: logs verify in parallel.")]
_TrustedCheckpoints: TypeAlias = Annotated[
    list[Path] | None,
    typer.Option(
        "--trusted-checkpoint",
        help="A checkpoint you kept earlier (file, or a directory of *.checkpoint files; "
        "repeatable): the log must still reproduce it, so truncation or a replaced "
        "history is caught.",
    ),
]
_HeadsOut: TypeAlias = Annotated[
    Path | None,
    typer.Option(
        help="After an OK verdict, write each log's verified tree head here as a "
        "checkpoint file (keep it; pass it to --trusted-checkpoint next time)."
    ),
]
_Witnesses: TypeAlias = Annotated[
    list[str] | None,
    typer.Option(
        "--witness",
        help="A witness's cosignature verifier key (repeatable; default: the keys of "
        "LEDGER_WITNESSES). Each log's newest checkpoint must carry the cosignatures of "
        "--witness-threshold of them.",
    ),
]
_WitnessThreshold: TypeAlias = Annotated[
    int | None,
    typer.Option(
        "--witness-threshold",
        min=1,
        help="How many witnesses must cosign (k of n); default LEDGER_WITNESS_THRESHOLD, else all.",
    ),
]
_JsonOut: TypeAlias = Annotated[
    bool, typer.Option("--json", help="Print one JSON document instead of the report.")
]


def verify(
    key: _Keys = None,
    bundle: _Bundle = None,
    api: _Api = None,
    proof: _Proof = None,
    check_index: _CheckIndex = True,
    jobs: _Jobs = 1,
    trusted_checkpoint: _TrustedCheckpoints = None,
    heads_out: _HeadsOut = None,
    json_out: _JsonOut = False,
    witness: _Witnesses = None,
    witness_threshold: _WitnessThreshold = None,
) -> None:
    """Verify signatures, roots, consistency and the event index; report EVERY inconsistency.

    With --api, each log is pinned to its latest signed checkpoint, fetched
    first; only what it covers is checked, so a ledger that appends meanwhile
    verifies. Ends with the tree head (size, root) of every log and one
    verdict line. Exits 0 when everything verifies, 1 on any finding.
    """
    from ledger.errors import LedgerError
    from ledgerctl.verdict import load_trusted
    from ledgerctl.witnesses import WitnessSettingsError, witness_policy

    settings = Settings.load()
    verifiers = load_verifiers(settings, key)
    try:
        witnesses = witness_policy(settings, witness or (), witness_threshold)
    except WitnessSettingsError as exc:
        raise fail(str(exc)) from exc
    if sum(x is not None for x in (bundle, api, proof)) > 1:
        raise fail("give one of --bundle, --api, --proof")
    try:
        trusted = load_trusted(trusted_checkpoint or [])
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    try:
        ok = _run_verify_or_explain(
            console=report_console_stdout(),
            verifiers=verifiers,
            bundle=bundle,
            api=settings.api(api) if not (bundle or proof) else None,
            proof=proof,
            check_index=check_index,
            ledger_name=settings.ledger_name,
            jobs=jobs,
            trusted=trusted,
            json_out=json_out,
            heads_out=heads_out,
            witnesses=witnesses,
        )
    except _VerifyUnavailable as exc:
        console.print(f"[red]error:[/red] cannot verify: {exc}")
        raise typer.Exit(code=2) from exc
    if not ok:
        raise typer.Exit(code=1)


class _VerifyUnavailable(Exception):
    """The ledger could not be read (not: it was read and is inconsistent)."""


def _run_verify_or_explain(**kwargs: Any) -> bool:
    """``run_verify``, with unreachable APIs and refused requests as one clear error."""
    import aiohttp

    from ledger.errors import LedgerError
    from ledgerctl.verifying import run_verify

    try:
        return run_verify(**kwargs)
    except aiohttp.ClientResponseError as exc:
        hint = " (is LEDGER_API_TOKEN set and valid?)" if exc.status in (401, 403) else ""
        raise _VerifyUnavailable(f"the API answered {exc.status} {exc.message}{hint}") from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _VerifyUnavailable(f"the API is unreachable: {exc}") from exc
    except LedgerError as exc:  # an unusable bundle or API document
        raise _VerifyUnavailable(str(exc)) from exc
