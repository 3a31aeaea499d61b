"""Which disclosures the accounting lists: the purpose and legal-basis rules of 164.528.

Invariant: a disclosure is left out only when a rule shows an exception of
164.528(a)(1) applies; an unknown basis, an unknown purpose or none at all is accounted
and flagged for review.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ledger.audit.reports.phi import is_completed
from ledger.audit.reports.rows import KIND_ACCESS, AccessRow
from schemas import dicom


class Disposition(StrEnum):
    """What the accounting does with a disclosure."""

    #: Accounted (164.528(a)(1) names no exception for it).
    INCLUDE = "include"
    #: Left out under one of the exceptions of 164.528(a)(1)(i)-(ix).
    EXCLUDE = "exclude"
    #: Accounted, but flagged: the ledger cannot tell whether an exception applies.
    REVIEW = "review"


@dataclass(frozen=True, slots=True, kw_only=True)
class PurposeRule:
    """How one purpose (or recorded legal basis) of a disclosure is treated."""

    disposition: Disposition
    #: The purpose as the individual reads it (164.528(b)(2)(iv): "a brief statement of
    #: the purpose of the disclosure that reasonably informs the individual of the basis").
    statement: str
    #: Where the rule comes from.
    citation: str


def _rule(disposition: Disposition, statement: str, citation: str) -> PurposeRule:
    return PurposeRule(disposition=disposition, statement=statement, citation=citation)


_X, _I, _R = Disposition.EXCLUDE, Disposition.INCLUDE, Disposition.REVIEW
_TPO = "45 CFR 164.528(a)(1)(i): treatment, payment, health care operations (164.506)"

#: HL7 v3 PurposeOfUse code (``purpose_of_use``) -> disposition in the accounting.
PURPOSE_RULES: Final[Mapping[str, PurposeRule]] = MappingProxyType(
    {
        "TREAT": _rule(_X, "Treatment", _TPO),
        "ETREAT": _rule(_X, "Emergency treatment", _TPO),
        "BTG": _rule(_X, "Emergency access for treatment (break the glass)", _TPO),
        "COC": _rule(_X, "Coordination of care", _TPO),
        "HPAYMT": _rule(_X, "Payment", _TPO),
        "HOPERAT": _rule(_X, "Health care operations", _TPO),
        "HQUALIMP": _rule(_X, "Quality improvement (health care operations)", _TPO),
        "SYSADMN": _rule(_X, "System administration (health care operations)", _TPO),
        "HSYSADMIN": _rule(_X, "System administration (health care operations)", _TPO),
        "PATRQT": _rule(
            _X,
            "At the individual's request",
            "45 CFR 164.528(a)(1)(ii) to the individual (164.502), or (iv) with the "
            "individual's authorization (164.508)",
        ),
        "PWATRNY": _rule(
            _X,
            "To the individual's personal representative",
            "45 CFR 164.528(a)(1)(ii): a personal representative is treated as the "
            "individual (164.502(g))",
        ),
        "FAMRQT": _rule(
            _X,
            "To family involved in the individual's care",
            "45 CFR 164.528(a)(1)(v): persons involved in care (164.510(b))",
        ),
        "DISASTER": _rule(
            _X,
            "Disaster relief notification",
            "45 CFR 164.528(a)(1)(v): notification purposes (164.510(b)(4))",
        ),
        "PUBHLTH": _rule(_I, "Public health activities", "45 CFR 164.512(b)"),
        "HRESCH": _rule(
            _I,
            "Research without the individual's authorization",
            "45 CFR 164.512(i) (with an authorization it is excluded: record the basis)",
        ),
        "CLINTRCH": _rule(
            _I,
            "Clinical trial research without the individual's authorization",
            "45 CFR 164.512(i) (with an authorization it is excluded: record the basis)",
        ),
        "LEGAL": _rule(
            _I,
            "Judicial or administrative proceedings, or law enforcement",
            "45 CFR 164.512(e), (f) (custody situations under 164.512(k)(5) are excluded: "
            "record the basis)",
        ),
        "OVERSIGHT": _rule(
            _I,
            "Health oversight activities",
            "45 CFR 164.512(d) (the agency may suspend the accounting: 164.528(a)(2))",
        ),
        "THREAT": _rule(_I, "To avert a serious threat to health or safety", "45 CFR 164.512(j)"),
        "HPRGRP": _rule(
            _R,
            "Health program reporting",
            "accounted when required by law (164.512(a)); excluded when health care "
            "operations (164.528(a)(1)(i)): record the basis",
        ),
        "HMARKT": _rule(
            _R,
            "Marketing",
            "permitted only with an authorization (164.508(a)(3); then excluded by "
            "164.528(a)(1)(iv)); without one it is an impermissible disclosure, which is "
            "accounted",
        ),
    }
)

#: The detail key (``details[...]`` of a PhiAccessEvent) in which a producer may record the
#: legal basis of a disclosure, which no PurposeOfUse code expresses. Values: ``BASIS_RULES``.
DISCLOSURE_BASIS_DETAIL: Final = "disclosure_basis"

#: Recorded legal basis -> disposition. A known basis takes precedence over the purpose code.
BASIS_RULES: Final[Mapping[str, PurposeRule]] = MappingProxyType(
    {
        "tpo": _rule(_X, "Treatment, payment or health care operations", _TPO),
        "individual": _rule(
            _X, "To the individual", "45 CFR 164.528(a)(1)(ii): to the individual (164.502)"
        ),
        "incidental": _rule(
            _X,
            "Incidental to a permitted use or disclosure",
            "45 CFR 164.528(a)(1)(iii) (164.502(a)(1)(iii))",
        ),
        "authorization": _rule(
            _X,
            "With the individual's authorization",
            "45 CFR 164.528(a)(1)(iv) (164.508)",
        ),
        "directory": _rule(_X, "Facility directory", "45 CFR 164.528(a)(1)(v) (164.510(a))"),
        "involved-in-care": _rule(
            _X,
            "To persons involved in the individual's care, or notification",
            "45 CFR 164.528(a)(1)(v) (164.510(b))",
        ),
        "national-security": _rule(
            _X,
            "National security or intelligence",
            "45 CFR 164.528(a)(1)(vi) (164.512(k)(2))",
        ),
        "custody": _rule(
            _X,
            "To a correctional institution or law enforcement with custody",
            "45 CFR 164.528(a)(1)(vii) (164.512(k)(5))",
        ),
        "limited-data-set": _rule(
            _X, "Limited data set", "45 CFR 164.528(a)(1)(viii) (164.514(e))"
        ),
        "required-by-law": _rule(_I, "Required by law", "45 CFR 164.512(a)"),
    }
)

_NO_PURPOSE: Final = _rule(
    _R, "Purpose not recorded", "no purpose recorded: an exception cannot be shown to apply"
)

#: DICOM EventIDs that are disclosures by themselves: Export (the BALP PrivacyDisclosure
#: source record) and DICOM Instances Transferred. Any event with a recipient is one too.
DISCLOSURE_EVENT_IDS: Final = frozenset({dicom.EXPORT, "110104"})


def disclosure_rule(row: AccessRow) -> PurposeRule:
    """The rule for a disclosure: its recorded basis if known, else its purpose code.

    An unknown basis, an unknown purpose code or no purpose at all gives ``REVIEW``: the
    disclosure is accounted (an exception cannot be shown to apply) and flagged.
    """
    if row.disclosure_basis is not None:
        basis = BASIS_RULES.get(row.disclosure_basis)
        if basis is not None:
            return basis
        return _rule(
            _R,
            "Unrecognised basis recorded",
            f"recorded basis {row.disclosure_basis!r} is not one of {sorted(BASIS_RULES)}",
        )
    if row.purpose_of_use is None:
        return _NO_PURPOSE
    rule = PURPOSE_RULES.get(row.purpose_of_use)
    if rule is None:
        return _rule(
            _R,
            f"Purpose {row.purpose_of_use}",
            f"PurposeOfUse {row.purpose_of_use!r} has no rule in PURPOSE_RULES",
        )
    return rule


def is_disclosure(row: AccessRow) -> bool:
    """True for a completed PHI access that released PHI outside: an Export, a Transfer,
    or any event that names a recipient."""
    return (
        row.kind == KIND_ACCESS
        and is_completed(row)
        and (row.recipient is not None or row.dicom_event_id in DISCLOSURE_EVENT_IDS)
    )
