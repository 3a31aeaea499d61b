"""Issue 16, item 4, against the real stack: the `ledger` commands a privacy officer, a
patient and a relay coordinator use, through the session pipeline's API (real Kafka,
consumer, PostgreSQL and `ledger serve`): every page of a history, the self-audit filter,
the warning for a scope that matched nothing, the investigation's sentence in its table,
CSV and printable page, the patient's accounting letter, the relay month and the
ingestion status. Each assertion compares the CLI's output with what was emitted or with
what the API answers.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import re
import secrets
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from integrations.simulator import Simulator
from ledger.audit import wording
from producers.events import (
    Actor,
    CriticalResultRelay,
    EventAction,
    Facility,
    Patient,
    PhiAccessEvent,
    Recipient,
)
from tests.e2e.conftest import E2E_SEED, LEDGER, Pipeline, wait_for_events
from tests.support import ROOT

pytestmark = pytest.mark.e2e


@dataclasses.dataclass
class Seeded:
    run: str
    user: str
    patient: Patient
    facility: str
    accesses: list[PhiAccessEvent]
    relays: list[CriticalResultRelay]


@pytest.fixture(scope="module")
async def seeded(pipeline: Pipeline) -> Seeded:
    run = secrets.token_hex(3)
    user, facility = f"rad-cli-{run}", f"e2e-cli-{run}"
    patient = Patient(id=f"MRN-CLI-{run}", issuer="e2e", state="MA")
    sim = Simulator(seed=E2E_SEED + 1600, patients=10)
    stream = list(sim.events(60, relay_every=4))
    accesses = [
        dataclasses.replace(
            e,
            event_id=uuid.uuid4(),
            actor=Actor(user_id=user, role="radiologist", name="Casey Cli"),
            facility=Facility(id=facility, name="CLI test site"),
        )
        for e in stream
        if isinstance(e, PhiAccessEvent)
    ][:25]
    # Two disclosures of the patient's images to counsel: one group, "2 times".
    base = accesses[0]
    exports = [
        dataclasses.replace(
            base,
            event_id=uuid.uuid4(),
            patient=patient,
            dicom_event_id="110106",
            action=EventAction.READ,
            purpose_of_use="LEGAL",
            recipient=Recipient(name="Harbor Law", address="1 Main St", organization=None),
            event_time=base.event_time + timedelta(days=day),
        )
        for day in (0, 3)
    ]
    relays = [
        dataclasses.replace(e, event_id=uuid.uuid4(), facility=Facility(id=facility, name="x"))
        for e in stream
        if isinstance(e, CriticalResultRelay)
    ]
    async with pipeline.emitter(f"e2e-cli-{run}") as emitter:
        for event in [*accesses, *exports, *relays]:
            await emitter.emit(event)
        await emitter.flush()
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        ids = [str(e.event_id) for e in [*accesses, *exports, *relays]]
        await wait_for_events(http, pipeline, ids)
    return Seeded(
        run=run,
        user=user,
        patient=patient,
        facility=facility,
        accesses=[*accesses, *exports],
        relays=relays,
    )


async def _ledger(pipeline: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.to_thread(
        subprocess.run,
        [LEDGER, *args],
        env={**pipeline.env, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def _window(events: list[PhiAccessEvent]) -> tuple[str, str]:
    times = [e.event_time for e in events]
    return min(times).isoformat(), (max(times) + timedelta(seconds=1)).isoformat()


async def test_every_page_of_a_users_history_as_csv_and_table(
    pipeline: Pipeline, seeded: Seeded
) -> None:
    mine = {str(e.event_id) for e in seeded.accesses}
    proc = await _ledger(pipeline, "history", "--user", seeded.user, "--page-size", "4", "--csv")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == len(mine)  # 27 entries over 7 pages of 4: none lost, none repeated
    assert {r["event_id"] for r in rows} == mine
    assert {r["purpose"] for r in rows if r["purpose_code"] == "TREAT"} == {"treatment"}
    assert {(r["action_code"], r["action"]) for r in rows} <= {
        ("R", "viewed"), ("C", "created"), ("E", "ran"), ("U", "changed"), ("D", "deleted"),
    }  # fmt: skip
    assert proc.stderr == ""
    table = await _ledger(pipeline, "history", "--user", seeded.user, "--page-size", "10")
    said = " ".join(table.stdout.split())
    assert f"History of user {seeded.user}: {len(mine)} entries" in said
    assert "3 pages read" in said
    # --limit stops early, --since/--until narrow on the API's side.
    limited = await _ledger(pipeline, "history", "--user", seeded.user, "--limit", "5", "--csv")
    assert len(list(csv.DictReader(io.StringIO(limited.stdout)))) == 5
    since, until = _window(seeded.accesses[:3])
    window = await _ledger(
        pipeline, "history", "--user", seeded.user, "--since", since, "--until", until, "--csv"
    )
    expected = {
        str(e.event_id) for e in seeded.accesses if since <= e.event_time.isoformat() < until
    }
    assert {r["event_id"] for r in csv.DictReader(io.StringIO(window.stdout))} == expected


async def test_a_history_that_matches_nothing_warns(pipeline: Pipeline, seeded: Seeded) -> None:
    nobody = f"rad003.brenan-{seeded.run}"
    proc = await _ledger(pipeline, "history", "--user", nobody)
    assert proc.stdout == ""
    assert f"warning: no events for user {nobody}" in " ".join(proc.stderr.split())
    study = await _ledger(pipeline, "history", "--study", "1.2.999999.1")
    assert "no events for study 1.2.999999.1" in study.stderr
    accession = await _ledger(pipeline, "history", "--accession", f"ACC-NONE-{seeded.run}")
    assert f"no events for accession ACC-NONE-{seeded.run}" in accession.stderr


async def test_an_accession_number_alone_finds_its_events(
    pipeline: Pipeline, seeded: Seeded
) -> None:
    named = [e for e in seeded.accesses if e.study is not None and e.study.accession]
    assert named, "the simulator gave no access an accession number"
    accession = named[0].study.accession if named[0].study else None
    assert accession is not None
    proc = await _ledger(pipeline, "history", "--accession", accession, "--csv")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    mine = {
        str(e.event_id) for e in named if e.study is not None and e.study.accession == accession
    }
    assert {r["event_id"] for r in rows if r["user_id"] == seeded.user} == mine
    assert {r["accession"] for r in rows} == {accession}


async def test_self_audit_rows_are_shown_and_can_be_hidden(
    pipeline: Pipeline, seeded: Seeded
) -> None:
    patient = seeded.patient
    # A read of the patient's history is itself in the patient's history.
    first = await _ledger(pipeline, "history", patient.id, "--issuer", "e2e", "--csv")
    reads = [r for r in csv.DictReader(io.StringIO(first.stdout)) if r["kind"] != "access"]
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        url = f"{pipeline.api_url}/v1/patients/{patient.id}/accesses"
        async with http.get(url, params={"issuer": "e2e"}) as resp:
            read = resp.headers["Ledger-Audit-Event"]
        await wait_for_events(http, pipeline, [read])
    shown = await _ledger(pipeline, "history", patient.id, "--issuer", "e2e", "--csv")
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    self_audit = [r for r in rows if r["kind"] == "ledger read (self-audit)"]
    assert read in {r["event_id"] for r in self_audit}
    assert len(self_audit) > len(reads)
    hidden = await _ledger(
        pipeline, "history", patient.id, "--issuer", "e2e", "--csv", "--hide-self-audit"
    )
    kept = list(csv.DictReader(io.StringIO(hidden.stdout)))
    assert {r["event_id"] for r in kept} == {
        str(e.event_id) for e in seeded.accesses if e.patient == patient
    }
    table = await _ledger(pipeline, "history", patient.id, "--issuer", "e2e", "--hide-self-audit")
    assert re.search(r"\d+ ledger self-audit rows? hidden", " ".join(table.stdout.split()))


async def test_investigate_opens_with_the_sentence_and_exports_it(
    pipeline: Pipeline, seeded: Seeded, tmp_path: Path
) -> None:
    since, until = _window(seeded.accesses)
    args = ["investigate", "--user", seeded.user, "--since", since, "--until", until]
    report = json.loads((await _ledger(pipeline, *args, "--json")).stdout)
    sentence = report["summary"]
    n = report["notification"]["individuals"]
    assert n > 1
    assert sentence.startswith(f"{n} people in {wording.count(len(report['states']), 'state')}")
    assert "500" in sentence
    table = await _ledger(pipeline, *args)
    assert table.stdout.splitlines()[0] == sentence
    assert f"Events in scope: {len(report['timeline'])}" in table.stdout
    out = tmp_path / "breach.csv"
    written = await _ledger(pipeline, *args, "--format", "csv", "--out", str(out))
    assert sentence in written.stderr
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert ["#verdict", sentence] == rows[[r[0] for r in rows].index("#verdict")][:2]
    states = {r[1]: int(r[2]) for r in rows if r[0] == "#state"}
    assert states == {s["state"]: s["residents"] for s in report["states"]}
    page = tmp_path / "breach.html"
    await _ledger(pipeline, *args, "--format", "html", "--out", str(page))
    text = page.read_text()
    assert text.index(sentence) < text.index("Affected residents by state")
    assert "Content digest: sha256:" in text


async def test_an_investigation_that_matches_nothing_warns(
    pipeline: Pipeline, seeded: Seeded
) -> None:
    since, until = _window(seeded.accesses)
    nobody = f"rad003.brenan-{seeded.run}"
    args = ["investigate", "--user", nobody, "--user", seeded.user]
    proc = await _ledger(pipeline, *args, "--since", since, "--until", until)
    assert f"warning: no events for user {nobody}" in " ".join(proc.stderr.split())
    alone = await _ledger(
        pipeline, "investigate", "--user", nobody, "--since", since, "--until", until
    )
    assert alone.stdout.startswith("No events matched this scope")
    assert "0 individuals" not in alone.stdout
    assert "HHS" not in alone.stdout


async def test_the_patients_accounting_is_a_letter(
    pipeline: Pipeline, seeded: Seeded, tmp_path: Path
) -> None:
    page = tmp_path / "accounting.html"
    proc = await _ledger(
        pipeline,
        "disclosures",
        seeded.patient.id,
        "--issuer",
        "e2e",
        "--facility-name",
        "CLI Test Hospital",
        "--contact",
        "Privacy Office, 555-0100",
        "--html",
        str(page),
    )
    text = proc.stdout
    assert text.index("CLI Test Hospital") < text.index(f"Patient: {seeded.patient.id}")
    assert "Questions: Privacy Office, 555-0100" in text
    body, appendix = text.split("Appendix: technical references")
    first = seeded.accesses[-2].event_time  # the two exports, three days apart
    assert f"1. 2 times, from {first.day} " in body
    assert "To: Harbor Law, 1 Main St" in body
    for e in seeded.accesses[-2:]:
        assert str(e.event_id) not in body
        assert str(e.event_id) in appendix
    html = page.read_text()
    assert "Appendix: audit record references" in html
    nobody = await _ledger(pipeline, "disclosures", f"NOBODY-{seeded.run}")
    assert "no disclosures recorded" in nobody.stderr


async def test_the_relay_month_matches_the_api(pipeline: Pipeline, seeded: Seeded) -> None:
    month = seeded.relays[0].identified_at.strftime("%Y-%m")
    in_month = [r for r in seeded.relays if r.identified_at.strftime("%Y-%m") == month]
    proc = await _ledger(pipeline, "relays", "--month", month, "--facility", seeded.facility)
    headline = proc.stdout.splitlines()[0]
    assert headline.startswith(f"{len(in_month)} relay")
    assert "met the deadline" in headline
    assert "Category 1 (minutes: direct verbal contact)" in proc.stdout
    assert "30 minutes" in proc.stdout
    empty = await _ledger(pipeline, "relays", "--month", "1999-01", "--facility", seeded.facility)
    assert "no relays identified in January 1999" in empty.stderr


async def test_status_shows_the_lag_per_partition(pipeline: Pipeline, seeded: Seeded) -> None:
    proc = await _ledger(pipeline, "status")
    lines = [line for line in proc.stdout.splitlines() if pipeline.access_topic in line]
    assert lines, proc.stdout
    for line in lines:
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        end, ingested = int(cells[2]), int(cells[3])
        assert end >= ingested
        assert int(cells[4]) == end - ingested
        assert cells[-1].endswith("ago") or cells[-1] == "never"
    assert proc.stdout.rstrip().splitlines()[-1] in {"ingestion is up to date"} or (
        "not ingested yet" in proc.stdout
    )
    # Kafka away: the lag is unknown, said so, never shown as 0.
    away = await _ledger(pipeline, "status", KAFKA_BOOTSTRAP="127.0.0.1:9")
    assert "Kafka could not be read" in away.stderr
    rows = [line for line in away.stdout.splitlines() if pipeline.access_topic in line]
    assert rows
    assert all(line.count("unknown") == 2 for line in rows)
    assert away.stdout.rstrip().endswith(
        "Kafka's end offsets could not be read: the lag is unknown"
    )
