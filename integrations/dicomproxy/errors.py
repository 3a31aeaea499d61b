"""Errors of the DICOM audit proxy.

Invariant: each is an ``IntegrationError`` (so a ``ProducerError``); a configuration error
names the TOML key at fault and what is wrong with its value.
"""

from __future__ import annotations

from integrations.errors import IntegrationError

__all__ = ["DicomProxyConfigError", "DicomProxyError", "RecorderUnavailable"]


class DicomProxyError(IntegrationError):
    """Root of the DICOM proxy's own errors."""


class DicomProxyConfigError(DicomProxyError, ValueError):
    """The proxy's TOML configuration is unreadable or has a bad value; ``key`` is the
    dotted TOML key at fault (``limits.max_associations``), or ``""`` for the file."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class RecorderUnavailable(DicomProxyError):
    """Raised by an ``OperationRecorder`` that cannot take an operation now (its ledger
    and its spool are unreachable). In fail-closed mode the proxy then refuses the
    operation (see docs/dicom-proxy.md for the statuses); in fail-open mode it answers
    anyway and logs the lost record at ERROR."""
