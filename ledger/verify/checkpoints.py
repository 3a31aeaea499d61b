"""A log's checkpoints: which are signed by a trusted key for this log, which the leaves
reproduce, and where the leaves of the others differ.

Invariant: only checkpoints signed by a trusted key and naming this log are judged; the
head is the largest one of the ledger's own (never an auditor's) whose root the leaves
reproduce; a checkpoint the auditor kept (``trusted``) is judged by the same leaves, so it
fails exactly when the log was truncated (``trusted_checkpoint_beyond_log``) or its
history replaced (``trusted_checkpoint_mismatch``).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import LedgerError, MalformedInputError, VerificationError
from ledger.log.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from ledger.log.cosignature import WitnessPolicy, check_cosignatures
from ledger.log.note import Verifier
from ledger.verify.findings import Findings

__all__ = ["CheckpointBook", "Failed", "Signed", "unverified_body"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    size: int
    root: bytes
    note: str = ""
    trusted: bool = False  # kept by the auditor, not read from the ledger
    witnessed_by: tuple[str, ...] = ()  # witnesses of the policy whose cosignature verifies


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    size: int
    since: int  # largest verified size below this one when it was checked
    unverifiable_at: int | None  # first unrecoverable missing leaf, when not recomputable
    trusted: bool = False


def unverified_body(note: str) -> Checkpoint | None:
    """The checkpoint body of a note without checking signatures (for locating findings)."""
    split = note.rfind("\n\n")
    if split < 0:
        return None
    try:
        return parse_checkpoint(note[: split + 1])
    except MalformedInputError:
        return None


class CheckpointBook:
    """The checkpoints of one verification run, and how each was judged."""

    def __init__(
        self,
        origin: str,
        verifiers: Sequence[Verifier],
        f: Findings,
        trusted: Sequence[str],
        witnesses: WitnessPolicy | None = None,
    ) -> None:
        self.origin = origin
        self.witnesses = witnesses
        self.verifiers = tuple(verifiers)
        self.f = f
        self.trusted = tuple(trusted)
        self.signed: list[Signed] = []
        self.failed: list[Failed] = []
        self.head: Signed | None = None
        self.checkpoints_checked = 0
        self.checkpoints_verified = 0
        self.verified_size = 0

    def load(self, rows: Sequence[tuple[int, str]]) -> None:
        """Open every note with the trusted keys; keep the signed ones of this log, and the
        auditor's kept ones, in size order."""
        largest = -1
        for number, (row_size, note) in enumerate(rows):
            self.checkpoints_checked += 1
            body = unverified_body(note)
            size = body.size if body is not None else row_size
            try:
                cp = open_checkpoint(note, self.verifiers)
            except VerificationError as exc:
                self.f.add(
                    "checkpoint_signature",
                    f"checkpoint #{number} (size {size}) is not trusted: {exc}",
                    checkpoint_size=size,
                )
                continue
            except MalformedInputError as exc:
                self.f.add(
                    "checkpoint_malformed",
                    f"checkpoint #{number} (row size {row_size}) is malformed: {exc}",
                    checkpoint_size=row_size if type(row_size) is int else None,
                )
                continue
            if cp.size != row_size:
                self.f.add(
                    "checkpoint_malformed",
                    f"checkpoint #{number}: its row says size {row_size!r} but the signed note "
                    f"says {cp.size} (the note is used)",
                    checkpoint_size=cp.size,
                )
            if cp.origin != self.origin:
                self.f.add(
                    "checkpoint_origin",
                    f"checkpoint #{number} (size {cp.size}) is signed for origin "
                    f"{cp.origin!r}, not this log",
                    checkpoint_size=cp.size,
                )
                continue
            if cp.size < largest:
                self.f.add(
                    "checkpoint_order",
                    f"checkpoint #{number} has size {cp.size}, after one of size {largest}",
                    checkpoint_size=cp.size,
                )
            largest = max(largest, cp.size)
            witnessed = self._cosignatures(number, cp.size, note)
            self.signed.append(
                Signed(size=cp.size, root=cp.root_hash, note=note, witnessed_by=witnessed)
            )
        self._load_trusted()
        self.signed.sort(key=lambda c: c.size)

    def _cosignatures(self, number: int, size: int, note: str) -> tuple[str, ...]:
        """The policy's witnesses that cosigned this checkpoint; a finding per cosignature
        line that names a policy key and does not verify (forged, or for another text)."""
        if self.witnesses is None:
            return ()
        try:
            check = check_cosignatures(note, self.witnesses)
        except MalformedInputError as exc:
            self.f.add(
                "cosignature_invalid",
                f"checkpoint #{number} (size {size}): cosignatures unreadable: {exc}",
                checkpoint_size=size,
            )
            return ()
        for key in check.invalid:
            self.f.add(
                "cosignature_invalid",
                f"checkpoint #{number} (size {size}) carries a cosignature by witness key "
                f"{key} that does not verify (forged, or made for another checkpoint)",
                checkpoint_size=size,
            )
        return check.witnessed_by

    def report_witnesses(self) -> None:
        """With a policy: the verified head must carry ``threshold`` valid cosignatures by
        the policy's witnesses (which vouches, by consistency, for all it extends)."""
        policy, head = self.witnesses, self.head
        if policy is None or head is None:
            return
        # The head's checkpoint may be listed twice (pinned, then listed with more lines).
        same = [c for c in self.signed if (c.size, c.root) == (head.size, head.root)]
        by = tuple(dict.fromkeys(w for c in same if not c.trusted for w in c.witnessed_by))
        if len(by) >= policy.threshold:
            return
        failed = {c.size for c in self.failed}
        witnessed = [
            c.size
            for c in self.signed
            if len(c.witnessed_by) >= policy.threshold and c.size not in failed
        ]
        best = max((s for s in witnessed if s <= head.size), default=None)
        had = ", ".join(by) or "none"
        since = (
            "no checkpoint carries enough cosignatures"
            if best is None
            else f"the largest witnessed checkpoint has size {best}"
        )
        self.f.add(
            "checkpoint_unwitnessed",
            f"the newest verified checkpoint (size {head.size}) has valid cosignatures by "
            f"{len(by)} of the {policy.threshold} witnesses required "
            f"(cosigned by: {had}); {since}. A checkpoint signed moments ago may not have "
            "been submitted yet: run again",
            checkpoint_size=head.size,
        )

    def _load_trusted(self) -> None:
        """The auditor's kept checkpoints of this log join the list, marked as trusted: each
        must be reproduced by the same leaves, which proves the log only grew since."""
        for number, note in enumerate(self.trusted):
            try:
                cp = open_checkpoint(note, self.verifiers)
            except LedgerError as exc:
                self.f.add("trusted_checkpoint_invalid", f"trusted checkpoint #{number}: {exc}")
                continue
            if cp.origin != self.origin:
                self.f.add(
                    "trusted_checkpoint_unknown_log",
                    f"trusted checkpoint #{number} is for log {cp.origin!r}, not this one",
                )
                continue
            self.signed.append(Signed(size=cp.size, root=cp.root_hash, note=note, trusted=True))

    def judge(self, cp: Signed, root: bytes | None, poisoned: int | None) -> None:
        """Record whether ``root`` (None: not recomputable, the first missing leaf being
        ``poisoned``) is the signed root of ``cp``."""
        if root is not None and root == cp.root:
            if not cp.trusted:
                self.checkpoints_verified += 1
                if self.head is None or cp.size >= self.head.size:
                    self.head = cp
            self.verified_size = max(self.verified_size, cp.size)
            return
        self.failed.append(
            Failed(
                size=cp.size,
                since=self.verified_size,
                unverifiable_at=poisoned if root is None else None,
                trusted=cp.trusted,
            )
        )

    def report_beyond(self, cps: Sequence[Signed], n: int) -> None:
        """Checkpoints larger than the ``n`` leaves present: the ledger's own are
        ``checkpoint_beyond_log``; one the auditor kept means the log lost leaves."""
        for cp in cps:
            if cp.trusted:
                self.f.add(
                    "trusted_checkpoint_beyond_log",
                    f"the checkpoint you kept has size {cp.size} but the log has only {n} "
                    "leaves under its signed head: it was truncated or rolled back",
                    checkpoint_size=cp.size,
                )
                continue
            self.f.add(
                "checkpoint_beyond_log",
                f"checkpoint of size {cp.size} covers more than the {n} leaves present",
                checkpoint_size=cp.size,
            )

    def report_failed(
        self,
        l0_mismatch: Sequence[int],
        tile_ranges: Sequence[tuple[int, int, tuple[int, int]]],
        gaps: Sequence[tuple[int, int]],
    ) -> None:
        """One finding per checkpoint that failed, located as precisely as the data allows:
        at the first altered leaf, else a disagreeing tile, else a gap, else a leaf range.
        Checkpoints located at one leaf are one finding."""
        altered = sorted(i for i in l0_mismatch if i >= self.verified_size)
        ranges = sorted(tile_ranges)
        merged: dict[int, list[Failed]] = {}  # located at one leaf: one finding
        texts: dict[int, str] = {}
        for cp in self.failed:
            if cp.unverifiable_at is not None:
                self.f.add(
                    "checkpoint_unverifiable",
                    f"checkpoint of size {cp.size} cannot be recomputed: leaf "
                    f"{cp.unverifiable_at} is missing and no stored tile holds its hash",
                    leaf_index=cp.unverifiable_at,
                    checkpoint_size=cp.size,
                )
                continue
            if cp.trusted:
                self.f.add(
                    "trusted_checkpoint_mismatch",
                    f"the checkpoint you kept (size {cp.size}) is not reproduced by the log's "
                    f"leaves 0..{cp.size - 1}: the history you saw was replaced",
                    checkpoint_size=cp.size,
                )
                continue
            where, text, located = self._failed_location(cp, altered, ranges, gaps)
            if located:
                merged.setdefault(where, []).append(cp)
                texts.setdefault(where, text)
            else:
                self._root_mismatch([cp], where, text)
        for where, cps in merged.items():
            self._root_mismatch(cps, where, texts[where])

    def _root_mismatch(self, cps: list[Failed], where: int, text: str) -> None:
        first, last = cps[0].size, cps[-1].size
        which = (
            f"checkpoint of size {first}"
            if len(cps) == 1
            else f"{len(cps)} checkpoints (sizes {first}..{last})"
        )
        self.f.add(
            "checkpoint_root_mismatch",
            f"{which}: the root recomputed from the leaves differs from the signed root; {text}",
            leaf_index=where,
            checkpoint_size=first,
        )

    def _failed_location(
        self,
        cp: Failed,
        altered: list[int],
        ranges: list[tuple[int, int, tuple[int, int]]],
        gaps: Sequence[tuple[int, int]],
    ) -> tuple[int, str, bool]:
        """Where a checkpoint's leaves differ: ``(leaf, text, located at a definite leaf)``."""
        k = bisect.bisect_left(altered, cp.since)
        if k < len(altered) and altered[k] < cp.size:
            where = altered[k]
            return (
                where,
                f"first altered leaf: {where} (its hash differs from tile 0/{where >> 8})",
                True,
            )
        hit = next((r for r in ranges if r[1] > cp.since and r[0] < cp.size), None)
        if hit is not None:
            where = max(hit[0], cp.since)
            return (
                where,
                (
                    f"the difference is in leaves {where}..{min(hit[1], cp.size) - 1} "
                    f"(tile {hit[2][0]}/{hit[2][1]} disagrees with them)"
                ),
                False,
            )
        gap = next((g for g in gaps if g[1] > cp.since and g[0] < cp.size), None)
        if gap is not None:
            where = max(gap[0], cp.since)
            return (
                where,
                (
                    f"leaf {where} is missing and its stored tile hash did not reproduce "
                    f"the root; the difference is in leaves {cp.since}..{cp.size - 1}"
                ),
                False,
            )
        return (
            cp.since,
            (
                f"the difference is within leaves {cp.since}..{cp.size - 1} "
                "(no stored tile locates it)"
            ),
            False,
        )
