"""How the audited access travelled (PhiAccessEvent v3 ``transport``), as far as an audit
message says.

Invariant: pure. A message this package wrote says it in its ledger object
(``transport-channel``, ``transport-encrypted``); a foreign message rarely does, so it is
UNKNOWN unless a participant that is not the requestor is named by an ``http://`` or
``https://`` URL (the web-service endpoint the request was sent to, as IHE profiles and
dcm4chee-arc record it): then HTTP unencrypted or HTTPS. Endpoints with different schemes
are UNKNOWN. docs/atna.md, "Transport".
"""

from __future__ import annotations

from typing import Final

from integrations.atna.dicom_audit.identity import LedgerObject, unmappable
from integrations.atna.dicom_audit.model import AuditMessage
from producers import Transport, TransportChannel

__all__ = [
    "CHANNEL_DETAIL",
    "ENCRYPTED_DETAIL",
    "foreign_transport",
    "transport_details",
    "written_transport",
]

CHANNEL_DETAIL: Final = "transport-channel"
ENCRYPTED_DETAIL: Final = "transport-encrypted"
#: WS-Addressing's "reply to the requester's connection": a constant, not an endpoint.
_ANONYMOUS: Final = "http://www.w3.org/2005/08/addressing/anonymous"
_SCHEMES: Final = {"https://": TransportChannel.HTTPS, "http://": TransportChannel.HTTP}


def written_transport(ledger: LedgerObject) -> Transport | None:
    """The transport a message this package wrote carries (None: the event had none)."""
    channel = ledger.get(CHANNEL_DETAIL)
    encrypted = ledger.get(ENCRYPTED_DETAIL)
    if channel is None:
        if encrypted is not None:
            raise unmappable("invalid_event", f"ledger detail {ENCRYPTED_DETAIL} without a channel")
        return None
    if channel not in TransportChannel.__members__:
        raise unmappable("invalid_event", f"ledger detail {CHANNEL_DETAIL} {channel[:40]!r}")
    flags = {None: None, "true": True, "false": False}
    if encrypted not in flags:
        raise unmappable("invalid_event", f"ledger detail {ENCRYPTED_DETAIL} must be true or false")
    return Transport(channel=TransportChannel(channel), encrypted=flags[encrypted])


def foreign_transport(msg: AuditMessage) -> Transport:
    """What a foreign message shows: the scheme of the endpoint(s) the request went to."""
    channels = set()
    for participant in msg.participants:
        user_id = participant.user_id.strip().lower()
        if participant.is_requestor or user_id == _ANONYMOUS:
            continue
        for prefix, channel in _SCHEMES.items():
            if user_id.startswith(prefix):
                channels.add(channel)
    if len(channels) != 1:
        return Transport.of(TransportChannel.UNKNOWN)
    return Transport.of(channels.pop())


def transport_details(transport: Transport | None) -> list[tuple[str, str]]:
    """The ledger-object details the writer records for ``transport``."""
    if transport is None:
        return []
    out = [(CHANNEL_DETAIL, transport.channel.value)]
    if transport.encrypted is not None:
        out.append((ENCRYPTED_DETAIL, "true" if transport.encrypted else "false"))
    return out
