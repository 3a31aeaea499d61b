"""Who may send what to the ATNA receiver: sender identities, the AuditSourceIDs each may
claim, and the ledger event ids of their messages.

A TLS sender is authenticated by its client certificate (mutual TLS, required: IHE ATNA
node authentication); its identity is the certificate's subject **common name** (CN),
and it is written ``tls:<CN>``. A UDP datagram authenticates nothing (any host on the
network can send one under any source address), so every UDP sender is the one identity
``udp``. A plain TCP sender (RFC 6587, off unless configured) is known by its source
address only (a completed TCP handshake makes it hard to spoof, but anyone on that host
can send): its identity is ``tcp:<address>``, and it may connect at all only from an
address or network listed under ``[tcp]``.

Invariants:

* ``SenderPolicy.refusal(sender, source_id, sites)`` is ``None`` only when the message's
  AuditSourceID is listed for that sender (``[tls]`` for a certificate CN, ``[udp]`` for
  UDP, ``[tcp]`` for the most specific network that holds a TCP sender's address: nothing
  is allowed that is not listed; no wildcards), and neither the
  AuditSourceID nor a site the message's events name (AuditEnterpriseSiteID, or the
  facility it falls back to) is one of the ledger's own names (``ledger_names``) or an
  API producer id (``ledger-api-...``). The ledger records reads of itself on its own
  (``AuditLogUsed``, facility = its name); an ATNA message that claims to be the ledger
  is refused whatever its EventID, and the policy refuses to list a ledger name for any
  sender. An Audit Log Used (110101) of another system's audit log (a PACS's ARR) is a
  legitimate message and is accepted like any other.
* ``sender_event_id(sender, event_id)`` is the ledger event id of a message's event: the
  UUIDv5 of ``sender_namespace(sender)`` (itself the UUIDv5 of ``SENDER_NAMESPACE`` and the
  sender identity) and the event id the message gives (its ledger object's, or
  ``dicom_audit.event_id_for`` of its bytes). The same sender re-sending a message gets
  the same ids (the receiver then re-stamps them and the ledger counts duplicates); two
  senders can never produce the same id, whatever their messages say.

The policy file is TOML::

    # certificate subject CN = the AuditSourceIDs it may claim
    [tls]
    "pacs01.stmarys.example" = ["dcm4chee-arc"]
    "rsyslog-relay.example" = ["viewer-auth", "pacs01"]

    # only when the receiver listens on UDP (--udp-port): what a datagram may claim
    [udp]
    audit_source_ids = ["legacy-ct-01"]

    # only when the receiver listens on plain TCP (--tcp-port): source address or network
    # = what a connection from it may claim (the most specific entry applies)
    [tcp]
    "127.0.0.1" = ["legacy-pacs"]
    "10.20.0.0/16" = ["ris-audit"]
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import tomllib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from integrations.errors import AtnaPolicyError

__all__ = [
    "LEDGER_PRODUCER_PREFIX",
    "SENDER_NAMESPACE",
    "UDP_SENDER",
    "IpNetwork",
    "SenderPolicy",
    "certificate_sender",
    "load_policy",
    "sender_event_id",
    "sender_namespace",
    "tcp_sender",
    "tls_sender",
]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Namespace of the per-sender namespaces of ledger event ids.
SENDER_NAMESPACE: Final = uuid.UUID("0f3a9f0e-5b2d-5c1e-8d4b-2c6e1a7b9d30")
#: The one identity of every UDP sender (nothing about a datagram is authenticated).
UDP_SENDER: Final = "udp"
#: The API's producer ids start with this (``ledgerctl.serve.api_producer_id``); a message
#: with such an AuditSourceID claims to come from the ledger itself.
LEDGER_PRODUCER_PREFIX: Final = "ledger-api-"

#: Reasons a message is kept instead of emitted (``kept.KeptStore`` and the docs).
REASON_NOT_ALLOWED: Final = "source_not_allowed"
REASON_CLAIMS_LEDGER: Final = "claims_ledger"


def tls_sender(common_name: str) -> str:
    return f"tls:{common_name}"


def tcp_sender(address: str) -> str:
    """``tcp:<address>`` of a plain TCP connection's source address (an IPv4-mapped IPv6
    address is written as the IPv4 address)."""
    ip = _ip(address)
    return f"tcp:{address if ip is None else ip}"


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def certificate_sender(cert: Mapping[str, object] | None) -> str | None:
    """``tls:<CN>`` of a verified peer certificate (``SSLSocket.getpeercert()``), or None
    unless its subject has exactly one non-empty common name."""
    subject = (cert or {}).get("subject", ())
    names: list[object] = []
    for rdn in subject if isinstance(subject, tuple) else ():
        names += [value for key, value in rdn if key == "commonName"]
    if len(names) != 1 or not isinstance(names[0], str) or not names[0]:
        return None
    return tls_sender(names[0])


@functools.lru_cache(maxsize=1024)
def sender_namespace(sender: str) -> uuid.UUID:
    return uuid.uuid5(SENDER_NAMESPACE, sender)


def sender_event_id(sender: str, event_id: uuid.UUID | str) -> uuid.UUID:
    """The ledger event id of the event a sender's message names ``event_id``: exactly
    ``uuid.uuid5(sender_namespace(sender), str(event_id))``, computed without its
    overhead (it runs for every event)."""
    name = sender_namespace(sender).bytes + str(event_id).encode("utf-8")
    digest = hashlib.sha1(name, usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderPolicy:
    """What each sender may claim; see the module doc."""

    #: certificate CN -> the AuditSourceIDs it may claim.
    tls: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    #: The AuditSourceIDs a UDP datagram may claim.
    udp: frozenset[str] = frozenset()
    #: Source network of a plain TCP connection -> the AuditSourceIDs it may claim.
    tcp: Mapping[IpNetwork, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    #: The ledger's own names (LEDGER_NAME): no message may claim them.
    ledger_names: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for cn, sources in self.tls.items():
            for source in sources:
                if self.is_ledger(source):
                    raise AtnaPolicyError(
                        f"[tls] {cn!r} may not claim {source!r}: it names the ledger itself"
                    )
        for source in self.udp:
            if self.is_ledger(source):
                raise AtnaPolicyError(f"[udp] may not claim {source!r}: it names the ledger")
        for network, sources in self.tcp.items():
            for source in sources:
                if self.is_ledger(source):
                    raise AtnaPolicyError(
                        f"[tcp] {str(network)!r} may not claim {source!r}: it names the ledger"
                    )

    def tcp_network(self, address: str) -> IpNetwork | None:
        """The most specific ``[tcp]`` network that holds ``address`` (None: not listed,
        the connection is refused)."""
        ip = _ip(address)
        if ip is None:
            return None
        best: IpNetwork | None = None
        for network in self.tcp:
            inside = ip.version == network.version and ip in network
            if inside and (best is None or network.prefixlen > best.prefixlen):
                best = network
        return best

    def is_ledger(self, name: str) -> bool:
        return name in self.ledger_names or name.startswith(LEDGER_PRODUCER_PREFIX)

    def allowed(self, sender: str) -> frozenset[str]:
        if sender == UDP_SENDER:
            return self.udp
        if sender.startswith("tls:"):
            return self.tls.get(sender[4:], frozenset())
        if sender.startswith("tcp:"):
            network = self.tcp_network(sender[4:])
            return frozenset() if network is None else self.tcp[network]
        return frozenset()

    def refusal(self, sender: str, source_id: str, sites: Iterable[str]) -> tuple[str, str] | None:
        """``None`` if ``sender`` may send this message, else ``(reason, detail)``."""
        for name in (source_id, *sites):
            if self.is_ledger(name):
                return (
                    REASON_CLAIMS_LEDGER,
                    f"the message names the ledger itself ({name[:80]!r}) as its audit "
                    "source or site; the ledger records its own reads",
                )
        if source_id not in self.allowed(sender):
            return (
                REASON_NOT_ALLOWED,
                f"sender {sender[:120]!r} may not claim AuditSourceID {source_id[:80]!r}",
            )
        return None


def _names(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AtnaPolicyError(f"{where} must be a list of non-empty strings")
    return frozenset(value)


def parse_policy(text: str, *, ledger_names: Iterable[str]) -> SenderPolicy:
    """The policy of a TOML text (see the module doc); raises ``AtnaPolicyError``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AtnaPolicyError(f"not TOML: {exc}") from exc
    unknown = sorted(set(data) - {"tls", "udp", "tcp"})
    if unknown:
        raise AtnaPolicyError(f"unknown sections {unknown}: only [tls], [udp] and [tcp]")
    tls = data.get("tls", {})
    udp = data.get("udp", {})
    tcp = data.get("tcp", {})
    if not all(isinstance(t, dict) for t in (tls, udp, tcp)):
        raise AtnaPolicyError("[tls], [udp] and [tcp] must be tables")
    if set(udp) - {"audit_source_ids"}:
        raise AtnaPolicyError("[udp] holds only audit_source_ids")
    return SenderPolicy(
        tls=MappingProxyType({str(cn): _names(v, f"[tls] {cn!r}") for cn, v in tls.items() if cn}),
        udp=_names(udp.get("audit_source_ids", []), "[udp] audit_source_ids"),
        tcp=MappingProxyType(_networks(tcp)),
        ledger_names=frozenset(ledger_names),
    )


def _networks(table: dict[str, object]) -> dict[IpNetwork, frozenset[str]]:
    out: dict[IpNetwork, frozenset[str]] = {}
    for text, value in table.items():
        network = _network(text)
        if network in out:
            raise AtnaPolicyError(f"[tcp] {text!r} names the network {network} twice")
        out[network] = _names(value, f"[tcp] {text!r}")
    return out


def _network(text: str) -> IpNetwork:
    """A ``[tcp]`` key: an IP address or a network (``10.20.0.0/16``), host bits clear."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise AtnaPolicyError(
            f"[tcp] {text!r} is not an IP address or network (e.g. 10.20.0.0/16): {exc}"
        ) from exc


def load_policy(path: str | Path, *, ledger_names: Iterable[str]) -> SenderPolicy:
    """Read the policy file; raises ``AtnaPolicyError``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AtnaPolicyError(f"cannot read {path}: {exc}") from exc
    return parse_policy(text, ledger_names=ledger_names)
