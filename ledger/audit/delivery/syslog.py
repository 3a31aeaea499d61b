"""An alert as an RFC 5424 syslog message, framed for TLS transport (RFC 5425).

Invariant: one alert is one message: PRI from the destination's facility and the alert's
severity, the alert's raise time, APP-NAME ``phi-ledger``, MSGID ``compliance-alert``, an
SD element with the alert's id, rule, severity and idempotency key (escaped as RFC 5424
section 6.3.3 says), and as MSG the same canonical JSON a webhook receives (after a
BOM); the frame is ``MSG-LEN SP SYSLOG-MSG`` (octet counting).
"""

from __future__ import annotations

from datetime import UTC
from typing import Final

from ledger.audit.delivery.config import SyslogDestination
from ledger.audit.delivery.signing import canonical, idempotency_key, payload
from ledger.audit.rules.alerts import AlertDetail

#: The SD-ID: ``alert@32473`` (32473 is the private enterprise number that RFC 5612
#: reserves for examples and documentation; a site with its own number may fork it).
SD_ID: Final = "alert@32473"
#: The alert's severity as a syslog severity: critical 2, high 3 (error), medium 4
#: (warning), low 5 (notice).
SEVERITY: Final = {"critical": 2, "high": 3, "medium": 4, "low": 5}
BOM: Final = b"\xef\xbb\xbf"


def _param(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(detail: AlertDetail, d: SyslogDestination) -> bytes:
    a = detail.alert
    pri = d.facility * 8 + SEVERITY.get(a.severity, 4)
    stamp = a.raised_at.astimezone(UTC).isoformat(timespec="microseconds")
    params = (
        ("id", str(a.alert_id)), ("rule", a.rule_id), ("version", str(a.rule_version)),
        ("severity", a.severity), ("key", idempotency_key(a.alert_id, d.name)),
    )  # fmt: skip
    sd = "[" + SD_ID + "".join(f' {k}="{_param(v)}"' for k, v in params) + "]"
    header = f"<{pri}>1 {stamp.replace('+00:00', 'Z')} {d.hostname} phi-ledger - compliance-alert"
    body = canonical(payload(detail, destination=d.name, include_patient=d.include_patient))
    return f"{header} {sd} ".encode() + BOM + body


def frame(message: bytes) -> bytes:
    return str(len(message)).encode("ascii") + b" " + message
