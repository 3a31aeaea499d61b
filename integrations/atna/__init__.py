"""IHE ATNA Audit Record Repository receiver: syslog (RFC 5424 or RFC 3164, over RFC 5425
TLS, RFC 6587 plain TCP and RFC 5426 UDP) carrying DICOM PS3.15 A.5 audit messages, mapped
to ledger events.

``rfc5424`` and ``rfc3164`` parse syslog messages, ``syslog`` says which one a message is
and whether its MSG is an audit message, ``framing`` cuts a stream into frames,
``dicom_audit`` maps audit messages to and
from events, ``senders`` says who may claim which source, ``parsing`` is the pure
per-batch parse of the worker processes, ``kept`` stores what cannot be mapped,
``stamps`` remembers the stamps of recent events, ``receiver`` runs the listeners. It
imports the producers' public surface (``from producers import ...``),
``integrations.errors`` and the ``schemas`` data (the DICOM codes: ``schemas.dicom``).
"""
