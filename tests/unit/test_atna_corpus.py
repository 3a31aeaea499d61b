"""The ATNA corpus as the receiver takes it: every syslog message of tests/corpus/atna-syslog
(whole messages, headers and all, in the shapes real senders write) and every DICOM audit
message of tests/corpus/dicom-audit (behind each MSGID real senders use) goes through
``parse_one``, the receiver's own parse and map, and becomes events: nothing a real sender
sends is kept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from integrations.atna.dicom_audit import events_from_dicom
from integrations.atna.parsing import _namespaced, parse_one
from integrations.atna.rfc5424 import format_syslog
from integrations.atna.senders import SenderPolicy
from integrations.atna.syslog import AUDIT_MSGIDS, audit_message, parse_any
from producers.codec import Codec

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
SYSLOG = CORPUS / "atna-syslog"
DICOM = CORPUS / "dicom-audit"
SENDER = "tls:corpus-sender"
_CODEC = Codec()

#: file -> (header syntax, MSGID, events).
SYSLOG_EXPECTED: dict[str, tuple[str, str | None, int]] = {
    "dcm4che-audit-logger-query.syslog": ("rfc5424", "DICOM+RFC3881", 1),
    "dcm4che-audit-logger-instances-transferred.syslog": ("rfc5424", "DICOM+RFC3881", 1),
    "dcm4che-audit-logger-export.syslog": ("rfc5424", "DICOM+RFC3881", 1),
    "dcm4che-audit-logger-security-alert.syslog": ("rfc5424", "DICOM+RFC3881", 1),
    "dcm4che-audit-logger-nil-msgid.syslog": ("rfc5424", None, 1),
    "dotnet-atna-client-iti18.syslog": ("rfc5424", "IHE+RFC3881", 1),
    "xds-repository-iti43.syslog": ("rfc5424", "IHE+RFC-3881", 1),
    "rsyslog-protocol23-login.syslog": ("rfc5424", "IHE+RFC-3881", 1),
    "bsd-legacy-pacs-instances-accessed.syslog": ("rfc3164", None, 1),
    "bsd-imaging-source-rad69.syslog": ("rfc3164", None, 1),
    "rsyslog-forward-format-escaped-logout.syslog": ("rfc3164", None, 1),
}


def _policy(*payloads: bytes) -> SenderPolicy:
    """A policy that lets the corpus sender claim every AuditSourceID of the corpus."""
    sources = {m.decode() for p in payloads for m in re.findall(rb'AuditSourceID="([^"]*)"', p)}
    return SenderPolicy(tls={SENDER[4:]: frozenset(sources)})


def test_every_syslog_file_has_an_expectation() -> None:
    assert {p.name for p in SYSLOG.glob("*.syslog")} == set(SYSLOG_EXPECTED)
    assert (SYSLOG / "README.md").is_file()


@pytest.mark.parametrize("name", sorted(SYSLOG_EXPECTED))
def test_a_real_sender_s_syslog_message_becomes_its_events(name: str) -> None:
    raw = (SYSLOG / name).read_bytes()
    syntax, msgid, count = SYSLOG_EXPECTED[name]
    message = parse_any(raw)
    assert (message.syntax, message.msgid) == (syntax, msgid)
    assert raw.startswith(message.header)
    parsed = parse_one(raw, SENDER, None, _CODEC, _policy(raw))
    assert (parsed.reason, parsed.detail) == (None, "")
    assert len(parsed.events) == count
    # The same events as the XML alone gives: nothing of the header goes into them.
    _, xml = audit_message(message)
    expected = [_CODEC.prepare(_namespaced(e, SENDER)) for e in events_from_dicom(xml)]
    assert list(parsed.events) == expected


@pytest.mark.parametrize("msgid", [*sorted(AUDIT_MSGIDS), None])
@pytest.mark.parametrize("name", sorted(p.name for p in DICOM.glob("*.xml")))
def test_every_dicom_corpus_message_maps_behind_any_msgid(name: str, msgid: str | None) -> None:
    payload = (DICOM / name).read_bytes()
    parsed = parse_one(format_syslog(payload, msgid=msgid), SENDER, None, _CODEC, _policy(payload))
    assert parsed.reason is None, parsed.detail
    assert parsed.events
