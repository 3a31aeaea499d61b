"""`ledger monitor`'s alerts: each new finding to the receivers compliance alerts go to.

Invariant: the destinations are the alert deliverer's (``LEDGER_ALERT_DELIVERY_FILE``):
an HMAC-signed webhook with the same headers and idempotency scheme, or an RFC 5424
message over TLS; the body names the log, the endpoint, the checkpoint size and the
finding, never PHI.  A finding counts as alerted only when every destination took it, so
one a receiver missed is sent again on the next round; nothing goes through the ledger's
own database, which a monitor must not depend on (the operator may be the one tampering).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from ledger.audit.delivery import AnyDestination, SyslogDestination
from ledger.audit.delivery.signing import canonical, headers
from ledger.audit.delivery.syslog import BOM, frame
from ledger.audit.records import JsonValue
from ledger.verify.monitor import MonitorFinding
from ledgerctl.delivery import Senders

PAYLOAD_VERSION = 1
SD_ID = "monitor@32473"  # the enterprise number RFC 5612 reserves for documentation
_CRITICAL = 2


def idempotency_key(finding: MonitorFinding, destination: str) -> str:
    return f"monitor.{finding.key}.{destination}"


def payload(finding: MonitorFinding, *, destination: str, found_at: datetime) -> bytes:
    """The canonical JSON body a receiver gets (and a syslog message carries)."""
    body: dict[str, JsonValue] = {
        "version": PAYLOAD_VERSION,
        "idempotency_key": idempotency_key(finding, destination),
        "monitor_finding": {
            "kind": finding.kind, "log": finding.log, "endpoint": finding.endpoint,
            "checkpoint_size": finding.checkpoint_size, "detail": finding.detail,
            "severity": "critical", "found_at": found_at.astimezone(UTC).isoformat(),
            "monitor_host": socket.gethostname(),
        },
    }  # fmt: skip
    return canonical(body)


def syslog_message(finding: MonitorFinding, d: SyslogDestination, found_at: datetime) -> bytes:
    stamp = found_at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    key = idempotency_key(finding, d.name)
    sd = f'[{SD_ID} kind="{finding.kind}" key="{key}"]'
    header = f"<{d.facility * 8 + _CRITICAL}>1 {stamp} {d.hostname} phi-ledger - monitor-finding"
    body = payload(finding, destination=d.name, found_at=found_at)
    return f"{header} {sd} ".encode() + BOM + body


async def send_alerts(
    findings: Iterable[MonitorFinding],
    destinations: Sequence[AnyDestination],
    *,
    found_at: datetime,
) -> tuple[set[str], list[str]]:
    """Send each finding to every destination: the keys every destination took, and one
    line per failed delivery (the finding is sent again next round)."""
    taken: set[str] = set()
    failures: list[str] = []
    sender = Senders()
    try:
        for finding in findings:
            ok = True
            for d in destinations:
                if isinstance(d, SyslogDestination):
                    outcome = await sender.syslog.send(
                        d, frame(syslog_message(finding, d, found_at))
                    )
                else:
                    body = payload(finding, destination=d.name, found_at=found_at)
                    key = idempotency_key(finding, d.name)
                    head = headers(secret=d.secret, timestamp=int(time.time()), body=body, key=key)
                    outcome = await sender.webhook.send(d, body, head)
                if not outcome.delivered:
                    ok = False
                    failures.append(f"ALERT NOT DELIVERED to {d.name} ({outcome}): {finding.kind}")
            if ok:
                taken.add(finding.key)
    finally:
        await sender.close()
    return taken, failures
