"""IHE ATNA Audit Record Repository receiver: syslog (RFC 5424 over RFC 5425 TLS and
RFC 5426 UDP) carrying DICOM PS3.15 A.5 audit messages, mapped to ledger events.

``rfc5424`` parses syslog messages and frames, ``dicom_audit`` maps audit messages to and
from events, ``senders`` says who may claim which source, ``parsing`` is the pure
per-batch parse of the worker processes, ``kept`` stores what cannot be mapped,
``stamps`` remembers the stamps of recent events, ``receiver`` runs the listeners. It
imports the producers' public surface (``from producers import ...``),
``integrations.errors`` and the ``schemas`` data (the DICOM codes: ``schemas.dicom``).
"""
