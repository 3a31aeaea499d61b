"""What an auditor who does not trust the operator brings: the verifier keys and the
checkpoints kept from earlier runs.

Invariant: a wrong key is ONE finding (naming the keys that did sign and the ones given),
never one per checkpoint; every kept checkpoint is either matched to the log it names or
reported (it never silently drops out of the verification).
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable, Sequence

from ledger.log.note import Verifier
from ledger.verify.checkpoints import unverified_body
from ledger.verify.findings import Finding, LogReport

__all__ = [
    "checkpoint_origin",
    "key_report",
    "signing_key_finding",
    "trusted_by_origin",
]


def checkpoint_origin(note: str) -> str | None:
    """The origin a checkpoint note names (signatures not checked), or None if it does not
    parse."""
    body = unverified_body(note)
    return None if body is None else body.origin


def signing_key_finding(
    notes: Iterable[str], verifiers: Sequence[Verifier], *, log: str
) -> Finding | None:
    """ONE finding when none of ``notes`` (the ledger's checkpoints, any logs) is signed by a
    key in ``verifiers`` and each carries only signatures by other keys: the auditor holds
    the wrong key, and a finding per checkpoint would bury that.  None otherwise (also when
    some note verifies: then each bad one is its own ``checkpoint_signature`` finding)."""
    known = {(v.name, v.key_id.hex()) for v in verifiers}
    seen: dict[str, None] = {}
    for note in notes:
        keys = _signature_keys(note)
        if known.intersection(keys):
            return None
        for name, key_id in keys:
            seen.setdefault(f"{name}+{key_id}", None)
    if not seen:
        return None
    given = ", ".join(sorted(f"{v.name}+{v.key_id.hex()}" for v in verifiers))
    return Finding(
        kind="verifier_key_unknown",
        log=log,
        leaf_index=None,
        checkpoint_size=None,
        detail=f"checkpoints are signed by key {', '.join(seen)}; you gave {given}. No "
        "checkpoint can be verified: obtain the ledger's verifier key (docs/verifier-keys.md)",
    )


def _signature_keys(note: str) -> list[tuple[str, str]]:
    split = note.rfind("\n\n")
    out: list[tuple[str, str]] = []
    for line in note[split + 2 :].splitlines() if split >= 0 else ():
        name, _, b64 = line.removeprefix("\u2014 ").partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:
            continue
        if len(raw) > 4:
            out.append((name, raw[:4].hex()))
    return out


def trusted_by_origin(
    trusted: Sequence[str], origins: Collection[str]
) -> tuple[dict[str, list[str]], list[LogReport]]:
    """The auditor's kept checkpoints grouped by the log they name; a report for each that
    names no log of this ledger (or does not parse)."""
    by_origin: dict[str, list[str]] = {}
    strays: list[LogReport] = []
    for number, note in enumerate(trusted):
        origin = checkpoint_origin(note)
        if origin is not None and origin in origins:
            by_origin.setdefault(origin, []).append(note)
            continue
        kind, detail = (
            ("trusted_checkpoint_invalid", f"trusted checkpoint #{number} does not parse")
            if origin is None
            else (
                "trusted_checkpoint_unknown_log",
                f"trusted checkpoint #{number} is for log {origin!r}, which this ledger does "
                "not have (removed, renamed, or the checkpoint is from another ledger)",
            )
        )
        log = origin or "(unparsed trusted checkpoint)"
        finding = Finding(kind=kind, log=log, leaf_index=None, checkpoint_size=None, detail=detail)
        strays.append(
            LogReport(origin=log, leaves_checked=0, checkpoints_checked=1, findings=(finding,))
        )
    return by_origin, strays


def key_report(finding: Finding) -> LogReport:
    """The whole outcome when the keys are wrong: one report holding the one finding."""
    return LogReport(
        origin=finding.log, leaves_checked=0, checkpoints_checked=0, findings=(finding,)
    )
