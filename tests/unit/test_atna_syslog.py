"""Syslog as real ATNA senders write it: RFC 3164 (BSD) headers next to RFC 5424, and any
MSGID whose MSG is a DICOM AuditMessage (integrations.atna.rfc3164, .syslog, .parsing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from integrations.atna.parsing import parse_one
from integrations.atna.rfc3164 import is_bsd, parse_bsd
from integrations.atna.rfc5424 import format_syslog, parse_syslog
from integrations.atna.senders import SenderPolicy
from integrations.atna.syslog import AUDIT_MSGIDS, audit_message, parse_any
from integrations.errors import AtnaParseError
from producers.codec import Codec

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "dicom-audit"
XML = (CORPUS / "instances-accessed.xml").read_bytes()
NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
POLICY = SenderPolicy(tls={"pacs01.example": frozenset({"pacs01"})})
SENDER = "tls:pacs01.example"


def _parse(raw: bytes) -> tuple[str | None, int]:
    parsed = parse_one(raw, SENDER, None, Codec(), POLICY)
    return parsed.reason, len(parsed.events)


@pytest.mark.parametrize(
    ("raw", "host", "tag", "pid", "when"),
    [
        (b"<85>Mar  2 14:07:31 pacs-old ATNA[2211]: ", "pacs-old", "ATNA", "2211",
         datetime(2026, 3, 2, 14, 7, 31, tzinfo=UTC)),
        (b"<85>Mar 02 14:07:31 pacs-old ATNA: ", "pacs-old", "ATNA", None,
         datetime(2026, 3, 2, 14, 7, 31, tzinfo=UTC)),
        (b"<85>Mar  2 14:07:31 pacs-old ", "pacs-old", None, None,
         datetime(2026, 3, 2, 14, 7, 31, tzinfo=UTC)),
        (b"<85>Mar  2 14:07:31 ATNA[9]: ", None, "ATNA", "9",
         datetime(2026, 3, 2, 14, 7, 31, tzinfo=UTC)),
        (b"<85>Mar  2 14:07:31 ", None, None, None, datetime(2026, 3, 2, 14, 7, 31, tzinfo=UTC)),
        (b"<85>Mar  2 14:07:31 fe80::1 audit:", "fe80::1", "audit", None,
         datetime(2026, 3, 2, 14, 7, 31, tzinfo=UTC)),
        # rsyslog's RSYSLOG_ForwardFormat: an RFC 3339 time in a BSD header.
        (b"<85>2026-03-02T14:07:31.250-05:00 pacs-old ATNA: ", "pacs-old", "ATNA", None,
         datetime(2026, 3, 2, 14, 7, 31, 250000, tzinfo=timezone(-timedelta(hours=5)))),
    ],
)  # fmt: skip
def test_bsd_headers_are_read_and_kept_as_sent(
    raw: bytes, host: str | None, tag: str | None, pid: str | None, when: datetime
) -> None:
    assert is_bsd(raw + XML)
    message = parse_any(raw + XML, now=NOW)
    assert (message.syntax, message.version, message.msgid) == ("rfc3164", 0, None)
    assert (message.hostname, message.app_name, message.procid) == (host, tag, pid)
    assert (message.facility, message.severity) == (10, 5)
    assert message.timestamp == when
    assert message.header == raw
    assert message.msg == XML
    assert message.structured_data == ()


def test_a_bsd_timestamp_is_utc_in_the_year_that_is_not_in_the_future() -> None:
    new_year = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    late = parse_bsd(b"<85>Dec 31 23:59:58 h t: x", now=new_year)
    assert late.timestamp == datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC)
    # A sender clock a few hours ahead (within one day) stays in this year.
    ahead = parse_bsd(b"<85>Jan  1 20:00:00 h t: x", now=new_year)
    assert ahead.timestamp == datetime(2026, 1, 1, 20, 0, tzinfo=UTC)
    leap = parse_bsd(b"<85>Feb 29 10:00:00 h t: x", now=NOW)
    assert leap.timestamp == datetime(2024, 2, 29, 10, 0, tzinfo=UTC)


def test_a_bsd_message_with_a_bom_is_utf8() -> None:
    message = parse_bsd(b"<85>Mar  2 14:07:31 h t: \xef\xbb\xbf" + XML, now=NOW)
    assert (message.msg, message.bom) == (XML, True)
    with pytest.raises(AtnaParseError) as caught:
        parse_bsd(b"<85>Mar  2 14:07:31 h t: \xef\xbb\xbf\xff", now=NOW)
    assert caught.value.reason == "bad_utf8"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"<192>Mar  2 14:07:31 h t: x", "bad_pri"),
        (b"<85>Feb 30 14:07:31 h t: x", "bad_timestamp"),
        (b"<85>Mar  2 24:07:31 h t: x", "bad_timestamp"),
        (b"<85>2026-02-30T14:07:31Z h t: x", "bad_timestamp"),
        (b"<85>Mar  2 14:07:31  h t: x", "bad_header"),
        # Not a BSD timestamp: the RFC 5424 parser says what is wrong.
        (b"<85>March 2 14:07:31 h t: x", "bad_version"),
        (b"<85>2 14:07:31 h t: x", "bad_version"),
    ],
)
def test_malformed_bsd_headers_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(AtnaParseError) as caught:
        parse_any(raw, now=NOW)
    assert caught.value.reason == reason


def test_rfc5424_is_still_parsed_strictly() -> None:
    raw = format_syslog(XML, hostname="pacs01")
    assert not is_bsd(raw)
    message = parse_any(raw)
    assert message == parse_syslog(raw)
    assert (message.syntax, message.version, message.msgid) == ("rfc5424", 1, "IHE+RFC-3881")
    assert message.header + b"\xef\xbb\xbf" + XML == raw


@pytest.mark.parametrize("msgid", [*sorted(AUDIT_MSGIDS), "ATNA+3881", "audit", None])
def test_any_msgid_with_an_audit_message_maps(msgid: str | None) -> None:
    assert _parse(format_syslog(XML, msgid=msgid)) == (None, 1)


def test_a_bsd_message_with_an_audit_message_maps_like_rfc5424() -> None:
    bsd = b"<85>Mar  2 19:07:31 pacs-old ATNA[2211]: " + XML
    five = format_syslog(XML, hostname="pacs-old", app_name="ATNA", procid="2211")
    a = parse_one(bsd, SENDER, None, Codec(), POLICY)
    b = parse_one(five, SENDER, None, Codec(), POLICY)
    assert a.reason is None
    assert len(a.events) == 1
    # Nothing from the header goes into an event: the same record, the same event.
    assert a.events == b.events


@pytest.mark.parametrize(
    ("msgid", "body", "reason"),
    [
        ("OTHER", b"backup finished", "unexpected_msgid"),
        ("OTHER", b"<note>backup finished</note>", "unexpected_msgid"),
        (None, b"", "unexpected_msgid"),
        # A known audit MSGID keeps the XML reason: it says it is an audit record.
        ("DICOM+RFC3881", b"backup finished", "xml_malformed"),
        ("IHE+RFC-3881", b"<note/>", "xml_not_audit_message"),
        # An AuditMessage that is wrong, or hostile XML, keeps its reason whatever the MSGID.
        ("OTHER", b"<AuditMessage/>", "xml_invalid"),
        ("OTHER", b'<!DOCTYPE x [<!ENTITY a "b">]><AuditMessage/>', "xml_forbidden"),
    ],
)
def test_a_msg_that_is_not_an_audit_message_is_kept_with_a_clear_reason(
    msgid: str | None, body: bytes, reason: str
) -> None:
    raw = format_syslog(body, msgid=msgid)
    assert _parse(raw) == (reason, 0)
    with pytest.raises(AtnaParseError) as caught:
        audit_message(parse_any(raw))
    assert caught.value.reason == reason
    if reason == "unexpected_msgid":
        assert "not a DICOM AuditMessage" in str(caught.value)


def test_a_bsd_line_that_is_not_an_audit_record_is_kept_as_unexpected_msgid() -> None:
    assert _parse(b"<13>Mar  2 14:07:31 pacs01 cron[88]: backup finished") == (
        "unexpected_msgid",
        0,
    )


def test_line_ends_rsyslog_escaped_between_tags_are_read_back() -> None:
    """rsyslog escapes control characters on receipt (LF -> #012): a multi-line XML
    relayed by it has them before the root element, where XML allows no text."""
    escaped = XML.rstrip().replace(b"\n", b"#012")
    assert b"\n" not in escaped
    raw = b"<85>Mar  2 19:07:31 pacs-old ATNA: " + escaped
    audit, xml = audit_message(parse_any(raw, now=NOW))
    assert xml == XML.rstrip()
    assert audit.source_id == "pacs01"
    assert _parse(raw) == (None, 1)
    # Inside an attribute value the text stays as sent.
    inside = escaped.replace(b'UserName="Ana Kowalski"', b'UserName="Ana#012Kowalski"')
    raw = b"<85>Mar  2 19:07:31 h ATNA: " + inside
    (event,) = parse_one(raw, SENDER, None, Codec(), POLICY).events
    assert b"Ana#012Kowalski" in event.encode_with("p", 1)
    # A MSG that is not an AuditMessage stays what it was.
    assert _parse(b"<13>Mar  2 14:07:31 h cron: a#012b") == ("unexpected_msgid", 0)
