"""The webhook's wire format: canonical JSON body, HMAC signature, headers, backoff.

Invariant: the body is canonical JSON (sorted keys, no spaces, UTF-8), so its bytes are
what is signed; the signature is ``sha256=`` + hex HMAC-SHA256(secret, timestamp + "." +
body), so a captured request cannot be replayed with another timestamp; the idempotency
key (``<alert id>.<destination>``) is the same on every redelivery of an alert.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Callable, Mapping
from typing import Final

from ledger.audit.records import JsonValue
from ledger.audit.rules.alerts import AlertDetail

SIGNATURE: Final = "X-PhiLedger-Signature"
TIMESTAMP: Final = "X-PhiLedger-Timestamp"
IDEMPOTENCY: Final = "Idempotency-Key"
PAYLOAD_VERSION: Final = 1


def canonical(value: Mapping[str, JsonValue]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def idempotency_key(alert_id: int, destination: str) -> str:
    return f"{alert_id}.{destination}"


def payload(
    detail: AlertDetail, *, destination: str, include_patient: bool
) -> dict[str, JsonValue]:
    """The alert and its evidence positions. Only with ``include_patient``: the patient
    and the summary (free text written by a rule, which may name the patient)."""
    a = detail.alert
    alert: dict[str, JsonValue] = {
        "id": a.alert_id, "rule_id": a.rule_id, "rule_version": a.rule_version,
        "severity": a.severity, "facility_id": a.facility_id, "user_id": a.user_id,
        "raised_at": a.raised_at.isoformat(),
        "trigger": {"log": a.origin, "leaf_index": a.leaf_index},
        "thresholds": dict(a.thresholds), "state": a.state.value,
    }  # fmt: skip
    if include_patient:  # the summary is free text that may name the patient
        alert["patient"] = {"id": a.patient_id, "issuer": a.patient_issuer}
        alert["summary"] = a.summary
    return {
        "version": PAYLOAD_VERSION,
        "idempotency_key": idempotency_key(a.alert_id, destination),
        "alert": alert,
        "evidence": [
            {"log": e.origin, "leaf_index": e.leaf_index, "role": e.role} for e in detail.evidence
        ],
    }


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (also in docs/operations.md): constant-time comparison."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def headers(*, secret: bytes, timestamp: int, body: bytes, key: str) -> dict[str, str]:
    stamp = str(timestamp)
    return {
        "Content-Type": "application/json",
        SIGNATURE: signature(secret, stamp, body),
        TIMESTAMP: stamp,
        IDEMPOTENCY: key,
    }


def backoff(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed ``attempt`` (1-based): exponential, capped, with
    "equal jitter": half the step is fixed, half uniformly random."""
    step: float = min(cap, base * 2.0 ** (attempt - 1))
    return step / 2 + rand() * step / 2
