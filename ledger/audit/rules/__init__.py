"""Compliance rules: each appended event checked, findings that cite ledger positions.

Owns the rule protocol and the events and findings it works on (``model``), the rules'
configuration (``config``), the rules that need no registry (``bulk``: access.bulk,
``breakglass``: breakglass.unjustified, ``relays``: relay.late, ``transport``:
transport.unencrypted, ``privacy``: the watch-list rules over ``watchlist``, ``hours``:
access.unusual_hours, ``relay_deadlines``: relay.overdue and relay.no_readback), the
registry rules (``checklist``: the checklist for one access; ``registryrules``:
registry.baa_missing, registry.license_missing, registry.credential_missing,
account.shared, account.unknown, account.ended; ``registrywatch``: the registry read into
the evaluator, the settle hold; ``latechanges``: changes known after the alerts they
would have prevented), the evaluator that runs them over each log in leaf order behind
the ``RulesStore`` port (``evaluator``; the registry modules import
``ledger.audit.registry``, which imports this package's ``model``, so they are imported
from their modules, not re-exported here) and an alert's lifecycle (``triage``). Pure: it
imports ``ledger.audit`` and ``ledger.errors``, never a database or HTTP;
``ledger.pg.compliance`` implements the port. Design: docs/design/compliance.md.
"""

from __future__ import annotations

from ledger.audit.rules.config import RulesConfig, parse_config
from ledger.audit.rules.evaluator import (
    Evaluator,
    LeafBatch,
    LogEvaluator,
    PassSummary,
    RulesStore,
    build_rules,
)
from ledger.audit.rules.model import (
    AppendedEvent,
    Evidence,
    Finding,
    PatientRef,
    Position,
    Rule,
    Severity,
)
from ledger.audit.rules.triage import (
    AlertState,
    Disposition,
    Transition,
    check_transition,
    parse_disposition,
    transition,
)

__all__ = [
    "AlertState",
    "AppendedEvent",
    "Disposition",
    "Evaluator",
    "Evidence",
    "Finding",
    "LeafBatch",
    "LogEvaluator",
    "PassSummary",
    "PatientRef",
    "Position",
    "Rule",
    "RulesConfig",
    "RulesStore",
    "Severity",
    "Transition",
    "build_rules",
    "check_transition",
    "parse_config",
    "parse_disposition",
    "transition",
]
