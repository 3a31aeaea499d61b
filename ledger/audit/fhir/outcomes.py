"""R4 OperationOutcome: what went wrong, for a client to read.

Invariant: an OperationOutcome has at least one issue, and an issue's ``code`` is from the
R4 IssueType value set.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ledger.audit.fhir.vocabulary import Resource
from ledger.audit.unreadable import UnreadablePeriod, banner
from ledger.errors import MalformedInputError

__all__ = ["Issue", "IssueSeverity", "operation_outcome", "unreadable_outcome"]

IssueSeverity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    """One OperationOutcome issue. ``code`` is from the R4 IssueType value set."""

    severity: IssueSeverity
    code: str
    diagnostics: str
    expression: str | None = None


def _issue(issue: Issue) -> Resource:
    out: Resource = {
        "severity": issue.severity,
        "code": issue.code,
        "diagnostics": issue.diagnostics,
    }
    if issue.expression:
        out["expression"] = [issue.expression]
    return out


def operation_outcome(issues: Sequence[Issue]) -> Resource:
    """An R4 OperationOutcome (it must have at least one issue)."""
    if not issues:
        raise MalformedInputError("an OperationOutcome needs at least one issue")
    return {"resourceType": "OperationOutcome", "issue": [_issue(i) for i in issues]}


def unreadable_outcome(periods: Sequence[UnreadablePeriod]) -> Resource | None:
    """The warning a searchset carries (an entry with search mode ``outcome``) when it could
    not read some detached periods: one ``incomplete`` issue per period; None if none."""
    issues = [
        Issue(severity="warning", code="incomplete", diagnostics=str(banner([p]))) for p in periods
    ]
    if not issues:
        return None
    # A searchset entry needs a fullUrl: a urn:uuid named by what the outcome says.
    said = "|".join(f"{p.period}:{p.archive}" for p in periods)
    ident = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:phi-ledger:unreadable:{said}")
    return {"resourceType": "OperationOutcome", "id": str(ident), **operation_outcome(issues)}
