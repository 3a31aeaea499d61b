"""Offline verification of one Merkle log (or a whole export bundle) from its stored data.

Owns the export bundle format, the findings, the sources and the verifier (``verify_log``:
a coordinator over ``checkpoints``, ``sequence``, ``tilecheck``, ``events`` and ``checks``).
May import ``ledger.log``, ``ledger.audit`` and ``ledger.errors``; never ``ledger.pg``,
``ledger.http``, the consumer or the producer library (it must not trust what it checks).

Invariant: ``verify_log`` is pure apart from consuming the iterators of its ``LogSource``;
it never stops at the first problem and never raises because the *data* is bad: every
inconsistency becomes a ``Finding`` with a stable ``kind`` (``FINDING_KINDS``). A report
with no findings means every checkpoint is signed by a trusted key and has the root
recomputed from the leaves, the leaves are exactly ``0..n-1``, every stored tile equals
the recomputed nodes, and (with ``check_index``) every index row equals its leaf's
projection. How each is recomputed: docs/design/verifier.md.
"""

from __future__ import annotations

from ledger.verify.bundles import BundleLogSource, verify_bundle
from ledger.verify.checks import CheckContext, EventCheck, EventCheckFactory
from ledger.verify.findings import FINDING_KINDS, Finding, LogReport, ProgressCallback
from ledger.verify.log import verify_log
from ledger.verify.projection import project_event
from ledger.verify.sources import BatchedLogSource, LogSource
from ledger.verify.treehash import TILE_HEIGHT, TILE_WIDTH, build_full_tiles
from ledger.verify.trust import (
    checkpoint_origin,
    key_report,
    signing_key_finding,
    trusted_by_origin,
)

__all__ = [
    "FINDING_KINDS",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "BatchedLogSource",
    "BundleLogSource",
    "CheckContext",
    "EventCheck",
    "EventCheckFactory",
    "Finding",
    "LogReport",
    "LogSource",
    "ProgressCallback",
    "build_full_tiles",
    "checkpoint_origin",
    "key_report",
    "project_event",
    "signing_key_finding",
    "trusted_by_origin",
    "verify_bundle",
    "verify_log",
]
