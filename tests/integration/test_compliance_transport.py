"""``transport.unencrypted`` against a real scratch database: PhiAccessEvents (v3) appended
through the real appender, the unencrypted ones raised once each with the leaf behind
them, their encrypted and unknown twins nothing, and a rerun nothing new."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta

import pytest

from ledger.audit.rules.alerts import AlertFilter, StoredAlert, StoredEvidence
from ledger.pg.compliance import PostgresRulesStore
from producers.events import (
    DisclosedPatient,
    EventAction,
    PhiAccessEvent,
    Transport,
    TransportChannel,
)
from tests.conftest import own_ledger
from tests.integration.test_compliance_alerts import T0, alert_keys, append, evaluate, phi
from tests.support import Stack

pytestmark = pytest.mark.integration


def over(channel: TransportChannel | None, event: PhiAccessEvent) -> PhiAccessEvent:
    """``event`` as sent over ``channel`` (what the channel says by itself; None: not
    recorded, as every producer before v3)."""
    return dataclasses.replace(event, transport=None if channel is None else Transport.of(channel))


def stream() -> list[PhiAccessEvent]:
    query = dataclasses.replace(
        phi("dr.q", "unused", T0 + timedelta(minutes=5)),
        dicom_event_id="110112",
        action=EventAction.EXECUTE,
        patient=None,
        study=None,
        disclosed=tuple(
            DisclosedPatient(id=f"MRN-Q{i}", issuer="stmarys-boston") for i in range(3)
        ),
        details={"query": "PatientName=SMITH*"},
    )
    return [
        over(TransportChannel.HTTP, phi("dr.plain", "MRN-T1", T0)),  # leaf 0: alert
        over(TransportChannel.HTTPS, phi("dr.plain", "MRN-T1", T0)),  # its encrypted twin
        over(None, phi("dr.plain", "MRN-T1", T0)),  # unknown: a v2-style event
        over(TransportChannel.UNKNOWN, phi("dr.plain", "MRN-T1", T0)),  # unknown
        over(TransportChannel.DICOM_TLS, phi("dr.tls", "MRN-T2", T0 + timedelta(minutes=1))),
        over(TransportChannel.DICOM, query),  # leaf 5: alert, no patient
    ]


def test_unencrypted_accesses_raise_one_alert_each_and_a_rerun_raises_nothing(
    stack: Stack,
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic = f"rules-{tag}-transport"
    with own_ledger(stack, f"{stack.database}_transport{tag[:6]}") as own:
        asyncio.run(append(own.appender_url, topic, stream()))
        dsn = own.appender_url
        expected = {("transport.unencrypted", 1, topic, 0), ("transport.unencrypted", 1, topic, 5)}
        assert asyncio.run(evaluate(dsn)) == 2
        assert asyncio.run(alert_keys(dsn)) == expected
        assert asyncio.run(evaluate(dsn)) == 0
        assert asyncio.run(evaluate(dsn, batch=1)) == 0
        assert asyncio.run(alert_keys(dsn)) == expected

        async def stored() -> list[tuple[StoredAlert, tuple[StoredEvidence, ...]]]:
            async with PostgresRulesStore(dsn=dsn) as store:
                alerts = await store.alerts(AlertFilter(rule_id="transport.unencrypted"))
                found = []
                for alert in sorted(alerts, key=lambda a: a.leaf_index):
                    detail = await store.alert(alert.alert_id)
                    assert detail is not None
                    found.append((alert, detail.evidence))
                return found

        (plain, plain_evidence), (query, query_evidence) = asyncio.run(stored())
        assert (plain.severity, plain.facility_id, plain.user_id) == (
            "high",
            "stmarys-boston",
            "dr.plain",
        )
        assert (plain.patient_id, plain.patient_issuer) == ("MRN-T1", "stmarys-boston")
        assert "HTTP" in plain.summary
        assert plain.thresholds == {"alert_on_unknown": False}
        assert [(e.role, e.leaf_index) for e in plain_evidence] == [("trigger", 0)]
        assert (query.user_id, query.patient_id) == ("dr.q", None)
        assert "DICOM" in query.summary
        assert "3 patient(s)" in query.summary
        assert [(e.role, e.leaf_index) for e in query_evidence] == [("trigger", 5)]
