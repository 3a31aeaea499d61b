"""Alert delivery without a network: the signature, the canonical body, the backoff
schedule, the destinations file's refusals, the deliverer's retry and stop rules, and
the syslog message (read back by the ATNA receiver's own RFC 5424 parser)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from integrations.atna.framing import StreamDecoder
from integrations.atna.rfc5424 import Frame, parse_syslog
from ledger.audit.delivery import (
    Deliverer,
    Destination,
    Outcome,
    SyslogDestination,
    backoff,
    canonical,
    frame,
    headers,
    load_destinations,
    parse_destinations,
    payload,
    signature,
    syslog_message,
    verify,
)
from ledger.audit.rules import AlertState
from ledger.audit.rules.alerts import AlertDetail, StoredAlert, StoredEvidence
from ledger.errors import MalformedInputError

SECRET = b"s" * 40


def detail(alert_id: int = 7) -> AlertDetail:
    return AlertDetail(
        alert=StoredAlert(
            alert_id=alert_id, rule_id="access.bulk", rule_version=1, severity="high",
            facility_id="stmarys", user_id="snoop", patient_id="MRN-1", patient_issuer="stm",
            summary="51 patients in 60 min", log_id=1, origin="test/phi/0", leaf_index=50,
            thresholds={"patients": 50}, raised_at=datetime(2026, 3, 2, 22, tzinfo=UTC),
            state=AlertState.OPEN, disposition=None, seq=1,
        ),
        evidence=(StoredEvidence(log_id=1, origin="test/phi/0", leaf_index=50, role="trigger"),),
        transitions=(),
    )  # fmt: skip


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, "1700000000", body) == f"sha256={expected}"
    assert verify(SECRET, "1700000000", body, f"sha256={expected}")
    assert not verify(SECRET, "1700000001", body, f"sha256={expected}")  # replayed later
    assert not verify(b"t" * 40, "1700000000", body, f"sha256={expected}")
    sent = headers(secret=SECRET, timestamp=1700000000, body=body, key="7.siem")
    assert sent["X-PhiLedger-Signature"] == f"sha256={expected}"
    assert sent["X-PhiLedger-Timestamp"] == "1700000000"
    assert sent["Idempotency-Key"] == "7.siem"


def test_the_body_is_canonical_and_names_a_patient_only_when_configured() -> None:
    without = payload(detail(), destination="siem", include_patient=False)
    body = canonical(without)
    assert body == canonical(json.loads(body))
    assert b" " not in body
    assert list(json.loads(body)) == sorted(json.loads(body))
    assert b"MRN-1" not in body
    assert "patient" not in without["alert"]  # type: ignore[operator]
    assert "summary" not in without["alert"]
    assert without["idempotency_key"] == "7.siem"
    assert without["evidence"] == [{"log": "test/phi/0", "leaf_index": 50, "role": "trigger"}]
    with_patient = payload(detail(), destination="siem", include_patient=True)
    assert with_patient["alert"]["summary"] == "51 patients in 60 min"  # type: ignore[index,call-overload]
    assert with_patient["alert"]["patient"] == {"id": "MRN-1", "issuer": "stm"}  # type: ignore[index,call-overload]


def test_backoff_doubles_up_to_the_cap_with_half_of_each_step_random() -> None:
    low = [backoff(n, base=0.5, cap=4.0, rand=lambda: 0.0) for n in range(1, 7)]
    high = [backoff(n, base=0.5, cap=4.0, rand=lambda: 1.0) for n in range(1, 7)]
    assert low == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert high == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert 0.25 <= backoff(1, base=0.5, cap=4.0) <= 0.5


def files(tmp_path: Path, *, mode: int = 0o600, secret: bytes = SECRET) -> Path:
    (tmp_path / "siem.secret").write_bytes(secret + b"\n")
    os.chmod(tmp_path / "siem.secret", mode)
    (tmp_path / "ca.crt").write_text("not checked here\n")
    return tmp_path


GOOD = 'url = "https://siem.example:8443/hook"\nsecret_file = "siem.secret"\nca_file = "ca.crt"\n'


def test_a_good_file_loads_with_defaults_and_the_secret_stays_out_of_repr(tmp_path: Path) -> None:
    where = files(tmp_path) / "delivery.toml"
    where.write_text("[destination.siem]\n" + GOOD)
    (d,) = load_destinations(where)
    assert (d.name, d.secret, d.include_patient, d.max_attempts) == ("siem", SECRET, False, 5)
    assert SECRET.decode() not in repr(d)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[destination.siem]\n" + GOOD + "include_patient = 'yes'\n", "include_patient"),
        ("[destination.siem]\n" + GOOD + "max_attempts = 0\n", "max_attempts"),
        ("[destination.siem]\n" + GOOD + "timeout_seconds = -1\n", "timeout_seconds"),
        ("[destination.siem]\n" + GOOD + "colour = 1\n", "colour"),
        ("[destination.siem]\n" + GOOD.replace("https", "http"), "destination.siem.url"),
        ("[destination.siem]\n" + GOOD.replace("ca.crt", "nope.crt"), "ca_file"),
        ("[destination.siem]\n" + GOOD.replace("siem.secret", "none"), "secret_file"),
        ('[destination.siem]\nsecret_file = "siem.secret"\nca_file = "ca.crt"\n', "url"),
        ("[destination.Bad]\n" + GOOD, "destination.Bad"),
        ("[other]\n", "other"),
        ("", "no [destination"),
        ("[destination.siem\n", "not TOML"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(tmp_path: Path, text: str, named: str) -> None:
    files(tmp_path)
    with pytest.raises(MalformedInputError, match=named.replace("[", r"\[")):
        parse_destinations(text, base=tmp_path)


def test_a_secret_readable_by_others_or_too_short_is_refused(tmp_path: Path) -> None:
    files(tmp_path, mode=0o644)
    with pytest.raises(MalformedInputError, match=r"secret_file: refusing .*chmod 600") as err:
        parse_destinations("[destination.siem]\n" + GOOD, base=tmp_path)
    assert SECRET.decode() not in str(err.value)
    files(tmp_path, secret=b"short")
    with pytest.raises(MalformedInputError, match="shorter than 32 bytes"):
        parse_destinations("[destination.siem]\n" + GOOD, base=tmp_path)


class Store:
    def __init__(self, n: int) -> None:
        self.details = [detail(i) for i in range(1, n + 1)]
        self.attempts: list[tuple[int, Outcome]] = []
        self.delivered: set[int] = set()

    async def pending(self, destination: str, limit: int) -> Sequence[AlertDetail]:
        return [d for d in self.details if d.alert.alert_id not in self.delivered][:limit]

    async def record(self, alert_id: int, destination: str, outcome: Outcome) -> None:
        self.attempts.append((alert_id, outcome))
        if outcome.delivered:
            self.delivered.add(alert_id)


class Scripted:
    def __init__(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes
        self.bodies: list[bytes] = []

    async def send(self, destination: Destination, body: bytes, sent: dict[str, str]) -> Outcome:
        assert verify(destination.secret, sent["X-PhiLedger-Timestamp"], body,
                      sent["X-PhiLedger-Signature"])  # fmt: skip
        self.bodies.append(body)
        return self.outcomes.pop(0) if self.outcomes else Outcome(http_status=200)


def run(store: Store, sender: Scripted, *, attempts: int = 3) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    dest = Destination(name="siem", url="https://x/", secret=SECRET, ca_file=Path("ca"),
                       max_attempts=attempts, batch=2)  # fmt: skip
    asyncio.run(Deliverer(store, sender, [dest], sleep=sleep).run_pass())
    return slept


def test_a_500_is_retried_with_backoff_and_then_delivered_in_order() -> None:
    store, sender = Store(3), Scripted([Outcome(http_status=500), Outcome(error_class="timeout")])
    slept = run(store, sender)
    assert store.delivered == {1, 2, 3}
    assert [(a, str(o)) for a, o in store.attempts] == [
        (1, "HTTP 500"), (1, "timeout"), (1, "HTTP 200"), (2, "HTTP 200"), (3, "HTTP 200"),
    ]  # fmt: skip
    assert len(slept) == 2
    assert [json.loads(b)["alert"]["id"] for b in sender.bodies] == [1, 1, 1, 2, 3]


def test_a_receiver_that_stays_down_leaves_everything_pending_and_stops_the_pass() -> None:
    store = Store(3)
    run(store, Scripted([Outcome(error_class="connect")] * 3))
    assert store.delivered == set()
    assert [a for a, _ in store.attempts] == [1, 1, 1]  # the later alerts wait behind it
    run(store, Scripted([]))
    assert store.delivered == {1, 2, 3}


@pytest.mark.parametrize("outcome", [Outcome(error_class="tls"), Outcome(http_status=401)])
def test_a_tls_failure_or_a_refusal_is_not_retried_within_the_pass(outcome: Outcome) -> None:
    store = Store(2)
    assert run(store, Scripted([outcome])) == []
    assert store.attempts == [(1, outcome)]
    assert store.delivered == set()


ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_example_file_loads(tmp_path: Path) -> None:
    files(tmp_path)
    (tmp_path / "siem-ca.crt").write_text("pem\n")
    text = (ROOT / "deploy" / "alert-delivery.toml").read_text()
    d, soc = parse_destinations(text, base=tmp_path)
    assert isinstance(d, Destination)
    assert (d.name, d.include_patient, d.max_attempts, d.batch) == ("siem", False, 5, 100)
    assert isinstance(soc, SyslogDestination)
    assert (soc.name, soc.port, soc.facility, soc.include_patient) == ("soc", 6514, 13, False)


def test_the_receiver_check_in_operations_md_accepts_ours_and_refuses_a_forgery() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    section = doc[doc.index("## Delivering compliance alerts") :]
    start = section.index("```python\n") + len("```python\n")
    scope: dict[str, object] = {}
    exec(section[start : section.index("```", start)], scope)  # the snippet, as documented
    accept = cast(Callable[..., bool], scope["accept"])
    body = canonical(payload(detail(), destination="siem", include_patient=False))
    sent = headers(secret=SECRET, timestamp=int(time.time()), body=body, key="7.siem")
    seen: set[str] = set()
    assert accept(SECRET, sent, body, seen)
    assert seen == {"7.siem"}
    assert accept(SECRET, sent, body, seen)  # a redelivery: accepted, stored once
    assert not accept(SECRET, sent, body + b" ", seen)
    assert not accept(b"x" * 40, sent, body, seen)
    stale = headers(secret=SECRET, timestamp=int(time.time()) - 3600, body=body, key="7.siem")
    assert not accept(SECRET, stale, body, seen)


def syslog_dest(**kw: object) -> SyslogDestination:
    return SyslogDestination(name="siem-syslog", host="localhost", ca_file=Path("ca"), **kw)  # type: ignore[arg-type]


def test_an_alert_is_one_rfc5424_message_in_an_octet_counted_frame() -> None:
    d = syslog_dest(hostname="ledger-1.example")
    special = detail()
    framed = frame(syslog_message(special, d))
    (got,) = StreamDecoder(64 * 1024).feed(framed)
    assert isinstance(got, Frame)
    msg = parse_syslog(got.data)
    assert (msg.facility, msg.severity) == (13, 3)  # log audit; high -> error
    assert (msg.hostname, msg.app_name, msg.msgid) == ("ledger-1.example", "phi-ledger",
                                                       "compliance-alert")  # fmt: skip
    assert msg.timestamp == special.alert.raised_at
    (sd,) = msg.structured_data
    assert sd.id == "alert@32473"
    assert dict(sd.params) == {"id": "7", "rule": "access.bulk", "version": "1",
                               "severity": "high", "key": "7.siem-syslog"}  # fmt: skip
    assert msg.bom
    body = json.loads(msg.msg)
    assert body == payload(special, destination="siem-syslog", include_patient=False)
    assert b"MRN-1" not in framed
    with_patient = frame(syslog_message(special, syslog_dest(include_patient=True)))
    assert b"MRN-1" in with_patient


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[syslog.s]\nca_file = "ca.crt"\n', "syslog.s.host"),
        ('[syslog.s]\nhost = "a b"\nca_file = "ca.crt"\n', "syslog.s.host"),
        ('[syslog.s]\nhost = "h"\nca_file = "ca.crt"\nport = 70000\n', "syslog.s.port"),
        ('[syslog.s]\nhost = "h"\nca_file = "ca.crt"\nfacility = 24\n', "syslog.s.facility"),
        ('[syslog.s]\nhost = "h"\nca_file = "ca.crt"\nhostname = "a b"\n', "syslog.s.hostname"),
        ('[syslog.s]\nhost = "h"\nca_file = "ca.crt"\nurl = "x"\n', "syslog.s.url"),
        ('[syslog.s]\nhost = "h"\n', "syslog.s.ca_file"),
        ('[syslog.siem]\nhost = "h"\nca_file = "ca.crt"\n[destination.siem]\n' + GOOD,
         "syslog.siem: the name of a destination too"),
    ],
)  # fmt: skip
def test_bad_syslog_values_are_refused_with_the_key_named(
    tmp_path: Path, text: str, named: str
) -> None:
    files(tmp_path)
    with pytest.raises(MalformedInputError, match=named):
        parse_destinations(text, base=tmp_path)


def test_a_syslog_destination_loads_beside_a_webhook(tmp_path: Path) -> None:
    files(tmp_path)
    text = '[syslog.soc]\nhost = "10.0.0.9"\nca_file = "ca.crt"\n[destination.siem]\n' + GOOD
    hook, soc = parse_destinations(text, base=tmp_path)
    assert isinstance(hook, Destination)
    assert isinstance(soc, SyslogDestination)
    assert (soc.port, soc.facility, soc.include_patient) == (6514, 13, False)


def test_a_written_syslog_message_counts_as_delivered() -> None:
    assert Outcome().delivered
    assert str(Outcome()) == "written"
    assert not Outcome(error_class="connect").delivered
