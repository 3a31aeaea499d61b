"""What the receiver counts, and the snapshot ``AtnaReceiver.stats()`` returns.

Invariant: ``Counters`` is the one mutable tally every collaborator adds to (reset at each
``start``); ``AtnaStats`` is a frozen copy of it with the gauges of that moment.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["AtnaStats", "Counters"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AtnaStats:
    """A snapshot for health checks and metrics (counters since ``start``)."""

    running: bool
    received_tls: int
    received_udp: int
    received_tcp: int
    #: Messages that became events, and the events emitted (re-sends included).
    mapped: int
    events: int
    #: Events of re-sent messages, emitted again with their first sequence number.
    resent: int
    #: Messages written to the kept store, by reason.
    kept: Mapping[str, int]
    kept_bytes: int
    #: The kept store is full: the receiver is holding messages and pushing back.
    kept_full: bool
    #: Messages that could not be kept even at ``stop`` (kept store failing); logged.
    lost_at_stop: int
    udp_dropped_overload: int
    queue_depth: int
    queue_max: int
    connections: int
    connections_refused: int
    #: TLS clients refused at the handshake (no certificate, or one the client CA did not
    #: sign, or one without a single subject CN).
    handshakes_refused: int
    #: Plain TCP connections refused because no [tcp] entry lists their source address.
    tcp_refused_sources: int
    #: Messages kept because their sender may not claim their AuditSourceID, or because
    #: they claim to come from the ledger itself (a security signal: alert on it).
    refused_senders: int
    #: Times the emitter pushed back (full spool, Kafka away without spool); retried.
    emit_retries: int

    @property
    def kept_total(self) -> int:
        return sum(self.kept.values())


@dataclass(slots=True)
class Counters:
    """Counters since ``start`` (the running tally behind ``AtnaStats``)."""

    received_tls: int = 0
    received_udp: int = 0
    received_tcp: int = 0
    mapped: int = 0
    events: int = 0
    resent: int = 0
    kept: collections.Counter[str] = field(default_factory=collections.Counter)
    lost_at_stop: int = 0
    udp_dropped_overload: int = 0
    connections_refused: int = 0
    handshakes_refused: int = 0
    tcp_refused_sources: int = 0
    refused_senders: int = 0
    emit_retries: int = 0
