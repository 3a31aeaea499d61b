"""Delivery of compliance alerts to external receivers: an HMAC-signed webhook, and
syslog (RFC 5424 over TLS).

Owns the destinations' configuration (``config``), the wire formats: canonical body,
signature, headers and backoff (``signing``), the syslog message and its frame
(``syslog``), and the pass that delivers pending alerts
behind the ``DeliveryStore`` and ``Sender`` ports (``deliverer``). Pure: it imports
``ledger.audit`` and ``ledger.errors``, never a database or HTTP (``ledger.pg.delivery``
and ``ledger.http.webhook`` implement the ports). Design: docs/design/compliance.md,
"Delivery".
"""

from __future__ import annotations

from ledger.audit.delivery.config import (
    Destination,
    SyslogDestination,
    load_destinations,
    parse_destinations,
)
from ledger.audit.delivery.deliverer import (
    AnyDestination,
    Deliverer,
    DeliveryStore,
    DeliverySummary,
    Outcome,
    Sender,
)
from ledger.audit.delivery.signing import (
    IDEMPOTENCY,
    SIGNATURE,
    TIMESTAMP,
    backoff,
    canonical,
    headers,
    idempotency_key,
    payload,
    signature,
    verify,
)
from ledger.audit.delivery.syslog import frame, syslog_message

__all__ = [
    "IDEMPOTENCY",
    "SIGNATURE",
    "TIMESTAMP",
    "AnyDestination",
    "Deliverer",
    "DeliveryStore",
    "DeliverySummary",
    "Destination",
    "Outcome",
    "Sender",
    "SyslogDestination",
    "backoff",
    "canonical",
    "frame",
    "headers",
    "idempotency_key",
    "load_destinations",
    "parse_destinations",
    "payload",
    "signature",
    "syslog_message",
    "verify",
]
