"""Classify one Kafka record: an ``Accepted`` leaf with its index row, or a ``Rejected``.

Invariant: every consumed record becomes exactly one item, checked in this order: a
value, the leaf size, the producer-authentication verdict, decoding and validation, the
event's producer against the key's, the event's topic, the leaf. A record becomes a leaf
only if it is authenticated as its producer's (``ledger.audit.producerauth``;
docs/producer-auth.md); every record that is not raises a security alert.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from aiokafka import ConsumerRecord

from consumers.projection import index_fields
from ledger.audit.ingest import Accepted, BatchItem, Rejected
from ledger.audit.producerauth import (
    ENVELOPE_HEADER,
    Authenticated,
    AuthFailure,
    ProducerAuthenticator,
    check_producer,
)
from ledger.errors import MalformedInputError
from ledger.log.leaf import MAX_LEAF_BYTES, KafkaRecord, encode_leaf, leaf_overhead
from producers.codec import Codec
from producers.errors import DecodeError
from producers.events import MAX_FUTURE_SKEW, RELAY_SCHEMA_NAME
from producers.registry import REGISTRY_SCHEMA_NAME

REASON_OVERSIZE = "oversize"
DEFAULT_SKEW = MAX_FUTURE_SKEW
REASON_EMPTY = "empty_value"
#: A valid event on a topic its schema does not belong to (a PHI access on the relay
#: topic, a relay on the access topic, a registry change anywhere but on a registry topic,
#: an audit event on a registry topic): producers route by schema, so this was not one.
REASON_WRONG_TOPIC = "wrong_topic"

#: The schemas that have topics of their own, and what those topics are called.
_OWN_TOPICS: dict[str, str] = {RELAY_SCHEMA_NAME: "relay", REGISTRY_SCHEMA_NAME: "registry"}


def classify(
    record: KafkaRecord,
    codec: Codec,
    *,
    now: datetime | None = None,
    max_clock_skew: timedelta = DEFAULT_SKEW,
    auth: ProducerAuthenticator | None = None,
    envelope: bytes | None = None,
    verdict: Authenticated | AuthFailure | None = None,
    relay_topics: frozenset[str] | None = None,
    registry_topics: frozenset[str] = frozenset(),
) -> BatchItem:
    """Turn one Kafka record into an ``Accepted`` leaf or a ``Rejected`` quarantine entry.

    With ``auth`` (the consumer always passes one unless a benchmark switched producer
    authentication off) the record is authenticated before it is decoded: a record that
    is not from a registered, unrevoked key, or whose event names another producer than
    the key's, is rejected with an alert and never reaches the ledger. A rejected record
    keeps its envelope (quarantine re-submission sends it again). A verified seal the
    record carried goes with the item either way (the appender stores it).

    With ``relay_topics`` (the consumer always gives it), an event is accepted only on
    the topic its schema belongs to: CriticalResultRelay on a relay topic, RegistryChange
    on a registry topic (``registry_topics``; none given: on no topic), every other kind
    on any other topic; None skips that check (tools classifying synthetic topics).
    """
    if auth is not None and verdict is None:  # not checked with its poll
        try:
            verdict = auth.authenticate(topic=record.topic, value=record.value, envelope=envelope)
        except AuthFailure as exc:
            verdict = exc
    topics = None if relay_topics is None else _topic_rule(relay_topics, registry_topics)
    item = _classify(record, codec, now, max_clock_skew, verdict if auth else None, topics)
    seal = None if verdict is None else verdict.seal
    if isinstance(item, Rejected) and (envelope is not None or seal is not None):
        return dataclasses.replace(item, envelope=envelope, seal=seal)
    if isinstance(item, Accepted) and seal is not None:
        return dataclasses.replace(item, seal=seal)
    return item


@dataclass(frozen=True, slots=True)
class _TopicRule:
    relay: frozenset[str]
    registry: frozenset[str]

    def home_of(self, topic: str) -> str | None:
        """What kind of topic ``topic`` is: "relay", "registry", or None (an audit topic)."""
        if topic in self.registry:
            return "registry"
        return "relay" if topic in self.relay else None


@functools.lru_cache(maxsize=64)
def _topic_rule(relay: frozenset[str], registry: frozenset[str]) -> _TopicRule:
    """One rule per set of topics (the consumer classifies every record with the same)."""
    return _TopicRule(relay, registry)


def _wrong_topic(record: KafkaRecord, schema_name: str, rule: _TopicRule | None) -> Rejected | None:
    """A rejection when the event's schema does not belong on the record's topic."""
    if rule is None:
        return None
    home = _OWN_TOPICS.get(schema_name)
    actual = rule.home_of(record.topic)
    if home == actual:
        return None
    where = f"only on a {home} topic" if home else f"never on a {actual} topic"
    return Rejected(
        record=record,
        reason=REASON_WRONG_TOPIC,
        detail=f"a {schema_name} event belongs {where}, not on {record.topic}",
    )


def _classify(
    record: KafkaRecord,
    codec: Codec,
    now: datetime | None,
    max_clock_skew: timedelta,
    verdict: Authenticated | AuthFailure | None,
    topics: _TopicRule | None,
) -> BatchItem:
    if not record.value:
        return Rejected(record=record, reason=REASON_EMPTY, detail="record has no value")
    size = leaf_overhead(record.topic, record.key) + len(record.value)
    if size > MAX_LEAF_BYTES:
        return Rejected(
            record=record,
            reason=REASON_OVERSIZE,
            detail=f"record would make a {size}-byte leaf; a leaf holds at most {MAX_LEAF_BYTES}",
        )
    if isinstance(verdict, AuthFailure):
        return Rejected(record=record, reason=verdict.reason, detail=verdict.detail, alert=True)
    try:
        schema, fields = codec.decode_valid(record.value, now=now, max_future_skew=max_clock_skew)
    except DecodeError as exc:
        return Rejected(record=record, reason=exc.reason, detail=str(exc))
    if verdict is not None:
        try:
            check_producer(verdict.key, cast(str, fields["producer_id"]))
        except AuthFailure as exc:
            return Rejected(record=record, reason=exc.reason, detail=exc.detail, alert=True)
    wrong = _wrong_topic(record, schema.full_name, topics)
    if wrong is not None:
        return wrong
    try:
        leaf = encode_leaf(record)
    except MalformedInputError as exc:
        return Rejected(record=record, reason=REASON_OVERSIZE, detail=str(exc))
    return Accepted(
        record=record,
        leaf=leaf,
        index=index_fields(schema.full_name, fields),
        seal_ref=None if verdict is None else (verdict.seal_id, verdict.entry),
    )


def envelope_of(msg: ConsumerRecord[bytes, bytes]) -> bytes | None:
    """The producer-authentication header of a record (the first, if several)."""
    for name, value in msg.headers or ():
        if name == ENVELOPE_HEADER:
            return bytes(value) if value is not None else None
    return None


def kafka_record(msg: ConsumerRecord[bytes, bytes]) -> KafkaRecord:
    return KafkaRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=msg.timestamp,
        timestamp_type=msg.timestamp_type,
        key=msg.key,
        value=msg.value or b"",
    )
