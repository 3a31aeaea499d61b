"""``network_address`` holds an IP address or a host name, nothing else, in every event
kind that carries one (producer validation, and the consumer's, which is the same)."""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from integrations.simulator import Simulator
from producers import netaddr
from producers.codec import Codec
from producers.errors import DecodeError, EventValidationError
from producers.events import (
    Actor,
    AuditLogUsed,
    EventOutcome,
    Facility,
    LedgerQuery,
    PhiAccessEvent,
    SecurityEvent,
    to_record,
    validate,
)
from producers.netaddr import is_host_name, is_network_address

GOOD = [
    "10.20.4.17",
    "0.0.0.0",
    "2001:db8::7",
    "::ffff:192.0.2.1",
    "fe80::1%eth0",
    "pacs01",
    "pacs01.stmarys.example",
    "PACS-01.Example.",
    "xn--bcher-kva.example",
    "a" * 63 + ".example",
]
BAD = [
    "not an ip!",
    "",
    " 10.1.1.1",
    "10.1.1.1:8042",
    "[2001:db8::7]",
    "1.2.3",
    "999.1.1.1",
    "01.2.3.4",
    "fe80::1%not a zone",
    "-pacs.example",
    "pacs-.example",
    "pacs..example",
    "pacs_01.example",
    "bücher.example",
    "https://viewer.example/session",
    "dr.alice@example.org",
    "+1 617 555 0100",
    "a" * 64 + ".example",
    ("a" * 60 + ".") * 5,
    "10.1.1.1\x00",
]


@pytest.mark.parametrize("value", GOOD)
def test_ip_addresses_and_host_names_are_network_addresses(value: str) -> None:
    assert is_network_address(value)


@pytest.mark.parametrize("value", BAD)
def test_anything_else_is_not(value: str) -> None:
    assert not is_network_address(value)


def test_an_all_numeric_name_is_not_a_host_name() -> None:
    assert not is_host_name("10.1.1.1")  # it is an IP address, checked as one
    assert is_host_name("10.1.1.example")


def access(**changes: Any) -> PhiAccessEvent:
    base = Simulator(seed=31).access().stamped(producer_id="unit", producer_seq=1)
    return dataclasses.replace(base, **changes)


def security(**changes: Any) -> SecurityEvent:
    base = SecurityEvent(
        producer_id="unit",
        producer_seq=1,
        event_time=datetime(2026, 3, 9, 6, 58, 44, tzinfo=UTC),
        facility=Facility(id="stmarys-boston"),
        actor=Actor(user_id="rad004.kowalski", role="radiologist"),
        dicom_event_id="110114",
        event_type_code="110122",
    )
    return dataclasses.replace(base, **changes)


def log_used(**changes: Any) -> AuditLogUsed:
    base = AuditLogUsed(
        producer_id="unit",
        producer_seq=1,
        event_time=datetime(2026, 3, 9, 6, 58, 44, tzinfo=UTC),
        facility=Facility(id="philedger.localhost"),
        actor=Actor(user_id="auditor", role="auditor"),
        query=LedgerQuery(method="GET", path="/v1/alerts", status=200),
        outcome=EventOutcome.SUCCESS,
    )
    return dataclasses.replace(base, **changes)


KINDS = {"PhiAccessEvent": access, "SecurityEvent": security, "AuditLogUsed": log_used}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_refuses_a_network_address_that_is_not_one(kind: str) -> None:
    make = KINDS[kind]
    for value in ("10.20.4.17", "2001:db8::7", "ws-fileroom-3", None):
        validate(make(network_address=value))
    with pytest.raises(EventValidationError) as info:
        validate(make(network_address="not an ip!"))
    assert info.value.field == "network_address"
    assert "not an IP address or a host name" in str(info.value)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_consumer_refuses_it_too(kind: str) -> None:
    """Bytes that never went through the producer's check (written with the schema
    directly, as any Kafka client could) are refused by the consumer's decode."""
    codec = Codec()
    good = KINDS[kind]()
    record = to_record(good) | {"network_address": "not an ip!"}
    raw = codec._write(codec.writer_schema(good), record)
    with pytest.raises(DecodeError) as info:
        codec.decode_valid(raw)
    assert info.value.reason == "invalid_event"
    assert "network_address" in str(info.value)


def _ip_address_takes(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


#: Octet spellings around every edge of the dotted-quad fast path.
_OCTETS = [str(i) for i in range(0, 300)] + [
    *(f"0{i}" for i in range(0, 30)),
    *("00", "000", "0255", "1000", "", " 1", "1 ", "+1", "-1", "1_0", "\u0663", "0x1"),
]


def test_the_dotted_quad_fast_path_accepts_exactly_what_ipaddress_accepts() -> None:
    """``is_network_address`` answers dotted quads without ``ipaddress`` (the consumer's
    hot path): the fast path must take nothing that ``ipaddress`` refuses."""
    rng = random.Random(19)
    for octet in _OCTETS:
        for value in (f"{octet}.1.2.3", f"1.2.3.{octet}", f"10.{octet}.0.1"):
            assert bool(netaddr._IPV4.fullmatch(value)) == _ip_address_takes(value), value
    for _ in range(20_000):
        parts = [rng.choice(_OCTETS) for _ in range(rng.choice((3, 4, 4, 5)))]
        value = ".".join(parts) + rng.choice(("", "", "\n", "%1", "."))
        if netaddr._IPV4.fullmatch(value):
            assert _ip_address_takes(value), value
        netaddr.is_network_address.cache_clear()
        assert netaddr.is_network_address(value) == _without_fast_path(value), value


def _without_fast_path(value: str) -> bool:
    """``is_network_address`` as it was before the dotted-quad fast path."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return netaddr.is_host_name(value)
    _, percent, zone = value.partition("%")
    return not percent or bool(netaddr._ZONE.fullmatch(zone))
