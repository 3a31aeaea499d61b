"""The ledger's error hierarchy.

Invariant: every error the ledger, its consumers or its producers raise on purpose
is a ``LedgerError``; callers can catch the root or one of the kinds below,
and the original cause is always chained with ``raise ... from exc``.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every deliberate error in this product."""


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
