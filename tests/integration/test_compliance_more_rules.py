"""The session-4 rules end to end on real scratch databases: events appended through the
real appender, `ledger rules run --once --config FILE` reading the watch list named
(relative to the configuration file), each planted violation raising one alert with its
evidence, its clean twin none, and the same alert keys from another database in
another batch size."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from ledger.audit.rules import Evaluator, build_rules
from ledger.pg.compliance import PostgresRulesStore
from ledgerctl.rules import load_rules_config
from producers.events import (
    AcrCategory,
    Actor,
    CriticalResultRelay,
    Patient,
    RelayMethod,
    RelayRecipient,
)
from tests.conftest import own_ledger
from tests.integration.test_compliance_alerts import (
    FACILITY,
    STUDY,
    T0,
    Event,
    alert_keys,
    append,
    phi,
)
from tests.support import Stack, run_ledger

pytestmark = pytest.mark.integration

WATCH_LIST = """list,patient_id,issuer,user_id,note
workforce,MRN-ANNA,stmarys-boston,anna,Anna's own chart
vip,MRN-VIP,,,
"""


def crr(
    patient: str,
    *,
    communicated: timedelta | None,
    read_back: bool = True,
    recorded: timedelta,
) -> CriticalResultRelay:
    return CriticalResultRelay(
        facility=FACILITY,
        category=AcrCategory.CAT1,
        patient=Patient(id=patient, issuer="stmarys-boston", state="MA"),
        study=STUDY,
        identified_at=T0,
        communicated_at=None if communicated is None else T0 + communicated,
        sender=Actor(user_id="rad-relay", role="radiologist"),
        recipient=RelayRecipient(name="Dr. Okafor", role="ed-attending"),
        method=RelayMethod.PHONE,
        read_back=read_back,
        finding="tension pneumothorax",
        event_time=T0 + recorded,
    )


def streams() -> tuple[list[Event], list[Event]]:
    access: list[Event] = [
        phi("anna", "MRN-ANNA", T0),  # 0: her own record
        phi("anna", "MRN-ANNA", T0 + timedelta(minutes=5)),  # the same day: no second
        phi("anna", "MRN-7", T0 + timedelta(minutes=6)),  # clean twin
        phi("carol", "MRN-VIP", T0 + timedelta(minutes=7)),  # 3: a VIP
        phi("carol", "MRN-8", T0 + timedelta(minutes=8)),  # clean twin
    ]
    relays: list[Event] = [
        crr("MRN-R1", communicated=None, recorded=timedelta(minutes=2)),  # 0: overdue
        crr(
            "MRN-R2",
            communicated=timedelta(minutes=5),
            read_back=False,
            recorded=timedelta(minutes=6),
        ),  # 1: no read-back
        crr("MRN-R3", communicated=None, recorded=timedelta(minutes=3)),  # communicated below
        crr("MRN-R3", communicated=timedelta(minutes=20), recorded=timedelta(minutes=21)),
        crr("MRN-R4", communicated=timedelta(minutes=5), recorded=timedelta(minutes=45)),  # 4
    ]
    return access, relays


EXPECTED = {
    ("privacy.own_record", "phi", 0),
    ("privacy.vip_record", "phi", 3),
    ("relay.overdue", "relay", 0),
    ("relay.no_readback", "relay", 1),
}


def fill(stack: Stack, tag: str) -> None:
    access, relays = streams()
    asyncio.run(append(stack.appender_url, f"more-{tag}-phi", access))
    asyncio.run(append(stack.appender_url, f"more-{tag}-relay", relays))


def expected(tag: str) -> set[tuple[str, int, str, int]]:
    return {(rule, 1, f"more-{tag}-{s}", i) for rule, s, i in EXPECTED}


@pytest.fixture(scope="module")
def ledger_with_events(stack: Stack) -> Iterator[tuple[Stack, str]]:
    tag = uuid.uuid4().hex[:8]
    with own_ledger(stack, f"{stack.database}_more{tag[:6]}") as own:
        fill(own, tag)
        yield own, tag


def write_config(directory: Path) -> Path:
    (directory / "lists").mkdir(exist_ok=True)
    (directory / "lists" / "watch.csv").write_text(WATCH_LIST, encoding="utf-8")
    config = directory / "rules.toml"
    config.write_text(
        'timezone = "America/New_York"\n[privacy_lists]\nfile = "lists/watch.csv"\n',
        encoding="utf-8",
    )
    return config


def test_the_rules_command_raises_each_planted_violation_once_with_its_evidence(
    ledger_with_events: tuple[Stack, str], tmp_path: Path
) -> None:
    own, tag = ledger_with_events
    env = own.env(LEDGER_RULES_FILE=str(write_config(tmp_path)))
    ran = run_ledger(env, "rules", "run", "--once")
    assert ran.returncode == 0, ran.stderr
    assert "4 alert(s) raised" in ran.stdout + ran.stderr
    assert asyncio.run(alert_keys(own.appender_url)) == expected(tag)
    again = run_ledger(env, "rules", "run", "--once")
    assert "0 alert(s) raised" in again.stdout + again.stderr

    async def stored() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(own.reader_url)
        try:
            return await conn.fetch(
                "SELECT a.rule_id, a.patient_id, a.thresholds::text AS thresholds,"
                " array_agg(e.role || ':' || e.leaf_index ORDER BY e.leaf_index) AS evidence"
                " FROM alerts a JOIN alert_evidence e USING (alert_id) GROUP BY 1, 2, 3"
            )
        finally:
            await conn.close()

    rows = {r["rule_id"]: r for r in asyncio.run(stored())}
    assert rows["relay.overdue"]["patient_id"] == "MRN-R1"
    # the deadline (T0 + 30 min) was seen to pass at the record made at T0 + 45 min
    assert rows["relay.overdue"]["evidence"] == ["trigger:0"]
    assert rows["relay.no_readback"]["evidence"] == ["trigger:1"]
    assert rows["privacy.vip_record"]["patient_id"] == "MRN-VIP"
    assert "America/New_York" in rows["privacy.own_record"]["thresholds"]
    assert str(tmp_path / "lists" / "watch.csv") in rows["privacy.own_record"]["thresholds"]


def test_a_hostile_watch_list_stops_the_rules_command_naming_the_line(
    ledger_with_events: tuple[Stack, str], tmp_path: Path
) -> None:
    own, _ = ledger_with_events
    config = write_config(tmp_path)
    (tmp_path / "lists" / "watch.csv").write_text(WATCH_LIST + "vip,=HYPERLINK(1),,,\n")
    ran = run_ledger(own.env(LEDGER_RULES_FILE=str(config)), "rules", "run", "--once")
    assert ran.returncode == 1
    assert "line 4: patient_id" in ran.stdout + ran.stderr


def test_the_same_ledger_in_another_database_and_batch_size_gives_the_same_keys(
    ledger_with_events: tuple[Stack, str], tmp_path: Path
) -> None:
    own, tag = ledger_with_events
    config = load_rules_config(str(write_config(tmp_path)))

    async def evaluate(dsn: str) -> int:
        async with PostgresRulesStore(dsn=dsn) as store:
            return (await Evaluator(store, build_rules(config), batch=1).run_pass()).raised

    with own_ledger(own, f"{own.database}_again") as again:
        fill(again, tag)
        assert asyncio.run(evaluate(again.appender_url)) == 4
        assert asyncio.run(alert_keys(again.appender_url)) == expected(tag)
