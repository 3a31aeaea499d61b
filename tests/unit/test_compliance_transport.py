"""``transport.unencrypted``: a planted unencrypted access raises exactly one finding, its
encrypted twin none, an unknown transport none by default, and with ``alert_on_unknown``
at most one per facility, channel and UTC day in a log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger.audit.rules import (
    AppendedEvent,
    LogEvaluator,
    Position,
    RulesConfig,
    build_rules,
    parse_config,
)
from ledger.audit.rules.config import TransportConfig
from ledger.audit.rules.model import SECURITY_EVENT, Severity
from ledger.audit.rules.transport import TransportUnencrypted
from ledger.errors import MalformedInputError
from tests.unit.test_compliance_rules import T0, Log, access


def sent(
    channel: str | None,
    encrypted: bool | None,
    *,
    patient: str | None = "P1",
    at: timedelta = timedelta(0),
    **kwargs: Any,
) -> tuple[str, dict[str, Any]]:
    """An access whose ``transport`` is (channel, encrypted); no transport when channel
    is None (a v1 or v2 record, or a v3 one that recorded none)."""
    schema, record = access("dr.x", patient, T0 + at, **kwargs)
    if channel is not None:
        record["transport"] = {"channel": channel, "encrypted": encrypted}
    return schema, record


def transport(*, alert_on_unknown: bool = False) -> Log:
    return Log(TransportUnencrypted(TransportConfig(alert_on_unknown=alert_on_unknown)))


def test_an_unencrypted_access_raises_exactly_one_finding_naming_who_where_and_how() -> None:
    log = transport()
    plain = log.add(*sent("HTTP", False))
    assert len(log.findings) == 1
    f = log.findings[0]
    assert (f.rule_id, f.rule_version, f.severity) == ("transport.unencrypted", 1, Severity.HIGH)
    assert (f.trigger, f.facility_id, f.user_id) == (plain, "stmarys", "dr.x")
    assert f.patient is not None
    assert (f.patient.id, f.patient.issuer) == ("P1", "MRN")
    assert [(e.position, e.role) for e in f.evidence] == [(plain, "trigger")]
    assert "HTTP" in f.summary
    assert "unencrypted" in f.summary
    assert f.thresholds == {"alert_on_unknown": False}


def test_each_unencrypted_access_raises_its_own_finding() -> None:
    log = transport()
    first = log.add(*sent("DICOM", False))
    second = log.add(*sent("DICOM", False, at=timedelta(minutes=1)))
    assert [f.trigger for f in log.findings] == [first, second]


@pytest.mark.parametrize(
    ("channel", "encrypted"),
    [
        ("HTTPS", True),
        ("DICOM_TLS", True),
        ("HTTP", True),  # behind a declared TLS terminator
    ],
)
def test_the_encrypted_twin_raises_none(channel: str, encrypted: bool) -> None:
    log = transport()
    log.add(*sent(channel, encrypted))
    assert log.findings == []


@pytest.mark.parametrize(
    ("channel", "encrypted"),
    [
        (None, None),  # no transport recorded: every v1 and v2 event
        ("UNKNOWN", None),
        ("HTTP", None),  # behind a trusted proxy that did not say
    ],
)
def test_an_unknown_transport_raises_none_by_default(
    channel: str | None, encrypted: bool | None
) -> None:
    log = transport()
    log.add(*sent(channel, encrypted))
    assert log.findings == []


def test_a_patientless_query_names_no_patient_and_counts_the_disclosed_ones() -> None:
    log = transport()
    log.add(*sent("HTTP", False, patient=None, disclosed=["P1", "P2", "P3"]))
    (f,) = log.findings
    assert f.patient is None
    assert "3 patient(s)" in f.summary


def test_a_refused_access_over_plain_http_still_raises_and_says_it_was_refused() -> None:
    log = transport()
    log.add(*sent("HTTP", False, outcome="MAJOR_FAILURE"))
    (f,) = log.findings
    assert "refused" in f.summary


def test_other_records_are_not_read() -> None:
    log = transport(alert_on_unknown=True)
    log.add(*sent("HTTP", False, schema=SECURITY_EVENT))
    assert log.findings == []


def test_alert_on_unknown_raises_once_per_facility_channel_and_utc_day() -> None:
    log = transport(alert_on_unknown=True)
    first = log.add(*sent(None, None))
    log.add(*sent(None, None, at=timedelta(minutes=5)))  # same day, same channel
    unknown = log.add(*sent("UNKNOWN", None, at=timedelta(minutes=6)))  # another channel
    log.add(*sent("HTTPS", True, at=timedelta(minutes=7)))
    # T0 is 22:00 UTC: two hours later is the next UTC day
    next_day = log.add(*sent(None, None, at=timedelta(hours=2)))
    schema, record = sent(None, None, at=timedelta(hours=2, minutes=1))
    record["facility"] = {"id": "northside", "name": None}
    other_facility = log.add(schema, record)
    assert [f.trigger for f in log.findings] == [first, unknown, next_day, other_facility]
    assert all(f.thresholds == {"alert_on_unknown": True} for f in log.findings)
    assert "no transport recorded" in log.findings[0].summary
    assert "2026-03-02" in log.findings[0].summary
    assert "later ones that day raise no alert" in log.findings[0].summary
    assert "not known to be encrypted" in log.findings[1].summary


def test_alert_on_unknown_still_raises_every_unencrypted_access() -> None:
    log = transport(alert_on_unknown=True)
    log.add(*sent("HTTP", False))
    log.add(*sent("HTTP", False, at=timedelta(minutes=1)))
    assert len(log.findings) == 2


def test_the_same_log_evaluated_again_raises_the_same_findings() -> None:
    records = [sent(None, None, at=timedelta(minutes=i)) for i in range(5)]
    records += [sent("HTTP", False, at=timedelta(hours=3))]
    config = parse_config("[transport_unencrypted]\nalert_on_unknown = true\n")
    runs = []
    for _ in range(2):
        evaluator = LogEvaluator(build_rules(config))
        keys = []
        for i, (schema, record) in enumerate(records):
            event = AppendedEvent(
                position=Position(log_id=3, leaf_index=i), schema=schema, record=record
            )
            keys += [f.key for f in evaluator.evaluate(event)]
        runs.append(keys)
    assert (
        runs[0]
        == runs[1]
        == [("transport.unencrypted", 1, 3, 0), ("transport.unencrypted", 1, 3, 5)]
    )


def test_the_configuration_sets_severity_and_alert_on_unknown() -> None:
    config = parse_config(
        "[transport_unencrypted]\nalert_on_unknown = true\nseverity = 'critical'\n"
    )
    assert config.transport == TransportConfig(alert_on_unknown=True, severity=Severity.CRITICAL)
    assert RulesConfig().transport == TransportConfig(alert_on_unknown=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[transport_unencrypted]\nalert_on_unknown = 'yes'\n", "alert_on_unknown"),
        ("[transport_unencrypted]\nalert_on_unknow = true\n", "unknown key"),
        ("[transport_unencrypted]\nseverity = 'urgent'\n", "severity"),
    ],
)
def test_a_bad_transport_configuration_is_refused(text: str, message: str) -> None:
    with pytest.raises(MalformedInputError, match=message):
        parse_config(text)
