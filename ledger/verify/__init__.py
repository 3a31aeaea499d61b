"""Offline verification of one Merkle log (or a whole export bundle) from its stored data.

Modules: ``log`` (one streaming pass), ``checkpoints``, ``tilecheck``, ``events`` (index
rows), ``checks`` (the extension point for extra per-leaf and per-row checks), ``trust``
(the auditor's keys and kept checkpoints), ``bundles``; ``findings`` and ``sources`` are
the values and inputs.

Invariant: ``verify_log`` is pure apart from consuming the iterators of its ``LogSource``;
it never stops at the first problem and never raises because the *data* is bad -- every
inconsistency becomes a ``Finding`` with a stable ``kind`` (``FINDING_KINDS``), located by
leaf index, checkpoint size and/or tile wherever the data allows.  A report with no findings
(``LogReport.ok``) means: every checkpoint is signed by a trusted key, names this log and
has a root equal to the RFC 6962 root recomputed from the leaves; the leaf indexes are
exactly ``0..n-1``; every stored tile equals the tree nodes recomputed from the leaves, and
every full tile that must exist does; and (with ``check_index``) every leaf decodes to an
event whose projection equals its one ``events``-table row, with no row left over.

What is recomputed, and how:

* Checkpoints (a).  Each note is opened with the trusted verifiers (unknown keys only or a
  bad signature by a trusted key -> ``checkpoint_signature``), its origin compared with the
  log's (``checkpoint_origin``) and its size with the sizes listed before it
  (``checkpoint_order``).  Only signed checkpoints of this log are used below.
* Leaves (b).  Entries are streamed once.  Indexes must run 0, 1, 2, ...; a bounded reorder
  window absorbs local disorder (``leaf_disorder``), a gap becomes ``leaf_missing``, a second
  entry for an index ``leaf_duplicate`` (the first one is used).  Every leaf is hashed
  (``SHA-256(0x00 || leaf)``) and compared with the stored level-0 tile entry.  A leaf that is
  not a version-1 leaf of this log's topic and partition is ``leaf_malformed`` or
  ``leaf_misplaced``.
* Roots (c, d).  The tree is rebuilt in 256-leaf blocks: each block's root (the tree node at
  level 8) feeds a ``merkle.TreeBuilder`` whose leaves are block roots, which is the same
  RFC 6962 tree for every size that is a multiple of 256; for any other checkpoint size the
  builder's compact range is completed with the partial block via
  ``TreeBuilder.from_state``. No node is hashed twice.  Memory is O(log n) for the roots;
  the tile checks below add 32 bytes per 256 leaves plus the stored higher tiles (1/256 of
  the level-0 tile data).  Successive checkpoints of one log are mutually consistent (the
  later tree extends the earlier) if and only if each root matches the recomputation from
  the same leaf sequence -- each is then the MTH of a prefix of one sequence -- so no
  consistency proof is needed, and a pair of successive checkpoints whose roots both verify
  needs no further check.  A checkpoint larger than the leaves present is
  ``checkpoint_beyond_log``; one whose root differs is ``checkpoint_root_mismatch``, located
  by the first altered leaf found after the last *verified* checkpoint (not merely the
  previous one: a failed checkpoint proves nothing about the leaves below it), else by a
  disagreeing higher tile, else by the leaf range ``[last verified size, size)``.  A missing
  leaf is replaced by its stored level-0 tile hash when that tile exists (so the checkpoints
  still prove what the leaf hashed to); otherwise the checkpoints covering it are
  ``checkpoint_unverifiable``.
* Tiles (e).  Level-0 tiles are compared entry by entry with the recomputed leaf hashes, and
  every higher tile (level L, entry j) with the tree node at level 8L recomputed from the
  leaves -- which equals "the root of level-(L-1) tile j" whenever that tile is right, and
  blames the right tile when it is not.  A disagreement is attributed with the checkpoints:
  if a verified checkpoint covers the leaves, the stored tile is wrong (``tile_mismatch``);
  otherwise the leaves are suspect (``leaf_hash_mismatch`` for level 0; ``tile_mismatch``
  says so for higher levels).  Full tiles that should exist are ``tile_missing``; tiles for
  leaves beyond both the entries and the claimed size are ``tile_beyond_log``.
* Kept checkpoints (g, optional).  A checkpoint the auditor kept from an earlier run joins
  the list, marked trusted: it must be reproduced by the same leaves
  (``trusted_checkpoint_mismatch``: the history was replaced) and must not exceed them
  (``trusted_checkpoint_beyond_log``: the log was truncated or is shown stale).  The head
  reported is the largest verified checkpoint of the ledger's own.
* Index (f, optional).  Each leaf's value is decoded with the stored writer schemas and
  projected (``project_event``) onto the ``events`` columns, and the row with the same
  ``leaf_index`` must match column by column (``index_mismatch`` names the column but never
  echoes values: findings carry no PHI).  ``event_time`` compares as an instant and
  ``event_id`` as a UUID.  For a relay, ``action``/``outcome``/``purpose_of_use`` are
  consumer policy rather than event fields and are not compared.

Sources are read in one pass each and are expected in ascending order (entries and rows by
``leaf_index``, level-0 tiles by index; higher tiles may come in any order); disorder beyond
the reorder windows loses precision, never soundness.  Findings of one kind beyond
``max_findings_per_kind`` are counted (``findings_truncated``), not listed.
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
