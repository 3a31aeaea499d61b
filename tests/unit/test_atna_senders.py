"""The ATNA sender policy: which certificate may claim which AuditSourceID, read from
TOML; the sender of a certificate; sender-namespaced event ids."""

from __future__ import annotations

import uuid

import pytest

from integrations.atna.senders import (
    SENDER_NAMESPACE,
    UDP_SENDER,
    certificate_sender,
    parse_policy,
    sender_event_id,
)
from integrations.errors import AtnaPolicyError

LEDGER = {"philedger.localhost"}
POLICY = """
[tls]
"pacs01.example" = ["dcm4chee-arc", "pacs01"]
"relay.example" = []

[udp]
audit_source_ids = ["legacy-ct"]
"""


def test_each_sender_may_claim_only_what_is_listed_for_it() -> None:
    policy = parse_policy(POLICY, ledger_names=LEDGER)
    assert policy.refusal("tls:pacs01.example", "dcm4chee-arc", ["stmarys"]) is None
    assert policy.refusal(UDP_SENDER, "legacy-ct", ["stmarys"]) is None
    for sender, source in [
        ("tls:pacs01.example", "legacy-ct"),
        ("tls:relay.example", "pacs01"),
        ("tls:unknown.example", "pacs01"),
        (UDP_SENDER, "pacs01"),
        ("pacs01.example", "pacs01"),  # not a sender identity at all
    ]:
        refused = policy.refusal(sender, source, [])
        assert refused is not None
        assert refused[0] == "source_not_allowed"


@pytest.mark.parametrize(
    ("source", "sites"),
    [
        ("pacs01", ["philedger.localhost"]),
        ("philedger.localhost", ["stmarys"]),
        ("ledger-api-host-18080", ["stmarys"]),
    ],
)
def test_nobody_may_claim_the_ledger(source: str, sites: list[str]) -> None:
    policy = parse_policy(POLICY, ledger_names=LEDGER)
    refused = policy.refusal("tls:pacs01.example", source, sites)
    assert refused is not None
    assert refused[0] == "claims_ledger"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tls]\n"a" = ["philedger.localhost"]\n', "names the ledger"),
        ('[udp]\naudit_source_ids = ["ledger-api-h-1"]\n', "names the ledger"),
        ('[tls]\n"a" = "pacs01"\n', "list of non-empty strings"),
        ('[tls]\n"a" = [""]\n', "list of non-empty strings"),
        ("[other]\n", "unknown sections"),
        ("[udp]\nsources = []\n", "only audit_source_ids"),
        ("[tls\n", "not TOML"),
    ],
)
def test_a_bad_policy_is_refused(text: str, message: str) -> None:
    with pytest.raises(AtnaPolicyError, match=message):
        parse_policy(text, ledger_names=LEDGER)


def test_the_sender_of_a_certificate_is_its_one_subject_cn() -> None:
    def cert(*rdns: tuple[tuple[str, str], ...]) -> dict[str, object]:
        return {"subject": rdns}

    assert certificate_sender(cert((("commonName", "pacs01"),))) == "tls:pacs01"
    assert certificate_sender(cert((("organizationName", "x"),), (("commonName", "a"),))) == (
        "tls:a"
    )
    assert certificate_sender(cert((("organizationName", "x"),))) is None
    assert certificate_sender(cert((("commonName", "a"),), (("commonName", "b"),))) is None
    assert certificate_sender(cert((("commonName", ""),))) is None
    assert certificate_sender(None) is None


def test_event_ids_are_namespaced_by_sender() -> None:
    given = uuid.UUID("5f0c4a63-6d1e-5b8e-9a51-7a7e2c0b1d42")
    a = sender_event_id("tls:a", given)
    assert a == sender_event_id("tls:a", str(given))  # a re-send: the same id
    assert a != sender_event_id("tls:b", given)
    assert a != sender_event_id(UDP_SENDER, given)
    assert a == uuid.uuid5(uuid.uuid5(SENDER_NAMESPACE, "tls:a"), str(given))
    assert a != given


TCP_POLICY = """
[tcp]
"127.0.0.1" = ["legacy-pacs"]
"10.20.0.0/16" = ["ris-audit"]
"10.20.4.0/24" = ["viewer-auth"]
"2001:db8::/32" = ["v6-pacs"]
"""


def test_a_tcp_sender_may_claim_what_its_most_specific_network_lists() -> None:
    from integrations.atna.senders import tcp_sender

    policy = parse_policy(TCP_POLICY, ledger_names=LEDGER)
    assert tcp_sender("127.0.0.1") == "tcp:127.0.0.1"
    assert tcp_sender("::ffff:10.20.4.17") == "tcp:10.20.4.17"
    assert policy.refusal(tcp_sender("127.0.0.1"), "legacy-pacs", []) is None
    assert policy.refusal(tcp_sender("10.20.9.1"), "ris-audit", []) is None
    assert policy.refusal(tcp_sender("10.20.4.17"), "viewer-auth", []) is None
    assert policy.refusal(tcp_sender("2001:db8::7"), "v6-pacs", []) is None
    for sender, source in [
        (tcp_sender("10.20.4.17"), "ris-audit"),  # the /24 applies, not the /16
        (tcp_sender("127.0.0.2"), "legacy-pacs"),
        (tcp_sender("192.0.2.1"), "legacy-pacs"),
        ("tcp:not-an-address", "legacy-pacs"),
        (UDP_SENDER, "legacy-pacs"),
        ("tls:127.0.0.1", "legacy-pacs"),
    ]:
        refused = policy.refusal(sender, source, [])
        assert refused is not None, (sender, source)
        assert refused[0] == "source_not_allowed"
    assert policy.tcp_network("10.20.4.17") is not None
    assert policy.tcp_network("192.0.2.1") is None
    assert policy.tcp_network("fe80::1%eth0") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tcp]\n"pacs.example" = ["a"]\n', "not an IP address or network"),
        ('[tcp]\n"10.20.0.1/16" = ["a"]\n', "not an IP address or network"),
        ('[tcp]\n"10.0.0.1" = ["a"]\n"10.0.0.1/32" = ["b"]\n', "twice"),
        ('[tcp]\n"127.0.0.1" = ["ledger-api-h-1"]\n', "names the ledger"),
        ('[tcp]\n"127.0.0.1" = "a"\n', "list of non-empty strings"),
        ("tcp = 1\n", "must be tables"),
    ],
)
def test_a_bad_tcp_section_is_refused(text: str, message: str) -> None:
    with pytest.raises(AtnaPolicyError, match=message):
        parse_policy(text, ledger_names=LEDGER)
