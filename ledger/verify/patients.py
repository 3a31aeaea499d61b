"""The multi-patient check: each index row's ``patients`` cell against its leaf.

Invariant: a row's ``patients`` cell (the leaf's ``event_patients`` rows) equals, in the
leaf's order, the ``disclosed`` patients its PhiAccessEvent v2 carries -- (issuer, id, state,
study UIDs) -- and is empty for every other event (and for a v1 access event); a
disagreement is one ``patients_mismatch`` finding per leaf that counts the differences and
never names them (no PHI). A row without the column (a bundle written before it existed)
reads as disclosing nobody. Computed here from the decoded leaf, independently of the
consumer's ``consumers.projection`` (docs/design/multi-patient-events.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ledger.audit.records import JsonValue
from ledger.verify.checks import CellCheck, CheckContext

__all__ = ["expected_patients", "patients_check", "patients_problem"]

#: The index-row cell that renders a leaf's ``event_patients`` rows.
COLUMN: Final = "patients"
_ACCESS: Final = "philedger.audit.PhiAccessEvent"

_Patient = tuple[str | None, str, str | None, tuple[str, ...]]


def expected_patients(full_name: str, record: Mapping[str, JsonValue]) -> list[_Patient] | None:
    """The patients the leaf discloses, in its order; None when its list is malformed."""
    raw = record.get("disclosed") if full_name == _ACCESS else None
    if raw is None:
        return []
    if not isinstance(raw, list):
        return None
    out: list[_Patient] = []
    for p in raw:
        if not isinstance(p, dict):
            return None
        parsed = _parse((p.get("issuer"), p.get("id"), p.get("state"), p.get("studies")))
        if parsed is None:
            return None
        out.append(parsed)
    return out


def _parse(item: object) -> _Patient | None:
    if not isinstance(item, list | tuple) or len(item) != 4:
        return None
    issuer, pid, state, studies = item
    if not isinstance(pid, str) or not isinstance(studies, list | tuple):
        return None
    if not all(x is None or isinstance(x, str) for x in (issuer, state)):
        return None
    if not all(isinstance(uid, str) for uid in studies):
        return None
    return (issuer, pid, state, tuple(studies))


def _cell(value: object) -> list[_Patient] | None:
    """A stored ``patients`` cell; ``[]`` when absent, None when malformed."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        return None
    out = [_parse(item) for item in value]
    return None if any(p is None for p in out) else [p for p in out if p is not None]


def patients_problem(
    full_name: str, record: Mapping[str, JsonValue], row: Mapping[str, object]
) -> str | None:
    """Why the ``patients`` cell of a leaf's index row disagrees with the leaf, else None."""
    want = expected_patients(full_name, record)
    have = _cell(row.get(COLUMN))
    if have is None or want is None:
        return "its disclosed patients are malformed"
    if have == want:
        return None
    missing = len(set(want) - set(have))
    extra = len(set(have) - set(want))
    duplicated = len(have) - len(set(have))
    counts = ((missing, "missing or changed"), (extra, "extra"), (duplicated, "duplicated"))
    parts = ", ".join(f"{n} {what}" for n, what in counts if n) or "out of order"
    return f"its disclosed patients disagree with the leaf ({parts})"


def patients_check(context: CheckContext) -> CellCheck:
    """The ``EventCheckFactory`` for ``checks=`` (one check per log): the ``patients``
    cell of each index row against its leaf's event."""
    return CellCheck(context.findings, kind="patients_mismatch", problem=patients_problem)
