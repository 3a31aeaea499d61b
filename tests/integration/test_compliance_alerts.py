"""The rules evaluator against real scratch databases: events appended through the real
appender, alerts raised once, nothing new on a rerun, the same alert keys from an empty
alerts table over the same ledger, append-only tables, and triage by the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from consumers.classify import classify
from ledger.audit.ingest import Accepted, WriterSchemaInfo
from ledger.audit.rules import (
    AlertState,
    Disposition,
    Evaluator,
    RulesConfig,
    build_rules,
    transition,
)
from ledger.audit.rules.alerts import AlertFilter
from ledger.errors import ConflictError
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.pg.appender import PostgresAppender
from ledger.pg.compliance import PostgresRulesStore
from producers.codec import Codec
from producers.events import (
    AcrCategory,
    Actor,
    CriticalResultRelay,
    EventAction,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    RelayMethod,
    RelayRecipient,
    Study,
    event_key,
)
from tests.conftest import own_ledger
from tests.support import APPENDED_MS, ROOT, Stack, run_ledger

pytestmark = pytest.mark.integration

CODEC = Codec()
FACILITY = Facility(id="stmarys-boston", name="St. Mary's")
STUDY = Study(uid="2.25.4242", accession="A1001", modality="CT", instances=120)
T0 = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
Event = PhiAccessEvent | CriticalResultRelay


def phi(
    user: str, patient: str, at: datetime, *, purpose: str = "TREAT", why: str | None = None
) -> PhiAccessEvent:
    return PhiAccessEvent(
        facility=FACILITY,
        actor=Actor(user_id=user, role="radiologist", organization="Nocturne Telerad"),
        dicom_event_id="110103",
        action=EventAction.READ,
        outcome=EventOutcome.SUCCESS,
        patient=Patient(id=patient, issuer="stmarys-boston", state="MA"),
        study=STUDY,
        network_address="10.77.0.1",
        purpose_of_use=purpose,
        details={} if why is None else {"justification": why},
        event_time=at,
    )


def relay(patient: str, category: AcrCategory, delay: timedelta) -> CriticalResultRelay:
    return CriticalResultRelay(
        facility=FACILITY,
        category=category,
        patient=Patient(id=patient, issuer="stmarys-boston", state="MA"),
        study=STUDY,
        identified_at=T0,
        communicated_at=T0 + delay,
        acknowledged_at=T0 + delay + timedelta(minutes=1),
        sender=Actor(user_id="rad-relay", role="radiologist"),
        recipient=RelayRecipient(name="Dr. Okafor", role="ed-attending"),
        method=RelayMethod.PHONE,
        read_back=True,
        attempts=(),
        finding="tension pneumothorax",
        event_time=T0 + delay + timedelta(minutes=5),
    )


@dataclass(frozen=True)
class Planted:
    """Each stream, and the leaf index in it that must raise each rule."""

    access: tuple[Event, ...]
    relays: tuple[Event, ...]
    #: (rule id, topic suffix, leaf index)
    expected: frozenset[tuple[str, str, int]]


def plant() -> Planted:
    access: list[Event] = []
    # a snooping night: 51 distinct patients within the hour -> one access.bulk at the 51st
    access += [phi("snoop", f"MRN-{i}", T0 + timedelta(seconds=30 * i)) for i in range(51)]
    access += [phi("snoop", f"MRN-{i}", T0 + timedelta(minutes=26, seconds=i)) for i in range(5)]
    # a busy radiologist, the clean twin: 50 distinct patients, many times each
    access += [phi("busy", f"MRN-{i % 50}", T0 + timedelta(seconds=20 * i)) for i in range(120)]
    # a break-glass with no justification, and its justified twin
    unjustified = len(access)
    access.append(phi("dr.x", "MRN-BG1", T0 + timedelta(hours=1), purpose="ETREAT"))
    access.append(phi("dr.z", "MRN-BG2", T0 + timedelta(hours=1), purpose="ETREAT"))
    access.append(phi("dr.z", "MRN-BG2", T0 + timedelta(hours=1, minutes=20), why="trauma bay"))
    # later traffic moves the log's clock past both deadlines
    access.append(phi("busy", "MRN-1", T0 + timedelta(hours=3)))
    relays: list[Event] = [
        relay("MRN-R1", AcrCategory.CAT1, timedelta(minutes=45)),  # late
        relay("MRN-R2", AcrCategory.CAT1, timedelta(minutes=20)),  # on time
        relay("MRN-R3", AcrCategory.CAT3, timedelta(days=2)),  # on time
    ]
    return Planted(
        access=tuple(access),
        relays=tuple(relays),
        expected=frozenset(
            {
                ("access.bulk", "phi", 50),
                ("breakglass.unjustified", "phi", unjustified),
                ("relay.late", "relay", 0),
            }
        ),
    )


async def append(dsn: str, topic: str, events: Sequence[Event]) -> None:
    """Appends ``events`` to partition 0 of ``topic`` as the consumer would."""
    async with PostgresAppender(dsn=dsn, ledger_name="test.ledger.local") as app:
        await app.register_schemas(
            [
                WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                                 canonical_form=s.canonical_form, schema_json=s.schema_json)
                for s in CODEC.schemas
            ]
        )  # fmt: skip
        items = []
        for offset, event in enumerate(events):
            record = KafkaRecord(
                topic=topic, partition=0, offset=offset,
                timestamp_ms=APPENDED_MS, timestamp_type=0,
                key=event_key(event).encode(),
                value=CODEC.encode(event.stamped(producer_id="rules-it", producer_seq=offset + 1)),
            )  # fmt: skip
            item = classify(record, CODEC)
            assert isinstance(item, Accepted), item
            items.append(item)
        result = await app.append(topic=topic, partition=0, items=items)
        assert result.appended == len(events)


async def evaluate(dsn: str, *, batch: int = 64) -> int:
    async with PostgresRulesStore(dsn=dsn) as store:
        summary = await Evaluator(store, build_rules(RulesConfig()), batch=batch).run_pass()
        return summary.raised


async def alert_keys(dsn: str) -> set[tuple[str, int, str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT a.rule_id, a.rule_version, l.topic, a.leaf_index"
            " FROM alerts a JOIN logs l USING (log_id)"
        )
    finally:
        await conn.close()
    return {(r["rule_id"], r["rule_version"], r["topic"], r["leaf_index"]) for r in rows}


@dataclass(frozen=True)
class Scratch:
    stack: Stack
    planted: Planted
    tag: str

    def topic(self, suffix: str) -> str:
        return f"rules-{self.tag}-{suffix}"

    def expected_keys(self) -> set[tuple[str, int, str, int]]:
        return {(rule, 1, self.topic(s), i) for rule, s, i in self.planted.expected}


def fill(stack: Stack, planted: Planted, tag: str) -> None:
    asyncio.run(append(stack.appender_url, f"rules-{tag}-phi", planted.access))
    asyncio.run(append(stack.appender_url, f"rules-{tag}-relay", planted.relays))


@pytest.fixture(scope="module")
def scratch(stack: Stack) -> Iterator[Scratch]:
    tag = uuid.uuid4().hex[:8]
    planted = plant()
    with own_ledger(stack, f"{stack.database}_rules{tag[:6]}") as own:
        fill(own, planted, tag)
        yield Scratch(stack=own, planted=planted, tag=tag)


def test_each_planted_violation_raises_one_alert_and_a_rerun_raises_nothing(
    scratch: Scratch,
) -> None:
    dsn = scratch.stack.appender_url
    assert asyncio.run(evaluate(dsn)) == 3
    assert asyncio.run(alert_keys(dsn)) == scratch.expected_keys()
    assert asyncio.run(evaluate(dsn)) == 0
    assert asyncio.run(evaluate(dsn, batch=1000)) == 0
    assert asyncio.run(alert_keys(dsn)) == scratch.expected_keys()

    async def stored() -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
        conn = await asyncpg.connect(scratch.stack.reader_url)  # the API's role reads them
        try:
            cursors = await conn.fetch(
                "SELECT l.topic, max(c.next_leaf) AS next_leaf, sum(c.alerts_raised) AS raised"
                " FROM rule_cursors c JOIN logs l USING (log_id) GROUP BY l.topic"
            )
            opened = await conn.fetch(
                "SELECT a.rule_id, t.state, t.transitioned_by, count(e.*) AS evidence"
                " FROM alerts a JOIN alert_transitions t USING (alert_id)"
                " JOIN alert_evidence e USING (alert_id) GROUP BY 1, 2, 3"
            )
        finally:
            await conn.close()
        return cursors, opened

    cursors, opened = asyncio.run(stored())
    assert {r["topic"]: (r["next_leaf"], r["raised"]) for r in cursors} == {
        scratch.topic("phi"): (len(scratch.planted.access), 2),
        scratch.topic("relay"): (len(scratch.planted.relays), 1),
    }
    assert {(r["rule_id"], r["state"], r["transitioned_by"]) for r in opened} == {
        (rule, "open", "rules-evaluator")
        for rule in ("access.bulk", "breakglass.unjustified", "relay.late")
    }
    evidence = {r["rule_id"]: r["evidence"] for r in opened}
    assert evidence == {"access.bulk": 52, "breakglass.unjustified": 2, "relay.late": 1}


def test_the_same_ledger_from_an_empty_alerts_table_gives_the_same_alert_keys(
    scratch: Scratch,
) -> None:
    with own_ledger(scratch.stack, f"{scratch.stack.database}_again") as again:
        fill(again, scratch.planted, scratch.tag)
        assert asyncio.run(evaluate(again.appender_url, batch=7)) == 3
        assert asyncio.run(alert_keys(again.appender_url)) == scratch.expected_keys()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE alerts SET severity = 'low'",
        "DELETE FROM alert_transitions",
        "UPDATE rule_cursors SET next_leaf = 0",
        "DELETE FROM alert_evidence",
        "TRUNCATE alerts CASCADE",
    ],
)
def test_alert_tables_refuse_updates_and_deletes_even_from_the_owner(
    scratch: Scratch, statement: str
) -> None:
    async def attempt(dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(evaluate(scratch.stack.appender_url))
    for dsn in (scratch.stack.appender_url, scratch.stack.owner_url):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            asyncio.run(attempt(dsn))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(attempt(scratch.stack.reader_url))


def test_triage_appends_transitions_and_refuses_an_invalid_one(scratch: Scratch) -> None:
    asyncio.run(evaluate(scratch.stack.appender_url))

    async def triage() -> None:
        async with PostgresRulesStore(dsn=scratch.stack.appender_url) as store:
            (alert,) = await store.alerts(AlertFilter(rule_id="relay.late"))
            ack = transition(state=AlertState.ACKNOWLEDGED, note="calling the ED", by="alice")
            close = transition(
                state=AlertState.CLOSED, note="phone log confirms", by="alice",
                disposition=Disposition.POLICY_VIOLATION,
            )  # fmt: skip
            await store.transition(alert.alert_id, ack)
            with pytest.raises(ConflictError, match="acknowledged: it cannot become"):
                await store.transition(alert.alert_id, ack)
            await store.transition(alert.alert_id, close)
            with pytest.raises(ConflictError, match="closed: it cannot become closed"):
                await store.transition(alert.alert_id, close)
            detail = await store.alert(alert.alert_id)
            assert detail is not None
            assert [(t.seq, t.state, t.by) for t in detail.transitions] == [
                (1, AlertState.OPEN, "rules-evaluator"),
                (2, AlertState.ACKNOWLEDGED, "alice"),
                (3, AlertState.CLOSED, "alice"),
            ]
            assert detail.alert.disposition is Disposition.POLICY_VIOLATION
            assert [(e.role, e.leaf_index) for e in detail.evidence] == [("trigger", 0)]
            closed = await store.alerts(AlertFilter(state=AlertState.CLOSED))
            assert [a.alert_id for a in closed] == [alert.alert_id]

    asyncio.run(triage())


def test_the_cli_runs_the_rules_lists_shows_and_triages(scratch: Scratch) -> None:
    env = scratch.stack.env()
    ran = run_ledger(env, "rules", "run", "--once")
    assert ran.returncode == 0, ran.stderr
    assert "alert(s) raised" in ran.stdout + ran.stderr
    listed = run_ledger(
        env, "alerts", "list", "--rule", "breakglass.unjustified", "--reason", "ticket-15"
    )
    assert listed.returncode == 0, listed.stderr
    assert "dr.x" in listed.stdout
    assert "MRN-BG1" in listed.stdout
    assert "MRN-BG2" not in listed.stdout  # the justified twin raised nothing

    async def breakglass_id() -> int:
        async with PostgresRulesStore(dsn=scratch.stack.appender_url) as store:
            (alert,) = await store.alerts(AlertFilter(rule_id="breakglass.unjustified"))
            return alert.alert_id

    alert_id = str(asyncio.run(breakglass_id()))
    shown = run_ledger(env, "alerts", "show", alert_id, "--reason", "ticket-15")
    assert shown.returncode == 0, shown.stderr
    assert "deadline_passed" in shown.stdout
    assert scratch.topic("phi") in shown.stdout

    bad = run_ledger(env, "alerts", "close", alert_id, "--disposition", "resolved", "--note", "x")
    assert bad.returncode == 1
    assert "unknown disposition" in bad.stderr + bad.stdout
    closed = run_ledger(
        env, "alerts", "close", alert_id, "--disposition", "false_positive",
        "--note", "consent on file",
    )  # fmt: skip
    assert closed.returncode == 0, closed.stderr
    again = run_ledger(env, "alerts", "ack", alert_id, "--note", "too late")
    assert again.returncode == 1
    assert "cannot become acknowledged" in again.stderr + again.stdout
    after = run_ledger(env, "alerts", "list", "--state", "closed", "--reason", "ticket-15")
    assert after.returncode == 0, after.stderr
    assert "false_positive" in after.stdout


def test_the_evaluator_loop_raises_alerts_as_the_ledger_grows_and_stops_on_sigterm(
    scratch: Scratch,
) -> None:
    with own_ledger(scratch.stack, f"{scratch.stack.database}_loop") as own:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("ledger")), "rules", "run", "--interval", "0.2"],
            env=own.env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            fill(own, scratch.planted, scratch.tag)  # appended while the loop runs
            keys: set[tuple[str, int, str, int]] = set()
            for _ in range(300):  # a bound on waiting, not a timing assertion
                keys = asyncio.run(alert_keys(own.appender_url))
                if len(keys) >= 3 or proc.poll() is not None:
                    break
                time.sleep(0.2)
            assert keys == scratch.expected_keys()
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "alert(s) raised" in out + err


def test_an_undecodable_leaf_is_counted_and_passed_over_not_fatal(scratch: Scratch) -> None:
    with own_ledger(scratch.stack, f"{scratch.stack.database}_junk") as own:
        leaf = encode_leaf(
            KafkaRecord(
                topic="junk", partition=0, offset=0, timestamp_ms=0, timestamp_type=0,
                key=None, value=b"\xc3\x01" + b"\x00" * 8 + b"not avro",
            )
        )  # fmt: skip

        async def plant_junk_then_evaluate() -> tuple[int, int]:
            conn = await asyncpg.connect(own.appender_url)
            try:
                await conn.execute(
                    "INSERT INTO logs (origin, topic, kafka_partition) VALUES ($1, 'junk', 0)",
                    f"junk.{scratch.tag}",
                )
                log_id = await conn.fetchval("SELECT log_id FROM logs WHERE topic = 'junk'")
                await conn.execute(
                    "INSERT INTO leaves (log_id, leaf_index, leaf, leaf_hash)"
                    " VALUES ($1, 0, $2, $3)",
                    log_id, leaf, hashlib.sha256(b"\x00" + leaf).digest(),
                )  # fmt: skip
            finally:
                await conn.close()
            async with PostgresRulesStore(dsn=own.appender_url) as store:
                summary = await Evaluator(store, build_rules(RulesConfig())).run_pass()
                return summary.undecodable, await store.cursor(log_id)

        assert asyncio.run(plant_junk_then_evaluate()) == (1, 1)
        assert asyncio.run(alert_keys(own.appender_url)) == set()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read rules configuration"), ("[access_bulk]\nmax_patient = 3\n", "unknown")],
)
def test_a_missing_or_bad_rules_file_stops_the_evaluator_before_it_reads_anything(
    scratch: Scratch, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "rules.toml"
    if content is not None:
        path.write_text(content)
    ran = run_ledger(scratch.stack.env(), "rules", "run", "--once", "--config", str(path))
    assert ran.returncode == 1
    assert message in ran.stderr + ran.stdout


def test_two_triagers_racing_from_the_same_state_one_wins_the_other_is_refused(
    scratch: Scratch,
) -> None:
    asyncio.run(evaluate(scratch.stack.appender_url))

    async def race() -> list[object]:
        async with (
            PostgresRulesStore(dsn=scratch.stack.appender_url) as one,
            PostgresRulesStore(dsn=scratch.stack.appender_url) as two,
        ):
            (alert,) = await one.alerts(AlertFilter(rule_id="access.bulk"))
            results = await asyncio.gather(
                *(
                    store.transition(
                        alert.alert_id,
                        transition(state=AlertState.ACKNOWLEDGED, note=f"mine, {who}", by=who),
                    )
                    for store, who in ((one, "alice"), (two, "bob"))
                ),
                return_exceptions=True,
            )
            detail = await one.alert(alert.alert_id)
            assert detail is not None
            assert [t.state for t in detail.transitions] == [
                AlertState.OPEN,
                AlertState.ACKNOWLEDGED,
            ]
            return list(results)

    results = asyncio.run(race())
    refused = [r for r in results if isinstance(r, ConflictError)]
    assert len(refused) == 1, results


def test_the_api_reader_cannot_write_alerts(scratch: Scratch) -> None:
    async def attempt() -> None:
        conn = await asyncpg.connect(scratch.stack.reader_url)
        try:
            await conn.execute(
                "INSERT INTO rule_cursors (log_id, next_leaf, alerts_raised)"
                " SELECT log_id, 999999, 0 FROM logs LIMIT 1"
            )
        finally:
            await conn.close()

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(attempt())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("list", "--state", "pending", "--reason", "ticket-15"), "unknown state"),
        (("show", "987654321", "--reason", "ticket-15"), "no alert 987654321"),
        (("ack", "987654321", "--note", "x"), "no alert 987654321"),
        (("ack", "1", "--note", "   "), "note"),
        (("list",), "--reason"),
    ],
)
def test_the_cli_refuses_bad_triage_requests_naming_why(
    scratch: Scratch, args: tuple[str, ...], message: str
) -> None:
    ran = run_ledger(scratch.stack.env(), "alerts", *args)
    assert ran.returncode != 0
    assert message in ran.stderr + ran.stdout
