"""The remembered tree grown by a round's new leaves, judged at every signed size on the way.

Invariant: the tree only grows from the remembered compact range (never recomputed from
anything the ledger serves about the old part), so a root it gives is the root of the
remembered history extended by exactly the leaves fed; the new state exists only when
the goal checkpoint's root is reproduced and nothing on the way disagreed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from ledger.log.checkpoint import Checkpoint
from ledger.log.merkle import TreeBuilder, leaf_hash
from ledger.log.tiles import TILE_WIDTH
from ledger.verify.monitor import MonitorFinding, Remembered

__all__ = ["Growth", "judge_tile"]


class Growth:
    """The remembered tree grown by the new leaves (``feed``, from the remembered size on)
    up to the goal checkpoint; every served checkpoint in between (other endpoints' heads,
    the goal endpoint's checkpoint history) must have the root the leaves give at its
    size.  ``finish``: the new state when the goal's root is reproduced, else None and the
    findings."""

    def __init__(
        self,
        mem: Remembered,
        heads: Mapping[str, Checkpoint],
        goal: tuple[str, Checkpoint],
        history: Iterable[Checkpoint] = (),
    ) -> None:
        self.mem = mem
        self.endpoint, self.goal = goal
        self.builder = TreeBuilder.from_state(size=mem.size, hashes=mem.compact)
        between = range(mem.size + 1, goal[1].size)
        self.wanted: dict[int, list[tuple[str | None, Checkpoint]]] = {}
        for cp in history:  # the goal endpoint's own signed history: None
            if cp.size in between:
                self.wanted.setdefault(cp.size, []).append((None, cp))
        for endpoint, cp in heads.items():
            if cp.size in between:
                self.wanted.setdefault(cp.size, []).append((endpoint, cp))
        self.found: list[MonitorFinding] = []
        #: Level-0 tiles completed by fed leaves only: ``(tile index, 256 leaf hashes)``,
        #: for the caller to compare with the hash tiles served (and then clear).
        self.completed: list[tuple[int, bytes]] = []
        self._tile: list[bytes] | None = None

    @property
    def size(self) -> int:
        return self.builder.size

    def feed(self, index: int, leaf: bytes) -> bool:
        """Append leaf ``index``; False once nothing more is wanted (the goal is reached,
        or a leaf is missing: then the rest cannot be checked)."""
        builder = self.builder
        if builder.size >= self.goal.size or index != builder.size:
            return False
        hashed = leaf_hash(leaf)
        builder.append(hashed)
        self._collect(index, hashed)
        for endpoint, cp in self.wanted.get(builder.size, ()):
            if builder.root() != cp.root_hash:
                self.found.append(self._differs(endpoint, builder.size))
        return builder.size < self.goal.size

    def _collect(self, index: int, hashed: bytes) -> None:
        if index % TILE_WIDTH == 0:
            self._tile = []
        if self._tile is None:
            return  # this tile began before the remembered size: its head is not known
        self._tile.append(hashed)
        if len(self._tile) == TILE_WIDTH:
            self.completed.append((index // TILE_WIDTH, b"".join(self._tile)))
            self._tile = None

    def _differs(self, endpoint: str | None, size: int) -> MonitorFinding:
        if endpoint is None:  # in the goal endpoint's own checkpoint history
            return MonitorFinding(
                kind="fork", log=self.mem.origin, endpoint=self.endpoint, checkpoint_size=size,
                detail=f"its checkpoint history holds a signed checkpoint of size {size} "
                "whose root the log's leaves do not give: two histories are signed",
            )  # fmt: skip
        return MonitorFinding(
            kind="split_view", log=self.mem.origin, endpoint=endpoint, checkpoint_size=size,
            detail=f"its signed root at size {size} is not the root of the leaves "
            f"{self.endpoint} serves: the endpoints serve different histories",
        )  # fmt: skip

    def finish(self, note: str) -> tuple[Remembered | None, list[MonitorFinding]]:
        mem, cp, builder = self.mem, self.goal, self.builder
        if builder.size < cp.size:
            return None, [*self.found, _missing(mem.origin, self.endpoint, builder.size, cp.size)]
        if builder.root() != cp.root_hash:
            self.found.append(MonitorFinding(
                kind="entries_mismatch", log=mem.origin, endpoint=self.endpoint,
                checkpoint_size=cp.size,
                detail=f"leaves {mem.size}..{cp.size - 1} appended to the verified tree of "
                f"size {mem.size} do not give the signed root of size {cp.size}",
            ))  # fmt: skip
        if self.found:
            return None, self.found
        grown = replace(mem, note=note, size=cp.size, root=cp.root_hash, compact=builder.hashes)
        return grown, []


def _missing(origin: str, endpoint: str, at: int, size: int) -> MonitorFinding:
    return MonitorFinding(
        kind="leaves_missing", log=origin, endpoint=endpoint, checkpoint_size=size,
        detail=f"leaf {at} is not served, yet the signed checkpoint of size {size} covers "
        "it: the log was truncated or rows were removed",
    )  # fmt: skip


def judge_tile(
    origin: str, endpoint: str, index: int, expected: bytes, served: bytes | None
) -> MonitorFinding | None:
    """A served level-0 hash tile against the leaf hashes of the leaves it covers: the
    tiles are what proofs (and the browser verifier) are computed from."""
    if served == expected:
        return None
    what = "is not served" if served is None else "differs from the hashes of its leaves"
    first = index * TILE_WIDTH
    return MonitorFinding(
        kind="tile_mismatch", log=origin, endpoint=endpoint, checkpoint_size=None,
        detail=f"hash tile 0/{index} (leaves {first}..{first + TILE_WIDTH - 1}) {what}: "
        "proofs computed from it are wrong",
    )  # fmt: skip
