"""Offline verification (kept for its importers): the implementation is the
``ledger.verification`` package, whose docstring says what is checked and how.

Invariant: this module only re-exports ``ledger.verification``'s public names.
"""

from __future__ import annotations

from ledger.verification import (
    FINDING_KINDS,
    TILE_HEIGHT,
    TILE_WIDTH,
    BatchedLogSource,
    BundleLogSource,
    CheckContext,
    EventCheck,
    EventCheckFactory,
    Finding,
    LogReport,
    LogSource,
    ProgressCallback,
    build_full_tiles,
    checkpoint_origin,
    key_report,
    project_event,
    signing_key_finding,
    trusted_by_origin,
    verify_bundle,
    verify_log,
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
