"""The IHE ATNA Audit Record Repository receiver: syslog in, ledger events out.

``AtnaReceiver(config, emitter)`` listens for syslog messages (RFC 5424 or RFC 3164) over
mutual TLS (RFC 5425) and, only when their ports are configured, over plain TCP (RFC 6587,
senders known by source address) and UDP (RFC 5426); maps each DICOM
audit message (``dicom_audit``), checks it against its sender (``senders``) and hands its
events to the injected ``Emitter``. Nothing received is dropped silently (what does not
map is kept, ``kept``), memory is bounded (``queue_max``; TLS senders are pushed back),
and a re-sent message is emitted byte-identical. This package owns the listeners, the
pipeline, the kept-store writer and the stats behind one small coordinator; it may
import ``integrations.atna``'s other modules, ``integrations.errors`` and the producers'
public surface. The design, invariant by invariant: docs/design/atna-receiver.md.
"""

from __future__ import annotations

from integrations.atna.receiver.config import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PARSE_WORKERS,
    AtnaReceiverConfig,
)
from integrations.atna.receiver.coordinator import AtnaReceiver
from integrations.atna.receiver.stats import AtnaStats

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_PARSE_WORKERS",
    "AtnaReceiver",
    "AtnaReceiverConfig",
    "AtnaStats",
]
