"""The receiver's configuration, checked when it is built.

Invariant: an ``AtnaReceiverConfig`` that exists is usable: it has a TLS, a plain TCP or
a UDP port, a TLS port comes with its certificate, key and client CA (there is no
anonymous TLS), and every limit is positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from integrations.atna.kept import DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES
from integrations.atna.senders import SenderPolicy

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "DEFAULT_PARSE_WORKERS", "AtnaReceiverConfig"]

#: Largest message accepted by default (RFC 5425 receivers must take 2048 octets and
#: should take 8192; DICOM audit messages with many objects run to tens of KiB).
DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024
#: Two: on two cores the event loop (TLS, stamping, aiokafka) leaves about half a core,
#: which a second worker uses (benchmarks/atna.py: 4,700-5,200 messages/s with one
#: worker, 6,800-7,000 with two, 6,300 with three).
DEFAULT_PARSE_WORKERS: Final = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class AtnaReceiverConfig:
    #: Directory of the kept-messages store (mode 0700; it holds PHI).
    kept_dir: str
    host: str = "127.0.0.1"
    #: TLS (RFC 5425) port; None disables TLS; 0 binds any free port (see ``tls_port``).
    tls_port: int | None = None
    #: UDP (RFC 5426) port; None (the default) disables UDP; 0 binds any free port. UDP
    #: authenticates nothing: its messages may claim only ``policy.udp`` sources.
    udp_port: int | None = None
    #: Plain TCP (RFC 6587) port; None (the default) disables it; 0 binds any free port.
    #: TCP authenticates nothing but the source address: a connection is served only from
    #: an address ``policy.tcp`` lists, and may claim only that entry's sources.
    tcp_port: int | None = None
    #: Address of the plain TCP listener: loopback unless set, whatever ``host`` is (a
    #: receiver whose TLS listens on every interface keeps plain TCP local).
    tcp_host: str = "127.0.0.1"
    #: PEM certificate chain and private key of the TLS listener.
    cert_file: str | None = None
    key_file: str | None = None
    #: PEM CA bundle, required with a TLS port: TLS clients must present a certificate it
    #: signed (mutual TLS: IHE ATNA node authentication). There is no anonymous TLS.
    client_ca_file: str | None = None
    #: Which sender may claim which AuditSourceID (default: none may claim any).
    policy: SenderPolicy = field(default_factory=SenderPolicy)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_connections: int = 256
    idle_timeout_seconds: float = 300.0
    #: Longest a frame may take from its first byte to its last (a slow sender that
    #: trickles bytes to hold a connection is closed and its partial frame kept).
    frame_timeout_seconds: float = 60.0
    handshake_timeout_seconds: float = 10.0
    #: Messages waiting to be mapped and emitted, at most.
    queue_max: int = 4096
    #: Worker processes that parse, map, validate and encode messages (spawned by
    #: ``start``, ended by ``stop``) while the event loop stamps and sends; 0 parses in
    #: the event loop.
    parse_workers: int = DEFAULT_PARSE_WORKERS
    kept_max_bytes: int = DEFAULT_MAX_BYTES
    kept_segment_bytes: int = DEFAULT_SEGMENT_BYTES
    #: ``facility.id`` of events from messages without AuditEnterpriseSiteID (default:
    #: their AuditSourceID).
    default_facility: str | None = None
    #: How many recent event ids are remembered so a re-send is byte-identical.
    recent_events: int = 65_536
    #: Longest pause between attempts to hand an event to an emitter that pushes back.
    emit_retry_max_seconds: float = 5.0
    #: Longest ``stop`` waits for queued messages to be emitted before keeping them.
    stop_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.tls_port is None and self.udp_port is None and self.tcp_port is None:
            raise ValueError("AtnaReceiverConfig needs a tls_port, a udp_port or a tcp_port")
        if self.tls_port is not None and not (self.cert_file and self.key_file):
            raise ValueError("the TLS listener needs cert_file and key_file")
        if self.tls_port is not None and not self.client_ca_file:
            raise ValueError(
                "the TLS listener needs client_ca_file: senders must present a certificate "
                "(IHE ATNA node authentication); there is no anonymous TLS"
            )
        for name in ("max_message_bytes", "max_connections", "queue_max", "recent_events"):
            if getattr(self, name) < 1:
                raise ValueError(f"AtnaReceiverConfig.{name} must be at least 1")
        if self.parse_workers < 0:
            raise ValueError("AtnaReceiverConfig.parse_workers must not be negative")
        for name in (
            "idle_timeout_seconds",
            "frame_timeout_seconds",
            "handshake_timeout_seconds",
            "emit_retry_max_seconds",
            "stop_timeout_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"AtnaReceiverConfig.{name} must be positive")
