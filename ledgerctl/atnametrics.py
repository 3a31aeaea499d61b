"""The ATNA receiver's Prometheus metrics and readiness, read from its ``AtnaStats``.

Invariant: labels are transports, kept-store reason codes and refusal kinds, never a
sender, a peer address or anything a message carried. docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from integrations.atna.receiver import AtnaReceiver, AtnaStats
from producers.ops import Check


class AtnaCollector(Collector):
    """Messages received (per transport), kept (per reason), refused (per kind), events."""

    def __init__(self, stats: Callable[[], AtnaStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        received = CounterMetricFamily(
            "ledger_atna_received_messages", "Syslog messages received", labels=["transport"]
        )
        for transport, count in (
            ("tls", s.received_tls),
            ("tcp", s.received_tcp),
            ("udp", s.received_udp),
        ):
            received.add_metric([transport], count)
        kept = CounterMetricFamily(
            "ledger_atna_kept_messages",
            "Messages kept (not turned into events), by reason",
            labels=["reason"],
        )
        for reason, count in sorted(s.kept.items()):
            kept.add_metric([reason], count)
        refused = CounterMetricFamily(
            "ledger_atna_refused", "Connections and messages refused, by kind", labels=["kind"]
        )
        for kind, count in (
            ("connection_limit", s.connections_refused),
            ("tls_handshake", s.handshakes_refused),
            ("tcp_source", s.tcp_refused_sources),
            ("sender_claim", s.refused_senders),
            ("udp_overload", s.udp_dropped_overload),
        ):
            refused.add_metric([kind], count)
        yield from (received, kept, refused)
        for name, doc, value in (
            ("ledger_atna_mapped_messages", "Messages that became events", s.mapped),
            ("ledger_atna_events", "Events emitted (re-sends included)", s.events),
            ("ledger_atna_emit_retries", "Times the emitter pushed back", s.emit_retries),
        ):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], value)
            yield counter
        for name, doc, value in (
            ("ledger_atna_queue_depth", "Messages waiting to be parsed", s.queue_depth),
            ("ledger_atna_connections", "Open sender connections", s.connections),
            ("ledger_atna_kept_bytes", "Bytes in the kept store", s.kept_bytes),
            ("ledger_atna_kept_full", "1 while the kept store is full", int(s.kept_full)),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge


def receiver_check(receiver: AtnaReceiver) -> Check:
    """Readiness: the listeners run and the kept store takes messages."""

    async def receiver_ready() -> str | None:
        stats = receiver.stats()
        if not stats.running:
            return "receiver not running"
        if stats.kept_full:
            return "kept store full: holding messages"
        return None

    return receiver_ready
