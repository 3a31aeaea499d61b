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


@dataclass(frozen=True, slots=True)
class EmittingRegistrySink:
    """``RegistrySink[RegistryChange]`` over ``emit`` (e.g. ``functools.partial`` of the
    registry import's ``submit_registry_changes`` with the API's settings and a spool of
    its own): returns what ``emit`` says it emitted."""

    emit: Callable[[Sequence[RegistryChange]], Awaitable[int]]

    async def submit(self, changes: Sequence[RegistryChange]) -> int:
        return await self.emit(changes)
