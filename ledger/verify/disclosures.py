"""The read-attribution check: each index row's ``disclosed`` cell against its leaf.

Invariant: a row's ``disclosed`` cell (the leaf's ``read_disclosures`` rows, rendered by
``ledger.audit.disclosure``) equals the ranges its AuditLogUsed v2 event carries, and is empty for
every other event; a disagreement is one ``disclosure_mismatch`` finding per leaf, counting
missing and extra ranges without naming them (no PHI).  A row without the column (a bundle
written before it existed) reads as disclosing nothing.  Plugged in as an ``EventCheck``
(``ledger.verify.checks``); it looks at rows only, so it needs ``check_index``.
"""

from __future__ import annotations

from ledger.audit import disclosure
from ledger.verify.checks import CellCheck, CheckContext

__all__ = ["disclosure_check"]


def disclosure_check(context: CheckContext) -> CellCheck:
    """The ``EventCheckFactory`` for ``checks=`` (one check per log): the ``disclosed``
    cell of each index row against its leaf's event."""
    return CellCheck(context.findings, kind="disclosure_mismatch", problem=disclosure.check)
