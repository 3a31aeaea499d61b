"""HIPAA reports over the ledger: breach investigation, accounting of disclosures, relays.

Owns the three reports (``investigation`` with who each event touched in ``affected``,
``disclosures`` with its purpose rules in
``purposes``, ``relays``), their typed inputs (``rows``, ``phi``, ``checks``) and their
exports (``render_json``, ``render_csv``, ``render_html``). Everything here is pure and
deterministic: no I/O, no clock ("now" is an argument), so the same rows always give
byte-identical JSON, CSV and HTML. It may import ``ledger.log``, the rest of
``ledger.audit`` and ``ledger.errors``; the adapter that fetches the rows is
``ledger.pg.reports``. Design notes: docs/design/reports.md.
"""

from __future__ import annotations

from ledger.audit.reports.affected import AffectedPatient
from ledger.audit.reports.checks import (
    COMPLIANCE_DATE,
    MAX_LOOKBACK_YEARS,
    MAX_SCOPE_SELECTORS,
    MAX_SELECTOR_CHARS,
    MAX_WINDOW,
    check_identifier,
    check_window,
)
from ledger.audit.reports.disclosures import (
    DisclosureAccounting,
    DisclosureEntry,
    ExcludedDisclosure,
    accounting_period_start,
    build_disclosures,
    describe_phi,
)
from ledger.audit.reports.investigation import (
    InvestigationReport,
    InvestigationScope,
    StateCount,
    TimelineEntry,
    TruncatedAnswer,
    build_investigation,
)
from ledger.audit.reports.phi import (
    PHI_KINDS_BY_EVENT_ID,
    REPORT_SOP_CLASS_PREFIXES,
    PhiKind,
    disclosed_phi_kinds,
    is_completed,
    phi_kinds,
)
from ledger.audit.reports.purposes import (
    BASIS_RULES,
    DISCLOSURE_BASIS_DETAIL,
    DISCLOSURE_EVENT_IDS,
    PURPOSE_RULES,
    Disposition,
    PurposeRule,
    disclosure_rule,
    is_disclosure,
)
from ledger.audit.reports.relays import (
    DEFAULT_RELAY_DEADLINES,
    VERBAL_CATEGORIES,
    CategoryStats,
    DurationStats,
    RelayException,
    RelayIssue,
    RelayReport,
    build_relay_report,
)
from ledger.audit.reports.render_csv import (
    to_csv,
)
from ledger.audit.reports.render_html import (
    to_html,
)
from ledger.audit.reports.render_json import (
    to_json,
)
from ledger.audit.reports.rows import (
    KIND_ACCESS,
    KIND_LEDGER_READ,
    KIND_RELAY,
    KIND_SECURITY,
    AccessRow,
    DisclosedRef,
    EventRef,
    PatientRef,
    RecipientRef,
    RelayRow,
    ReportCheckpoint,
    StudyRef,
)

__all__ = [
    "BASIS_RULES",
    "COMPLIANCE_DATE",
    "DEFAULT_RELAY_DEADLINES",
    "DISCLOSURE_BASIS_DETAIL",
    "DISCLOSURE_EVENT_IDS",
    "KIND_ACCESS",
    "KIND_LEDGER_READ",
    "KIND_RELAY",
    "KIND_SECURITY",
    "MAX_LOOKBACK_YEARS",
    "MAX_SCOPE_SELECTORS",
    "MAX_SELECTOR_CHARS",
    "MAX_WINDOW",
    "PHI_KINDS_BY_EVENT_ID",
    "PURPOSE_RULES",
    "REPORT_SOP_CLASS_PREFIXES",
    "VERBAL_CATEGORIES",
    "AccessRow",
    "AffectedPatient",
    "CategoryStats",
    "DisclosedRef",
    "DisclosureAccounting",
    "DisclosureEntry",
    "Disposition",
    "DurationStats",
    "EventRef",
    "ExcludedDisclosure",
    "InvestigationReport",
    "InvestigationScope",
    "PatientRef",
    "PhiKind",
    "PurposeRule",
    "RecipientRef",
    "RelayException",
    "RelayIssue",
    "RelayReport",
    "RelayRow",
    "ReportCheckpoint",
    "StateCount",
    "StudyRef",
    "TimelineEntry",
    "TruncatedAnswer",
    "accounting_period_start",
    "build_disclosures",
    "build_investigation",
    "build_relay_report",
    "check_identifier",
    "check_window",
    "describe_phi",
    "disclosed_phi_kinds",
    "disclosure_rule",
    "is_completed",
    "is_disclosure",
    "phi_kinds",
    "to_csv",
    "to_html",
    "to_json",
]
