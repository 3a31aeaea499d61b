"""IHE ATNA Audit Record Repository receiver: syslog (RFC 5424 over RFC 5425 TLS and
RFC 5426 UDP) carrying DICOM PS3.15 A.5 audit messages, mapped to ledger events.

``rfc5424`` parses syslog messages and frames, ``dicom_audit`` maps audit messages to and
from events, ``kept`` stores what cannot be mapped, ``receiver`` runs the listeners.
"""
