"""What a verification reports: stable finding codes, findings and per-log reports.

Invariant: every ``Finding.kind`` is a key of ``FINDING_KINDS`` and no ``detail`` carries an
event value (findings are safe to show to anyone: no PHI); a ``LogReport`` is ``ok`` exactly
when it has no finding.  A new check adds its codes to ``FINDING_KINDS`` here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "FINDING_KINDS",
    "Finding",
    "Findings",
    "LogReport",
    "ProgressCallback",
    "range_text",
    "ranges",
    "tiles_text",
]

FINDING_KINDS: Final[Mapping[str, str]] = {
    "checkpoint_malformed": "a checkpoint note does not parse, or its row's size differs",
    "checkpoint_signature": "no trusted key verifies the checkpoint (or a trusted key's "
    "signature is invalid)",
    "checkpoint_origin": "a signed checkpoint names another log",
    "checkpoint_order": "a checkpoint is smaller than one listed before it",
    "checkpoint_root_mismatch": "the root recomputed from the leaves differs from the signed one",
    "checkpoint_unverifiable": "a leaf it covers is missing and no stored hash replaces it",
    "checkpoint_beyond_log": "the checkpoint covers more leaves than are present",
    "checkpoint_unwitnessed": "the newest verified checkpoint lacks the cosignatures of the k "
    "witnesses the policy requires (docs/design/witnesses.md)",
    "cosignature_invalid": "a cosignature line by a configured witness key does not verify",
    "leaf_missing": "no entry for a leaf index (or a range of them)",
    "leaf_duplicate": "a second entry for a leaf index (the first is the one verified)",
    "leaf_disorder": "an entry is stored after an entry with a larger index",
    "leaf_out_of_range": "an entry's index is implausibly far ahead; it is not verified",
    "leaf_malformed": "the bytes are not a version-1 leaf",
    "leaf_misplaced": "the leaf records another topic or partition than its log's",
    "leaf_offset_order": "the leaf's Kafka offset does not exceed the previous leaf's",
    "leaf_hash_mismatch": "the leaf's hash differs from its stored level-0 tile entry and no "
    "verified checkpoint vouches for the leaf",
    "log_size_mismatch": "more entries are present than the source claims",
    "tile_malformed": "a tile record has a bad level, index or length",
    "tile_duplicate": "a tile is stored twice",
    "tile_mismatch": "a stored tile entry differs from the node recomputed from the leaves",
    "tile_missing": "full tiles that must exist are absent",
    "tile_beyond_log": "tiles cover leaves beyond both the entries and the claimed size",
    "event_undecodable": "the leaf value does not decode with the stored writer schemas",
    "index_missing": "no index row for a leaf",
    "index_orphan": "an index row for a leaf that is not present",
    "index_duplicate": "a second index row for a leaf",
    "index_disorder": "an index row out of order (not compared)",
    "index_malformed": "an index row without a usable leaf_index",
    "index_mismatch": "an index row disagrees with its leaf's event (the column is named)",
    "disclosure_mismatch": "the disclosed ranges of a leaf's index row (its read_disclosures "
    "rows) disagree with what its read recorded (ledger.verify.disclosures)",
    "patients_mismatch": "the disclosed patients of a leaf's index row (its event_patients "
    "rows) disagree with what its access event recorded (ledger.verify.patients)",
    "producer_unauthenticated": "a leaf has no producer seal reference in a bundle with the "
    "producer key registry (ledger.verify.producers)",
    "producer_unknown_seal": "a leaf's seal reference names a seal that is not in the bundle's "
    "producer-seals.jsonl",
    "producer_bad_envelope": "a leaf's producer seal is malformed (wrong size, or its id is not "
    "its hash), or the leaf's reference points past the seal's end",
    "producer_unknown_key": "a leaf's producer seal names a key not in the bundle's registry",
    "producer_bad_signature": "a leaf's producer seal does not verify, or does not hold this "
    "leaf's hash at the referenced entry",
    "producer_mismatch": "a leaf is validly sealed, but by another producer's key than the one "
    "its event names",
    "producer_envelope_orphan": "a producer seal reference for a leaf index that is not in the log",
    "schema_invalid": "a stored writer schema does not match its fingerprint",
    "source_error": "the source could not be read completely",
    "findings_truncated": "more findings of one kind than are listed",
    "verifier_key_unknown": "no checkpoint of any log is signed by a key you gave (the one "
    "finding names the keys that did sign)",
    "trusted_checkpoint_invalid": "a checkpoint you kept does not parse or is not signed by "
    "a key you gave",
    "trusted_checkpoint_unknown_log": "a checkpoint you kept names a log this ledger does not have",
    "trusted_checkpoint_beyond_log": "a checkpoint you kept is larger than the log now is: the "
    "log was truncated or rolled back",
    "trusted_checkpoint_mismatch": "the log's leaves do not reproduce a checkpoint you kept: "
    "its history was replaced",
    # Seals of time-sharded logs (ledger.verify.seals, docs/archive.md).
    "seal_invalid": "the log's seal does not parse or no trusted key verifies it",
    "seal_origin": "the seal names another log",
    "seal_row_mismatch": "the seal's stored row (size, next log, next offset) disagrees with "
    "its signed note",
    "seal_size_mismatch": "the log holds (or claims) another number of leaves than its seal",
    "seal_unverified": "no trusted checkpoint at the seal's size is present to back its root",
    "seal_root_mismatch": "the seal's root differs from the signed root at its size",
    "checkpoint_beyond_seal": "a checkpoint larger than the log's seal: the log was forked "
    "after it was sealed",
    "seal_missing": "a log of an archive carries no seal",
    "log_not_sealed": "(a warning) a closed log, one with a successor, has no seal yet",
    "log_archived": "(a warning) the log's month left the database: verify its archive",
    "chain_next_mismatch": "the seal names another next log, or another first offset, than "
    "the partition's next log has",
    "chain_offset_mismatch": "the log does not start where the previous period's seal says",
    "chain_unchecked": "(a warning) no seal of the previous period leads into this log, so "
    "where it starts is not checked",
    # Archive bundles (ledger.verify.archives).
    "archive_manifest": "the archive's manifest is unusable (no period or file list)",
    "archive_file_missing": "a file the archive's manifest lists is absent",
    "archive_file_extra": "a file is present that the archive's manifest does not list",
    "archive_file_digest": "a file's SHA-256 differs from the manifest's",
    "archive_period_mismatch": "a log of the archive belongs to another period",
}
"""Every stable finding code, with what it means."""

ProgressCallback = Callable[[str, int, int], None]
"""``progress(origin, leaves_done, leaves_total)``, called at most every ~50k leaves."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One inconsistency.  ``kind`` is a stable code from ``FINDING_KINDS``; ``log`` is the
    log's origin; ``tile`` is ``(level, index)`` for tile findings; ``detail`` is for people
    and never contains event values (no PHI)."""

    kind: str
    log: str
    leaf_index: int | None
    checkpoint_size: int | None
    detail: str
    tile: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogReport:
    """The outcome of verifying one log.

    ``leaves_checked`` counts distinct leaf indexes present and hashed; ``checkpoints_checked``
    the checkpoint notes examined, ``checkpoints_verified`` those whose signature, origin and
    root all verified, and ``verified_size`` the largest such size (every leaf below it is
    proven); ``events_checked`` counts index rows compared with their leaf.  The head is the
    largest verified checkpoint read from the ledger (never one the auditor supplied): its
    signed note, size and root, what an auditor keeps for ``--trusted-checkpoint``.
    """

    origin: str
    leaves_checked: int
    checkpoints_checked: int
    findings: tuple[Finding, ...]
    checkpoints_verified: int = 0
    verified_size: int = 0
    events_checked: int = 0
    head_note: str | None = None
    head_size: int = 0
    head_root: bytes | None = None
    #: What is worth knowing but is no inconsistency (``log_not_sealed``): never fails.
    warnings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.findings


class Findings:
    """Collects one log's findings; beyond ``cap`` of one kind they are only counted."""

    __slots__ = ("_cap", "_counts", "_items", "_origin")

    def __init__(self, origin: str, cap: int) -> None:
        self._origin = origin
        self._cap = cap
        self._counts: dict[str, int] = {}
        self._items: list[Finding] = []

    def add(
        self,
        kind: str,
        detail: str,
        *,
        leaf_index: int | None = None,
        checkpoint_size: int | None = None,
        tile: tuple[int, int] | None = None,
    ) -> None:
        n = self._counts.get(kind, 0) + 1
        self._counts[kind] = n
        if n <= self._cap:
            self._items.append(
                Finding(
                    kind=kind,
                    log=self._origin,
                    leaf_index=leaf_index,
                    checkpoint_size=checkpoint_size,
                    detail=detail,
                    tile=tile,
                )
            )

    def count(self, kind: str, extra: int) -> None:
        self._counts[kind] = self._counts.get(kind, 0) + extra

    def result(self) -> tuple[Finding, ...]:
        def position(f: Finding) -> int:
            if f.leaf_index is not None:
                return f.leaf_index
            if f.checkpoint_size is not None:
                return max(f.checkpoint_size - 1, 0)
            return -1

        items = sorted(self._items, key=position)
        for kind, n in sorted(self._counts.items()):
            if n > self._cap:
                items.append(
                    Finding(
                        kind="findings_truncated",
                        log=self._origin,
                        leaf_index=None,
                        checkpoint_size=None,
                        detail=f"{n - self._cap} more {kind} findings are not listed ({n} in all)",
                    )
                )
        return tuple(items)


def range_text(start: int, end: int, noun: str) -> str:
    return f"{noun} {start}" if end - start == 1 else f"{noun}s {start}..{end - 1} ({end - start})"


def tiles_text(level: int, start: int, end: int) -> str:
    if end - start == 1:
        return f"tile {level}/{start}"
    return f"tiles {level}/{start}..{level}/{end - 1} ({end - start})"


def ranges(values: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1] = (out[-1][0], v + 1)
        else:
            out.append((v, v + 1))
    return out
