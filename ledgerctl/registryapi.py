"""The API's registry writes, as the composition root backs them: the ``RegistryParser``
port on ``producers.registry.load_registry_bytes`` (the loader of `ledger registry
validate` and `import`, so a body is checked exactly as a file is), and the
``RegistrySink`` port over an emitting function (the registry import's emitter).

Invariant: a body becomes every change or none; each problem the file loader names
becomes a ``BodyProblem`` with its line, field and reason (never a traceback), and the
changes are authored by the principal the API authenticated, never by the body.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ledger.audit.registrybook import BodyProblem, KnownIds, ParsedBody, RegistryBodyError
from ledger.errors import MalformedInputError
from ledgerctl.registryimport import (
    load_stored_registry,
    stored_problems,
    submit_registry_changes,
)
from ledgerctl.settings import Settings
from producers import (
    Author,
    KnownRegistryIds,
    RegistryChange,
    RegistryFileError,
    load_registry_bytes,
)
from producers.errors import ProducerError


class FileRegistryParser:
    """``RegistryParser[RegistryChange]``: a registry body read like a registry file."""

    def parse(
        self, data: bytes, *, media: str, author_user_id: str, author_role: str, known: KnownIds
    ) -> ParsedBody[RegistryChange]:
        if media not in ("csv", "json"):
            raise MalformedInputError("a registry body is CSV or JSON")
        try:
            changes = load_registry_bytes(
                f"body.{media}",
                data,
                author=Author(user_id=author_user_id, role=author_role),
                known=KnownRegistryIds(organizations=known.organizations, users=known.users),
            )
        except RegistryFileError as exc:
            raise RegistryBodyError(
                [BodyProblem(line=p.line, field=p.field, reason=p.reason) for p in exc.problems]
            ) from exc
        except ProducerError as exc:  # the author itself (a subject no change may carry)
            raise MalformedInputError(f"the registry body cannot be authored: {exc}") from exc
        counts = Counter((c.kind.value.lower(), c.operation.value.lower()) for c in changes)
        return ParsedBody(
            changes=changes,
            counts=tuple((kind, op, n) for (kind, op), n in counts.items()),
        )


def checked_emitter(
    settings: Settings, *, spool: str
) -> Callable[[Sequence[RegistryChange]], Awaitable[int]]:
    """The API's emit function: the changes checked against the stored registry exactly as
    `ledger registry import` checks a file (a retire of a record it does not hold, a
    period overlapping a stored one, a stored organization of the wrong kind; refused
    whole with every problem as a ``RegistryBodyError``), then emitted as the registry
    producer through a spool of the API's own."""

    async def emit(changes: Sequence[RegistryChange]) -> int:
        stored = await load_stored_registry(settings)
        # A body's changes are named by their record (kind and id), since the lines of
        # the body are not at hand here.
        named = {(c.kind, c.record.record_id): (_named(c), 0) for c in changes}
        problems = stored_problems(changes, named, stored)
        if problems:
            raise RegistryBodyError(
                [
                    BodyProblem(line=0, field=f"{p.file}: {p.field}", reason=p.reason)
                    for p in problems
                ]
            )
        return await submit_registry_changes(settings, changes, spool=spool)

    return emit


def _named(change: RegistryChange) -> str:
    return f"{change.kind.value.lower()} {change.record.record_id}"


@dataclass(frozen=True, slots=True)
class EmittingRegistrySink:
    """``RegistrySink[RegistryChange]`` over ``emit`` (e.g. ``functools.partial`` of the
    registry import's ``submit_registry_changes`` with the API's settings and a spool of
    its own): returns what ``emit`` says it emitted."""

    emit: Callable[[Sequence[RegistryChange]], Awaitable[int]]

    async def submit(self, changes: Sequence[RegistryChange]) -> int:
        return await self.emit(changes)
