"""Delivery of compliance alerts to external receivers (an HMAC-signed webhook).

Owns the destinations' configuration (``config``), the wire format: canonical body,
signature, headers and backoff (``signing``), and the pass that delivers pending alerts
behind the ``DeliveryStore`` and ``Sender`` ports (``deliverer``). Pure: it imports
``ledger.audit`` and ``ledger.errors``, never a database or HTTP (``ledger.pg.delivery``
and ``ledger.http.webhook`` implement the ports). Design: docs/design/compliance.md,
"Delivery".
"""

from __future__ import annotations

from ledger.audit.delivery.config import Destination, load_destinations, parse_destinations
from ledger.audit.delivery.deliverer import (
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

__all__ = [
    "IDEMPOTENCY",
    "SIGNATURE",
    "TIMESTAMP",
    "Deliverer",
    "DeliveryStore",
    "DeliverySummary",
    "Destination",
    "Outcome",
    "Sender",
    "backoff",
    "canonical",
    "headers",
    "idempotency_key",
    "load_destinations",
    "parse_destinations",
    "payload",
    "signature",
    "verify",
]
