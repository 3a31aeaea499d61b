"""RFC 3164 (BSD syslog) headers, as older PACS and EHR audit trails still send them.

Invariant: ``parse_bsd(data, now=...)`` returns a ``SyslogMessage`` with ``syntax``
``rfc3164``, ``version`` 0, no MSGID and no structured data, and the header exactly as
received in ``header``; or raises ``AtnaParseError`` (``bad_pri``, ``bad_timestamp``,
``bad_header``, ``bad_utf8``). The accepted shape is ``<PRI>TIMESTAMP [HOSTNAME] [TAG[PID]:]
MSG``, where TIMESTAMP is ``Mmm dd hh:mm:ss`` (day space- or zero-padded) or an RFC 3339
time (rsyslog's forwarding format). A BSD timestamp has no year and no zone: it is read
as UTC in the year that puts it at most one day after ``now`` (so a message of 31
December received on 1 January is of the year before). Nothing of the header goes into
an event (docs/atna.md, "RFC 3164"): it only has to be well-formed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from integrations.atna.rfc5424 import BOM, SyslogMessage
from integrations.errors import AtnaParseError

__all__ = ["is_bsd", "parse_bsd"]

_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
_PRI: Final = re.compile(rb"<(0|[1-9]\d{0,2})>")
_BSD_TIME: Final = re.compile(
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ 0]?[1-9]|[12]\d|3[01]) "
    rb"(\d{2}):(\d{2}):(\d{2}) "
)
_ISO_TIME: Final = re.compile(
    rb"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})) "
)
#: A HOSTNAME: printable US-ASCII, at most 255 octets, not the start of the MSG.
_HOST: Final = re.compile(rb"([!-;=-~][!-~]{0,254}) ")
#: TAG (up to 48 octets, RFC 3164 says 32 but senders use more), optional [PID], then ':'.
_TAG: Final = re.compile(
    rb"([!-9;=-Z\\^-~][!-9;-Z\\^-~]{0,47})(?:\[([!-Z\\^-~]{1,128})\])?:(?: |(?=<)|(?=\xef))"
)
#: How far in the future a yearless timestamp may be before it is taken as last year's.
_FUTURE_SLACK: Final = timedelta(days=1)


def is_bsd(data: bytes) -> bool:
    """Whether ``data`` has a BSD header (``<PRI>`` then a timestamp, not ``<PRI>1 ``)."""
    m = _PRI.match(data)
    if m is None:
        return False
    rest = data[m.end() : m.end() + 40]
    return bool(_BSD_TIME.match(rest) or _ISO_TIME.match(rest + b" "))


def _fail(reason: str, problem: str) -> AtnaParseError:
    return AtnaParseError(f"RFC 3164: {problem}", reason=reason)


def _bsd_time(m: re.Match[bytes], now: datetime) -> datetime:
    month = _MONTHS.index(m[1].decode()) + 1
    day, hour, minute, second = int(m[2].strip() or b"0"), int(m[3]), int(m[4]), int(m[5])
    for year in range(now.year + 1, now.year - 5, -1):  # a 29 February: back to a leap year
        try:
            when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:  # 29 February of a year that has none, or an hour of 24
            continue
        if when <= now + _FUTURE_SLACK:
            return when
    raise _fail("bad_timestamp", f"TIMESTAMP {m.group().strip()!r} is not a valid time")


def _iso_time(text: bytes) -> datetime:
    try:
        return datetime.fromisoformat(text.decode("ascii").replace("Z", "+00:00"))
    except ValueError as exc:
        raise _fail("bad_timestamp", f"TIMESTAMP {text[:40]!r} is not a valid time") from exc


def parse_bsd(data: bytes, *, now: datetime | None = None) -> SyslogMessage:
    """Parse one BSD syslog message (see the module doc); ``now`` (UTC) picks the year."""
    pri = _PRI.match(data)
    if pri is None:
        raise _fail("bad_pri", "a message starts with '<PRIVAL>' (0-191, no leading zeros)")
    prival = int(pri[1])
    if prival > 191:
        raise _fail("bad_pri", f"PRIVAL {prival} is above 191")
    pos = pri.end()
    bsd = _BSD_TIME.match(data, pos)
    iso = None if bsd is not None else _ISO_TIME.match(data, pos)
    if bsd is not None:
        timestamp = _bsd_time(bsd, now or datetime.now(UTC))
        pos = bsd.end()
    elif iso is not None:
        timestamp = _iso_time(iso[1])
        pos = iso.end()
    else:
        raise _fail("bad_timestamp", "TIMESTAMP is neither 'Mmm dd hh:mm:ss' nor RFC 3339")
    hostname, app_name, procid, pos = _host_and_tag(data, pos)
    msg, bom = data[pos:], False
    if msg.startswith(BOM):
        msg, bom = msg[3:], True
        try:
            msg.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail("bad_utf8", "MSG starts with a BOM but is not UTF-8") from exc
    return SyslogMessage(
        facility=prival >> 3,
        severity=prival & 7,
        version=0,
        timestamp=timestamp,
        hostname=hostname,
        app_name=app_name,
        procid=procid,
        msgid=None,
        structured_data=(),
        msg=msg,
        bom=bom,
        syntax="rfc3164",
        header=data[:pos],
    )


def _host_and_tag(data: bytes, pos: int) -> tuple[str | None, str | None, str | None, int]:
    """HOSTNAME and TAG[PID]: each optional. A token that ends with ':' (or '[pid]:') is
    the TAG; one that starts with '<' (the XML) or a BOM is the MSG; else it is HOSTNAME."""
    if data.startswith(b" ", pos):
        raise _fail("bad_header", "two spaces after the TIMESTAMP")
    hostname: str | None = None
    tag = _TAG.match(data, pos)
    if tag is None:
        host = _HOST.match(data, pos)
        if host is not None and not data.startswith(BOM, pos):
            hostname = host[1].decode("ascii")
            pos = host.end()
            tag = _TAG.match(data, pos)
    if tag is None:
        return hostname, None, None, pos
    procid = None if tag[2] is None else tag[2].decode("ascii")
    return hostname, tag[1].decode("ascii"), procid, tag.end()
