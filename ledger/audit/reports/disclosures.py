"""The accounting of disclosures an individual may request (45 CFR 164.528).

Invariant: pure and deterministic ("now" is an argument); only this patient's
disclosures in the accounting period are considered, each included, excluded or
included for review by ``disclosure_rule``. This patient's: the event names them, or its
answer returned them (PhiAccessEvent v2 ``disclosed``: a transfer of several patients'
studies to an outside recipient discloses each of them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from ledger.audit.reports.checks import COMPLIANCE_DATE, MAX_LOOKBACK_YEARS, check_instant
from ledger.audit.reports.phi import PhiKind, disclosed_phi_kinds, phi_kinds
from ledger.audit.reports.purposes import Disposition, PurposeRule, disclosure_rule, is_disclosure
from ledger.audit.reports.rows import (
    AccessRow,
    DisclosedRef,
    EventRef,
    PatientRef,
    event_ref,
    order_key,
)
from ledger.errors import MalformedInputError


@dataclass(frozen=True, slots=True, kw_only=True)
class DisclosureEntry:
    """One line of the accounting (164.528(b)(2)); several when summarised (164.528(b)(3))."""

    disclosed_at: datetime
    recipient_name: str | None
    recipient_address: str | None
    recipient_organization: str | None
    description: str
    purpose: str
    purpose_code: str | None
    citation: str
    needs_review: bool
    #: How many disclosures this line stands for; ``last_disclosed_at`` is the last one.
    count: int
    last_disclosed_at: datetime
    sources: tuple[EventRef, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExcludedDisclosure:
    """A disclosure left out of the accounting, and why (for the privacy officer only)."""

    source: EventRef
    purpose_code: str | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DisclosureAccounting:
    """The result of ``build_disclosures``."""

    patient: PatientRef
    requested_at: datetime
    period_start: datetime
    entries: tuple[DisclosureEntry, ...]
    excluded: tuple[ExcludedDisclosure, ...]

    @property
    def needs_review(self) -> int:
        """Entries a privacy officer must review before the accounting is released."""
        return sum(1 for e in self.entries if e.needs_review)


def accounting_period_start(now: datetime, years: int) -> datetime:
    """Start of the accounting period: the same calendar date ``years`` earlier, 00:00 UTC.

    164.528(a)(1) grants disclosures "in the six years prior to the date on which the
    accounting is requested"; counting in whole dates, that date is included (29 February
    falls back to 28 February). Never before ``COMPLIANCE_DATE`` (164.528(a)(1)(ix)).
    """
    now = check_instant("now", now)
    if isinstance(years, bool) or not isinstance(years, int):
        raise MalformedInputError("lookback_years must be an integer")
    if not 1 <= years <= MAX_LOOKBACK_YEARS:
        raise MalformedInputError(f"lookback_years must be from 1 to {MAX_LOOKBACK_YEARS}")
    d = now.date()
    try:
        then = d.replace(year=d.year - years)
    except ValueError:  # 29 February
        then = date(d.year - years, 2, 28)
    return max(datetime.combine(then, time.min, tzinfo=UTC), COMPLIANCE_DATE)


def describe_phi(row: AccessRow) -> str:
    """A brief description of the PHI an event disclosed (164.528(b)(2)(iii))."""
    kinds = phi_kinds(row)
    parts: list[str] = []
    study = row.study
    if study is not None and (PhiKind.IMAGES in kinds or PhiKind.REPORT in kinds):
        what = []
        if PhiKind.IMAGES in kinds:
            what.append("images")
        if PhiKind.REPORT in kinds:
            what.append("report")
        label = f"{study.modality} imaging study" if study.modality else "Imaging study"
        details = [f"accession {study.accession}"] if study.accession else []
        if study.instances is not None:
            details.append(f"{study.instances} instances")
        details.append(f"study UID {study.uid}")
        parts.append(f"{label} ({' and '.join(what)}; {', '.join(details)})")
    elif PhiKind.IMAGES in kinds:
        parts.append("Diagnostic images")
    elif PhiKind.REPORT in kinds:
        parts.append("Diagnostic report")
    if PhiKind.ORDER in kinds:
        parts.append("imaging order")
    parts.append("patient identifiers and demographics")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


def describe_disclosed(row: AccessRow, patient: DisclosedRef) -> str:
    """A brief description of the PHI an event's answer disclosed about one patient it
    returned without naming them (``disclosed_phi_kinds``; their studies by UID)."""
    kinds = disclosed_phi_kinds(row, patient)
    parts: list[str] = []
    if PhiKind.IMAGES in kinds:
        uids = f" (study UID {', '.join(patient.studies)})" if patient.studies else ""
        parts.append(f"Diagnostic images{uids}")
    elif patient.studies:
        parts.append(f"Imaging study descriptions (study UID {', '.join(patient.studies)})")
    if PhiKind.REPORT in kinds:
        parts.append("diagnostic report")
    if PhiKind.ORDER in kinds:
        parts.append("imaging order")
    parts.append("patient identifiers and demographics")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


def build_disclosures(
    patient: PatientRef,
    rows: Iterable[AccessRow],
    *,
    now: datetime,
    lookback_years: int = MAX_LOOKBACK_YEARS,
    summarise_repeated: bool = False,
) -> DisclosureAccounting:
    """The accounting of disclosures of ``patient``'s PHI requested at ``now`` (164.528).

    Of ``rows``, only this patient's disclosures (``is_disclosure``) made in
    [``accounting_period_start(now, lookback_years)``, ``now``] are considered; each is
    included, excluded or included for review by ``disclosure_rule`` (tables
    ``BASIS_RULES`` and ``PURPOSE_RULES``). Without an issuer, rows of one patient id under
    several issuers are different people: that raises ``MalformedInputError``.

    With ``summarise_repeated``, disclosures to one recipient for one purpose become one
    line with the first date, the number and the last date (164.528(b)(3)); lines flagged
    for review are never merged.
    """
    if not isinstance(patient, PatientRef):
        raise MalformedInputError("patient must be a PatientRef")
    now = check_instant("now", now)
    period_start = accounting_period_start(now, lookback_years)
    mine = _rows_of(patient, rows)
    entries: list[DisclosureEntry] = []
    excluded: list[ExcludedDisclosure] = []
    for row, listed in sorted(mine, key=lambda m: order_key(m[0])):
        if not is_disclosure(row) or not period_start <= row.event_time <= now:
            continue
        rule = disclosure_rule(row)
        if rule.disposition is Disposition.EXCLUDE:
            excluded.append(_excluded(row, rule))
        else:
            what = describe_phi(row) if listed is None else describe_disclosed(row, listed)
            entries.append(_entry(row, rule, what))
    if summarise_repeated:
        entries = group_repeats(entries)
    return DisclosureAccounting(
        patient=patient,
        requested_at=now,
        period_start=period_start,
        entries=tuple(entries),
        excluded=tuple(excluded),
    )


def _rows_of(
    patient: PatientRef, rows: Iterable[AccessRow]
) -> list[tuple[AccessRow, DisclosedRef | None]]:
    """The patient's rows: named by the event (None), else returned by its answer (the
    listed patient); without an issuer, one id under several issuers is refused."""
    mine: list[tuple[AccessRow, DisclosedRef | None]] = []
    issuers: set[str] = set()
    for r in rows:
        if r.patient_id == patient.id and patient.issuer in (None, r.patient_issuer):
            mine.append((r, None))
            issuers.add(r.patient_issuer or "")
            continue
        for p in r.disclosed:
            if p.id == patient.id and patient.issuer in (None, p.issuer):
                mine.append((r, p))
                issuers.add(p.issuer or "")
    if patient.issuer is None and len(issuers) > 1:
        raise MalformedInputError(
            f"patient id {patient.id!r} exists under several issuers "
            f"({', '.join(sorted(issuers))}); "
            "name the issuer"
        )
    return mine


def _excluded(row: AccessRow, rule: PurposeRule) -> ExcludedDisclosure:
    return ExcludedDisclosure(
        source=event_ref(row), purpose_code=row.purpose_of_use, reason=rule.citation
    )


def _entry(row: AccessRow, rule: PurposeRule, description: str) -> DisclosureEntry:
    recipient = row.recipient
    return DisclosureEntry(
        disclosed_at=row.event_time,
        recipient_name=None if recipient is None else recipient.name,
        recipient_address=None if recipient is None else recipient.address,
        recipient_organization=None if recipient is None else recipient.organization,
        description=description,
        purpose=rule.statement,
        purpose_code=row.purpose_of_use,
        citation=rule.citation,
        needs_review=rule.disposition is Disposition.REVIEW or recipient is None,
        count=1,
        last_disclosed_at=row.event_time,
        sources=(event_ref(row),),
    )


def group_repeats(entries: list[DisclosureEntry]) -> list[DisclosureEntry]:
    """Disclosures to one recipient (name and address) for one purpose as one entry: the
    first date, the number and the last date (164.528(b)(3)); entries needing review are
    never merged. ``entries`` in date order."""
    out: list[DisclosureEntry] = []
    slot: dict[tuple[str | None, ...], int] = {}
    for e in entries:
        key = (e.recipient_name, e.recipient_address, e.purpose_code, e.purpose)
        if e.needs_review or key not in slot:
            if not e.needs_review:
                slot[key] = len(out)
            out.append(e)
            continue
        first = out[slot[key]]
        out[slot[key]] = DisclosureEntry(
            disclosed_at=first.disclosed_at,
            recipient_name=first.recipient_name,
            recipient_address=first.recipient_address,
            recipient_organization=first.recipient_organization,
            description=first.description,
            purpose=first.purpose,
            purpose_code=first.purpose_code,
            citation=first.citation,
            needs_review=False,
            count=first.count + 1,
            last_disclosed_at=e.disclosed_at,
            sources=first.sources + e.sources,
        )
    return out
