"""``ledger disclosures``: the accounting of disclosures as a letter a patient can read.

Invariant: it shows exactly the entries the API's accounting holds (the API records the
read), each repeat group as one line with its count and dates; dates are readable, purposes
are the accounting's own words, and event ids and ledger positions appear only in the
appendix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from ledger.audit import wording

Json = dict[str, object]

#: What the accounting leaves out, in the patient's words (45 CFR 164.528(a)(1)).
FOOTER = (
    "This accounting lists the disclosures of your health information made in the period "
    "above, as 45 CFR 164.528 requires. It does not list disclosures for your treatment, "
    "for payment or for our health care operations, disclosures to you or made with your "
    "written authorization, or the other disclosures the rule excepts."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Letterhead:
    """Who sends the accounting and how the patient reaches them."""

    name: str | None
    contact: str | None


def _day(value: object) -> str:
    if not isinstance(value, str):
        return "not recorded"
    return wording.date(datetime.fromisoformat(value))


def _list(value: object) -> list[Json]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: object) -> str:
    return "" if value is None else str(value)


def letter(accounting: Json, head: Letterhead) -> list[str]:
    """The accounting as lines of plain text: letterhead, patient and period, one numbered
    paragraph per disclosure (repeats grouped), the footer, then the appendix."""
    patient = cast(Json, accounting.get("patient") or {})
    pid, issuer = _text(patient.get("id")), patient.get("issuer")
    entries = grouped(_list(accounting.get("entries")))
    lines = ["Accounting of disclosures of your health information", ""]
    lines += [head.name or "(facility name not configured: set LEDGER_FACILITY_NAME)"]
    if head.contact:
        lines.append(f"Questions: {head.contact}")
    lines += [
        "",
        f"Patient: {pid}" + (f" (record issued by {issuer})" if issuer else ""),
        f"Period: {_day(accounting.get('period_start'))} to {_day(accounting.get('requested_at'))}",
        "",
    ]
    review = int(_text(accounting.get("needs_review") or 0))
    if review:
        lines += [
            f"DRAFT: {wording.count(review, 'entry needs', 'entries need')} review by the "
            "privacy officer before this accounting is released.",
            "",
        ]
    total = sum(int(_text(e.get("count") or 1)) for e in entries)
    if not entries:
        lines += ["We made no disclosures of your health information that must be listed in "
                  "this period.", ""]  # fmt: skip
    else:
        lines += [
            f"We disclosed your health information {wording.count(total, 'time')} in this period:",
            "",
        ]
    for n, e in enumerate(entries, start=1):
        lines += [*_entry(n, e), ""]
    lines += [FOOTER, ""]
    return lines + _appendix(entries)


def grouped(entries: list[Json]) -> list[Json]:
    """Repeat disclosures (one recipient, address and purpose) as one entry with the first
    date, the number and the last date (164.528(b)(3)); entries needing review stay alone.
    The API's entries are in date order, so the first of a group is its earliest."""
    out: list[Json] = []
    slot: dict[tuple[str, ...], int] = {}
    for e in entries:
        recipient = cast(Json, e.get("recipient") or {})
        key = tuple(
            _text(v)
            for v in (recipient.get("name"), recipient.get("address"), e.get("purpose_code"),
                      e.get("purpose"))
        )  # fmt: skip
        if e.get("needs_review") or key not in slot:
            if not e.get("needs_review"):
                slot[key] = len(out)
            out.append(dict(e))
            continue
        first = out[slot[key]]
        first["count"] = int(_text(first.get("count") or 1)) + int(_text(e.get("count") or 1))
        first["last_date"] = e.get("last_date") or e.get("date")
        first["sources"] = _list(first.get("sources")) + _list(e.get("sources"))
    return out


def _entry(n: int, e: Json) -> list[str]:
    count = int(_text(e.get("count") or 1))
    first, last = _day(e.get("date")), _day(e.get("last_date"))
    when = first if count == 1 else f"{count} times, from {first} to {last}"
    recipient = cast(Json, e.get("recipient") or {})
    to = ", ".join(
        _text(recipient.get(k)) for k in ("name", "organization", "address") if recipient.get(k)
    )
    out = [
        f"{n}. {when}",
        f"   To: {to or 'recipient not recorded'}",
        f"   What: {_text(e.get('description')) or 'not recorded'}",
        f"   Why: {_text(e.get('purpose')) or 'not recorded'}",
    ]
    if e.get("needs_review"):
        out.append("   (to be reviewed by the privacy officer)")
    return out


def _appendix(entries: list[Json]) -> list[str]:
    if not entries:
        return []
    lines = ["Appendix: technical references (for the privacy office)"]
    for n, e in enumerate(entries, start=1):
        for s in _list(e.get("sources")):
            ledger = cast(Json, s.get("ledger") or {})
            lines.append(
                f"  {n}. event {_text(s.get('event_id'))} at {_text(ledger.get('origin'))}"
                f"#{_text(ledger.get('leaf_index'))} ({_text(s.get('time'))})"
            )
        if e.get("purpose_code"):
            lines.append(f"  {n}. purpose code {_text(e.get('purpose_code'))}: "
                         f"{_text(e.get('citation'))}")  # fmt: skip
    return lines
