"""Which syslog messages carry a DICOM audit message: the header syntax and the MSGID rule.

Invariants:

* ``parse_any`` reads an RFC 5424 message (``<PRI>1 ...``, strictly, ``rfc5424``) or an
  RFC 3164 one (``<PRI>`` then a BSD or RFC 3339 timestamp, ``rfc3164``); anything else
  gets the RFC 5424 parser's reason (``bad_pri``, ``bad_version``, ...).
* ``audit_message`` parses the MSG of any message as a DICOM AuditMessage, whatever its
  MSGID: the MSGIDs real senders use (``AUDIT_MSGIDS``: IHE ITI-20's ``IHE+RFC-3881``,
  dcm4che's ``DICOM+RFC3881``, ...), another one, none (``-``), or none at all (RFC
  3164). When the MSGID is not one of ``AUDIT_MSGIDS`` and the MSG is not an
  AuditMessage (not XML, or another root element), the reason is ``unexpected_msgid``
  (a syslog message that is not an audit record); with a known MSGID it stays the XML
  reason (``xml_malformed``, ``xml_not_audit_message``), and ``xml_forbidden`` and
  ``xml_invalid`` are kept as they are for any MSGID. An XML written over several lines
  and relayed by rsyslog arrives with its line ends escaped (``#012``); only where they
  stand between two tags (white space in the XML) are they read back as white space,
  and only when the MSG is not well-formed as it is.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from typing import Final

from integrations.atna.dicom_audit import AuditMessage, parse_audit_message
from integrations.atna.rfc3164 import is_bsd, parse_bsd
from integrations.atna.rfc5424 import SyslogMessage, parse_syslog
from integrations.errors import AtnaParseError
from schemas import dicom

__all__ = ["AUDIT_MSGIDS", "audit_message", "parse_any"]

#: MSGIDs that say "a DICOM audit message": IHE ITI-20 (``IHE+RFC-3881``), dcm4che's audit
#: logger and its ``syslog`` tool (``DICOM+RFC3881``), and the unhyphenated IHE spelling
#: some senders use (``IHE+RFC3881``).
AUDIT_MSGIDS: Final = frozenset({dicom.ATNA_MSGID, "DICOM+RFC3881", "IHE+RFC3881"})
#: XML reasons that mean "this MSG is not an audit message at all".
_NOT_AUDIT: Final = frozenset({"xml_malformed", "xml_not_audit_message"})
#: White space between two tags, or between the XML declaration and the root, as rsyslog
#: escapes it on receipt (``#012`` for LF, ``#011`` tab, ``#015`` CR; its default).
_ESCAPED_SPACE: Final = re.compile(rb">((?:#01[125]|[ \t])*#01[125](?:#01[125]|[ \t])*)<")


def _rsyslog_unescaped(msg: bytes) -> bytes | None:
    """``msg`` with rsyslog's control-character escapes between tags turned back into
    white space (an XML written over several lines, relayed by rsyslog), or None."""
    if b"#01" not in msg:
        return None
    return _ESCAPED_SPACE.sub(lambda m: b">" + _unescape(m[1]) + b"<", msg)


def _unescape(space: bytes) -> bytes:
    return space.replace(b"#012", b"\n").replace(b"#011", b"\t").replace(b"#015", b"\r")


def parse_any(data: bytes, *, now: datetime | None = None) -> SyslogMessage:
    """An RFC 5424 or RFC 3164 message; raises ``AtnaParseError`` (see the module doc)."""
    if is_bsd(data):
        return parse_bsd(data, now=now)
    return parse_syslog(data)


def audit_message(message: SyslogMessage) -> tuple[AuditMessage, bytes]:
    """The DICOM AuditMessage of a syslog message's MSG, and the XML it was read from
    (the MSG, or the MSG without rsyslog's escapes); raises ``AtnaParseError``."""
    try:
        return parse_audit_message(message.msg), message.msg
    except AtnaParseError as exc:
        unescaped = _rsyslog_unescaped(message.msg) if exc.reason == "xml_malformed" else None
        if unescaped is not None:
            with contextlib.suppress(AtnaParseError):
                return parse_audit_message(unescaped), unescaped
        if message.msgid in AUDIT_MSGIDS or exc.reason not in _NOT_AUDIT:
            raise
        msgid = "no MSGID" if message.msgid is None else f"MSGID {message.msgid!r}"
        raise AtnaParseError(
            f"{msgid} and a MSG that is not a DICOM AuditMessage: not an audit record ({exc})",
            reason="unexpected_msgid",
        ) from exc
