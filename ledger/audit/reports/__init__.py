"""HIPAA reports over the ledger: breach investigation, accounting of disclosures, relays.

Owns the four reports (``investigation`` with who each event touched in ``affected``,
``disclosures`` with its purpose rules in
``purposes``, ``relays``, ``compliance``: the checklist per facility and month, its
result types in ``compliance_model``; ``compliance`` itself is imported by its full
name, since it needs the rules, which import the reports), their
typed inputs (``rows``, ``phi``, ``checks``) and their
exports (``render_json``, ``render_csv``, ``render_html``), and what makes them
reproducible (``asof``: the checkpoints a report is computed against; ``sealed``: the
canonical content and its digest). Everything here is pure and
deterministic: no I/O, no clock ("now" is an argument), so the same rows always give
byte-identical JSON, CSV and HTML. It may import ``ledger.log``, the rest of
``ledger.audit`` and ``ledger.errors``; the adapter that fetches the rows is
``ledger.pg.reports``. Design notes: docs/design/reports.md.
"""

from __future__ import annotations

from ledger.audit.reports.affected import AffectedPatient
from ledger.audit.reports.asof import (
    BAD_CHECKPOINT,
    MAX_AS_OF,
    CheckpointRef,
    checkpoint_facts,
    parse_as_of,
    parse_as_of_notes,
    refs_from_report,
)
from ledger.audit.reports.checks import (
    COMPLIANCE_DATE,
    MAX_LOOKBACK_YEARS,
    MAX_SCOPE_SELECTORS,
    MAX_SELECTOR_CHARS,
    MAX_WINDOW,
    check_identifier,
    check_window,
)
from ledger.audit.reports.compliance_model import (
    AlertStatus,
    ChecklistFacts,
    Closure,
    ComplianceException,
    ComplianceReport,
    ItemCount,
    RegistryLog,
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
from ledger.audit.reports.sealed import (
    Sealed,
    canonical_json,
    digest,
    digest_of,
    seal,
    sealed_csv,
    sealed_html,
    sealed_json,
    with_unreadable,
)

__all__ = [
    "BAD_CHECKPOINT",
    "BASIS_RULES",
    "COMPLIANCE_DATE",
    "DEFAULT_RELAY_DEADLINES",
    "DISCLOSURE_BASIS_DETAIL",
    "DISCLOSURE_EVENT_IDS",
    "KIND_ACCESS",
    "KIND_LEDGER_READ",
    "KIND_RELAY",
    "KIND_SECURITY",
    "MAX_AS_OF",
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
    "AlertStatus",
    "CategoryStats",
    "ChecklistFacts",
    "CheckpointRef",
    "Closure",
    "ComplianceException",
    "ComplianceReport",
    "DisclosedRef",
    "DisclosureAccounting",
    "DisclosureEntry",
    "Disposition",
    "DurationStats",
    "EventRef",
    "ExcludedDisclosure",
    "InvestigationReport",
    "InvestigationScope",
    "ItemCount",
    "PatientRef",
    "PhiKind",
    "PurposeRule",
    "RecipientRef",
    "RegistryLog",
    "RelayException",
    "RelayIssue",
    "RelayReport",
    "RelayRow",
    "ReportCheckpoint",
    "Sealed",
    "StateCount",
    "StudyRef",
    "TimelineEntry",
    "TruncatedAnswer",
    "accounting_period_start",
    "build_disclosures",
    "build_investigation",
    "build_relay_report",
    "canonical_json",
    "check_identifier",
    "check_window",
    "checkpoint_facts",
    "describe_phi",
    "digest",
    "digest_of",
    "disclosed_phi_kinds",
    "disclosure_rule",
    "is_completed",
    "is_disclosure",
    "parse_as_of",
    "parse_as_of_notes",
    "phi_kinds",
    "refs_from_report",
    "seal",
    "sealed_csv",
    "sealed_html",
    "sealed_json",
    "to_csv",
    "to_html",
    "to_json",
    "with_unreadable",
]
