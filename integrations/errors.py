"""Errors of the services built on the producer library (the ATNA receiver's parsing,
sender policy and kept-messages store).

Invariant: every error here is an ``IntegrationError``, itself a ``ProducerError``, so a
host that catches the library's root catches these too; each names what to do about it.
"""

from __future__ import annotations

from producers import ProducerError


class IntegrationError(ProducerError):
    """Root of the integrations' own errors."""


class AtnaParseError(IntegrationError, ValueError):
    """Bytes received by the ATNA receiver are not a well-formed syslog frame, RFC 5424
    message or DICOM audit message. ``reason`` is a stable code (``bad_pri``,
    ``bad_timestamp``, ``oversize``, ``xml_forbidden``, ...): the receiver keeps the raw
    bytes under that reason instead of dropping them.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class AtnaUnmappableError(IntegrationError, ValueError):
    """A well-formed DICOM audit message that maps to no ledger event (``reason``, e.g.
    ``no_patient``, ``unsupported_event``, ``invalid_event``); ``field`` names the element
    or event field at fault when there is one. The receiver keeps such messages.
    """

    def __init__(self, message: str, *, reason: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


class AtnaPolicyError(IntegrationError, ValueError):
    """The ATNA sender policy (which certificate may claim which AuditSourceID) is
    unreadable or says something the receiver refuses (a sender allowed to claim the
    ledger's own name)."""


class KeptStoreError(IntegrationError):
    """The ATNA receiver's kept-messages store cannot be used: an I/O error, or the
    directory is locked by another receiver."""


class KeptStoreFullError(KeptStoreError):
    """The kept-messages store already holds its configured maximum of bytes. ``written``
    holds the ids of the records of the same call that did fit (fsynced); the others were
    not written. Review the kept messages (``ledger atna kept``), move them away, and the
    receiver resumes (it stops reading from TLS senders meanwhile)."""

    def __init__(self, message: str, *, written: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.written = written
