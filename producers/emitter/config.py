"""The emitter's settings and the snapshots it reports: ``EmitterConfig``, ``EmitterState``,
``EmitterHealth`` and ``Delivery``.

Invariant: an ``EmitterConfig`` that constructs has positive timeouts, spool and in-flight
bounds;
everything here is a frozen value, so a snapshot never changes under its reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from producers.kafka_security import KafkaSecurity
from producers.spool import DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES

#: Largest encoded event accepted: a ledger leaf (value plus ~100 bytes of Kafka
#: coordinates) must fit the 64 KiB tlog-tiles entry limit.
MAX_EVENT_BYTES: Final = 60_000

#: (topic, partition, offset) of an acknowledged event.
Meta = tuple[str, int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitterConfig:
    bootstrap_servers: str
    producer_id: str
    access_topic: str = "phi-access"
    relay_topic: str = "critical-result-relay"
    #: Where ``RegistryChange`` events go (docs/design/compliance-registry.md): one
    #: partition, one order of registry changes.
    registry_topic: str = "compliance-registry"
    #: Longest ``emit`` waits for Kafka (aiokafka's buffer) before the event is spooled
    #: or, without a spool, refused with ``EmitterPushbackError``.
    max_block_seconds: float = 2.0
    linger_ms: int = 5
    first_sequence: int = 0
    #: TLS and SASL settings (default PLAINTEXT; docs/kafka.md).
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    #: Directory of the local spool (one per emitter, on a disk as protected as any
    #: PHI store); None disables spooling.
    spool_dir: str | None = None
    #: Most bytes of undelivered events the spool holds before ``SpoolFullError``.
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    spool_segment_bytes: int = DEFAULT_SEGMENT_BYTES
    #: The in-flight bound by age (with a spool): once the oldest event Kafka has not
    #: acknowledged is this old, every event in flight is spooled and new events follow
    #: them there (checked every quarter of it, at most every second).
    spool_after_seconds: float = 2.0
    #: The in-flight bound by count: an event that would make more than this many events
    #: held in memory and unacknowledged by Kafka goes to the spool, behind every event
    #: in flight (without a spool, ``emit`` waits up to ``max_block_seconds`` for room).
    max_inflight_events: int = 20_000
    #: aiokafka's batch per partition (``max_batch_size``); the in-flight bounds above,
    #: not this, limit what a killed host can lose.
    kafka_batch_bytes: int = 262_144
    #: Longest ``stop`` waits for Kafka before spooling what is left (without a
    #: spool, what is left is lost and logged).
    stop_timeout_seconds: float = 10.0
    #: Longest one connection attempt may take.
    connect_timeout_seconds: float = 10.0
    #: Cap of the exponential backoff between reconnection attempts.
    reconnect_backoff_max_seconds: float = 5.0
    #: This producer's key file (``ledger producer add``; docs/producer-auth.md). Every
    #: record is signed with it; without one the ledger quarantines every event sent.
    producer_key_file: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_block_seconds",
            "spool_after_seconds",
            "stop_timeout_seconds",
            "connect_timeout_seconds",
            "reconnect_backoff_max_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"EmitterConfig.{name} must be positive")
        if self.max_inflight_events < 1:
            raise ValueError("EmitterConfig.max_inflight_events must be at least 1")
        if not 1024 <= self.kafka_batch_bytes <= 1_048_576:
            raise ValueError("EmitterConfig.kafka_batch_bytes must be between 1 KiB and 1 MiB")
        if self.spool_max_bytes <= 0 or self.spool_segment_bytes <= 0:
            raise ValueError(
                "EmitterConfig.spool_max_bytes and spool_segment_bytes must be positive"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """Where Kafka stored an event."""

    event_id: str
    topic: str
    partition: int
    offset: int


class EmitterState(StrEnum):
    STOPPED = "stopped"
    #: Events go straight to Kafka.
    DIRECT = "direct"
    #: Kafka is unreachable or slow: events go to the spool, which is being re-sent.
    SPOOLING = "spooling"


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitterHealth:
    """A snapshot for the host's health checks and metrics.

    An event in flight when spooling began is counted in both ``queued`` and
    ``spooled`` until Kafka has settled it.
    """

    state: EmitterState
    #: Events handed to aiokafka (in memory / in flight) and not yet acknowledged.
    queued: int
    #: Events in the spool (fsynced or being written) not yet acknowledged.
    spooled: int
    spool_bytes: int
    #: Age of the oldest event Kafka has not acknowledged; 0.0 when there is none.
    oldest_undelivered_age_seconds: float
    #: Events Kafka acknowledged since ``start``.
    sent: int
    #: Failed delivery attempts; with a spool each one is re-sent from it.
    failed: int
    #: Events that failed with no spool to fall back on (only without ``spool_dir``).
    lost: int
    next_sequence: int
