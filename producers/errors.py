"""Errors the producer library raises to its host.

Invariant: the producer library is embedded in third-party hosts and imports
nothing else of this product, so it has its own small root, ``ProducerError``;
its kinds mirror the ledger's (``ledger.errors``): malformed input, unavailable,
pushback. Every error names what the host can do about it.
"""

from __future__ import annotations

from dataclasses import dataclass


class ProducerError(Exception):
    """Root of every deliberate error of the producer library."""


class EventValidationError(ProducerError, ValueError):
    """The event is invalid and was not sent. ``field`` is the dotted path of the bad field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class DecodeError(ProducerError, ValueError):
    """Bytes are not a message this codec can decode. ``reason`` is a stable code."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class EmitterUnavailableError(ProducerError):
    """The emitter is not started or was stopped, or (without a spool) Kafka is unreachable."""


class EmitterPushbackError(ProducerError):
    """The emitter could not accept the event within its time bound; nothing was sent."""


class SpoolFullError(EmitterPushbackError):
    """The local spool already holds ``spool_max_bytes`` of events Kafka has not taken.

    The event was not accepted (it consumed no sequence number). Kafka has been
    unreachable or slow for a while: the spooled events are re-sent, oldest first, as
    soon as it is back. Retry later, slow down, or alert; never drop the audit event.
    """


class SpoolError(ProducerError):
    """The local spool cannot be used: an I/O error, a damaged sequence file, or the
    directory is locked by another emitter. An event this is raised for was not spooled.
    """


class KafkaSettingsError(ProducerError, ValueError):
    """Kafka client security settings are inconsistent (e.g. SASL without a password file),
    or a file they name (CA, certificate, key, password) cannot be used. The message names
    the setting or the file, never a secret."""


class RegistryValidationError(EventValidationError):
    """A compliance-registry change is invalid and was not sent (docs/design/
    compliance-registry.md). ``field`` is the dotted path of the bad field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryProblem:
    """One bad line of a registry file: where it is, which field, and why."""

    file: str
    #: 1-based line of the row (CSV) or of the object's first character (JSON); 0 when
    #: the problem is the file as a whole (too big, not UTF-8 before any line).
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


class RegistryFileError(ProducerError, ValueError):
    """Registry files were refused whole: nothing in them may be applied. ``problems``
    names every bad line found (file, line, field, reason), in file and line order."""

    def __init__(self, problems: tuple[RegistryProblem, ...]) -> None:
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the registry file(s):\n{lines}")
        self.problems = problems
