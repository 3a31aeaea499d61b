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
