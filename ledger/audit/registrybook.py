"""The ports the registry is read and written through (``ledger registry show``, the
``/v1/registry`` API): what a read of the registry log(s) returns, and how a registry
file sent to the API is parsed and emitted.

Invariant: a ``RegistryRead`` holds every RegistryChange leaf of the registry logs below
the sizes it names, and nothing else; with ``signed`` those sizes are each log's latest
signed checkpoint, which the read carries so an answer can name it. Parsing and emitting
are ports because the ledger never imports the producer library: the composition root
(``ledgerctl``) backs them with ``producers.registry``, and a file is refused whole
(``RegistryBodyError`` naming every bad line) or emitted whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ledger.audit.registry import RegistryChangeRecord, RegistryTimeline
from ledger.errors import MalformedInputError


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryLog:
    """One registry log as a read saw it: leaves ``[0, size)`` were read; ``checkpoint``
    is the signed note of that size (None when no checkpoint of that size was asked
    for, or none is signed yet)."""

    log_id: int
    origin: str
    size: int
    checkpoint: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryRead:
    """The registry as read from its logs: its timeline and what was read."""

    timeline: RegistryTimeline
    logs: tuple[RegistryLog, ...]
    #: Leaves of the registry logs that are not a readable RegistryChange (`ledger
    #: verify` reports them; no answer can use them).
    undecodable: int = 0
    #: Every change in the order the registry applies them (event time, then position):
    #: ``timeline.changes()``, computed once by whoever builds the read (``of``).
    ordered: tuple[RegistryChangeRecord, ...] = ()

    @classmethod
    def of(
        cls, timeline: RegistryTimeline, logs: Sequence[RegistryLog], undecodable: int = 0
    ) -> RegistryRead:
        return cls(
            timeline=timeline,
            logs=tuple(logs),
            undecodable=undecodable,
            ordered=tuple(timeline.changes()),
        )

    def changes(self) -> Sequence[RegistryChangeRecord]:
        return self.ordered if self.ordered or not self.timeline.size else self.timeline.changes()


class RegistryBook(Protocol):
    """Reads of the registry log(s) (role ``ledger_reader`` is enough)."""

    async def read(self, *, signed: bool = True) -> RegistryRead:
        """Every change below each registry log's latest signed checkpoint (``signed``)
        or below its current size."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyProblem:
    """One bad line of a registry body (line 0: the body as a whole)."""

    line: int
    field: str
    reason: str


class RegistryBodyError(MalformedInputError):
    """A registry body refused whole: ``problems`` names every bad line."""

    def __init__(self, problems: Sequence[BodyProblem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the registry body; nothing was applied")
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownIds:
    """What the registry already holds, so a body may name it without defining it."""

    organizations: frozenset[str]
    users: frozenset[str]


C_co = TypeVar("C_co", covariant=True)
C_contra = TypeVar("C_contra", contravariant=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedBody(Generic[C_co]):
    """Every change a body makes (opaque to the ledger: the sink's type), and a count per
    (kind, operation) in the order applied."""

    changes: tuple[C_co, ...]
    counts: tuple[tuple[str, str, int], ...]


class RegistryParser(Protocol[C_co]):
    """A registry file's bytes (``media``: ``csv`` or ``json``) -> its changes, authored by
    ``author_user_id`` in ``author_role``; ``RegistryBodyError`` when any line is bad."""

    def parse(
        self, data: bytes, *, media: str, author_user_id: str, author_role: str, known: KnownIds
    ) -> ParsedBody[C_co]: ...


class RegistrySink(Protocol[C_contra]):
    """Emits parsed changes (to the registry topic); returns how many were taken."""

    async def submit(self, changes: Sequence[C_contra]) -> int: ...


def known_ids(read: RegistryRead) -> KnownIds:
    """Every organization and user the registry has ever held, in any period (a body
    naming one is not a dangling reference)."""
    organizations, users = set(), set()
    for change in read.changes():
        identity = change.identity
        if identity[0] == "ORGANIZATION":
            organizations.add(identity[1])
        elif identity[0] == "MEMBER":
            users.add(identity[1])
    return KnownIds(organizations=frozenset(organizations), users=frozenset(users))
