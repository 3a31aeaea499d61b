"""The ledger's error root, shared by every layer of ``ledger`` and the services on it.

Invariant: every error the ledger's layers (``ledger.log``, ``audit``, ``verify``, ``pg``,
``http``) raise on purpose is a ``LedgerError``, with the cause chained (``raise ... from
exc``); the consumer and the ``ledger`` command raise these kinds too and catch the root
at their edges. The producer library has its own root,
``producers.errors.ProducerError`` (it imports nothing of the ledger), and so do the
integrations built on it (``integrations.errors.IntegrationError``, a ``ProducerError``).
The kinds below are raised by: ``VerificationError`` the log core, the checkpointer and
the report/record checks; ``MalformedInputError`` (``TooLargeError``) every parser and
the API's input checks; ``ConflictError`` (``FencedError``) the PostgreSQL adapters and
the CLI's writes; ``UnavailableError`` the database pool and the services' Kafka hand-off;
``PushbackError`` the database reader. ``ledger.audit.auth`` (``AuthenticationError``,
``ForbiddenError``) and ``ledger.audit.producerauth`` (``AuthFailure``) add their own
subclasses. The API maps them to 400/413/401/403/503, any other ``LedgerError`` to 500.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every deliberate error of the ledger, its consumer and its command line
    (not of the producer library: ``producers.errors.ProducerError``)."""


class VerificationError(LedgerError):
    """A proof, signature, checkpoint or stored entry failed verification."""


class MalformedInputError(LedgerError):
    """Input could not be parsed or failed validation; the message names what is wrong.

    ``code`` is a stable machine-readable name of the problem (the API's error code)."""

    def __init__(self, message: str, *, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


class TooLargeError(MalformedInputError):
    """Input is larger than the limit it must stay within (the API answers 413)."""


class ConflictError(LedgerError):
    """The request conflicts with what is already recorded (e.g. same id, other content)."""


class FencedError(ConflictError):
    """This writer's claim on a log was superseded by a newer writer; stop writing it."""


class UnavailableError(LedgerError):
    """A dependency (Kafka, PostgreSQL, the API) cannot be reached right now."""


class PushbackError(LedgerError):
    """The system is saturated; retry later. Carries a suggested delay in seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
