"""The HIPAA reports against the real database: events appended through the real appender,
checkpoints signed by the real checkpointer, reports read back as ledger_reader."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from consumers.classify import classify
from ledger.audit.ingest import Accepted, WriterSchemaInfo
from ledger.audit.reports import (
    InvestigationScope,
    PatientRef,
    RelayIssue,
    to_csv,
    to_html,
    to_json,
)
from ledger.errors import MalformedInputError, VerificationError
from ledger.log import merkle
from ledger.log.checkpoint import open_checkpoint
from ledger.log.keys import load_signers
from ledger.log.leaf import KafkaRecord
from ledger.log.note import parse_verifier_key
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.migrate import apply_migrations
from ledger.pg.reader import PostgresReader
from ledger.pg.reports import (
    PostgresReports,
)
from producers.codec import Codec
from producers.events import (
    AcrCategory,
    Actor,
    AttemptOutcome,
    CriticalResultRelay,
    EventAction,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    Recipient,
    RelayAttempt,
    RelayMethod,
    RelayRecipient,
    SecurityEvent,
    Study,
    event_key,
)
from tests.conftest import drop_database
from tests.support import APPENDED_MS, Stack, superuser_url, with_database

pytestmark = pytest.mark.integration

CODEC = Codec()
Event = PhiAccessEvent | CriticalResultRelay | SecurityEvent
STMARYS = Facility(id="stmarys-boston", name="St. Mary's")
STUDY = Study(uid="2.25.4242", accession="A1001", modality="CT", instances=120)
LAWYER = Recipient(
    name="<b>Harbor</b> =SUM(A1) Law Group",
    address="100 Federal St, Boston, MA 02110",
    organization="Harbor Law Group",
)
DPH = Recipient(name="State Department of Public Health", address="250 Washington St")


@dataclass
class Ledger:
    """What the fixture appended, and what the reports must find."""

    tag: str
    now: datetime
    suspect: str
    bulk_facility: str
    relay_facility: str
    disclosure_patient: str
    events: dict[str, Event] = field(default_factory=dict)
    uncovered: uuid.UUID | None = None


class Writer:
    """Appends events as the consumer would: encoded, classified, keyed by patient (or by
    user for an event that names no patient)."""

    def __init__(self, appender: PostgresAppender, checkpointer: Checkpointer) -> None:
        self._appender = appender
        self._checkpointer = checkpointer
        self._offsets: dict[tuple[str, int], int] = {}
        self._seq = 0
        self.logs: set[int] = set()

    async def append(self, topic: str, partition: int, events: Sequence[Event]) -> int:
        items = []
        for event in events:
            self._seq += 1
            offset = self._offsets.get((topic, partition), 0)
            self._offsets[(topic, partition)] = offset + 1
            record = KafkaRecord(
                topic=topic, partition=partition, offset=offset,
                timestamp_ms=APPENDED_MS, timestamp_type=0,
                key=event_key(event).encode(),
                value=CODEC.encode(event.stamped(producer_id="reports-it", producer_seq=self._seq)),
            )  # fmt: skip
            item = classify(record, CODEC)
            assert isinstance(item, Accepted), item
            items.append(item)
        result = await self._appender.append(topic=topic, partition=partition, items=items)
        assert result.appended == len(events)
        self.logs.add(result.log_id)
        return result.log_id

    async def sign_all(self) -> None:
        """Every log written is signed at its full size. Another signer may have got there
        first (the e2e suite's consumer sweeps every log of the session's database), in
        which case ``checkpoint`` has nothing new to sign and returns None."""
        for log_id in sorted(self.logs):
            await self._checkpointer.checkpoint(log_id, force=True)
            sizes = await self._appender.pool.fetchrow(
                "SELECT (SELECT count(*) FROM leaves WHERE log_id = $1) AS size,"
                " (SELECT max(size) FROM checkpoints WHERE log_id = $1) AS signed",
                log_id,
            )
            assert sizes["signed"] == sizes["size"] > 0, (log_id, dict(sizes))


def actor(user_id: str, role: str = "radiologist") -> Actor:
    return Actor(user_id=user_id, role=role, name="Test User", organization="Nocturne Telerad")


def phi(
    *,
    user: str,
    patient: Patient,
    when: datetime,
    code: str = "110103",
    facility: Facility = STMARYS,
    outcome: EventOutcome = EventOutcome.SUCCESS,
    address: str | None = "10.77.0.1",
    purpose: str | None = "TREAT",
    recipient: Recipient | None = None,
    study: Study | None = STUDY,
    details: dict[str, str] | None = None,
) -> PhiAccessEvent:
    return PhiAccessEvent(
        facility=facility,
        actor=actor(user),
        dicom_event_id=code,
        action=EventAction.READ,
        outcome=outcome,
        patient=patient,
        study=study,
        network_address=address,
        purpose_of_use=purpose,
        recipient=recipient,
        details=details or {},
        event_time=when,
    )


def relay(
    *,
    facility: Facility,
    patient: Patient,
    category: AcrCategory,
    identified: datetime,
    communicated: timedelta | None,
    recorded: datetime,
    read_back: bool = True,
    sender: str = "rad-relay",
    attempts: tuple[RelayAttempt, ...] = (),
) -> CriticalResultRelay:
    comm = None if communicated is None else identified + communicated
    return CriticalResultRelay(
        facility=facility,
        category=category,
        patient=patient,
        study=STUDY,
        identified_at=identified,
        communicated_at=comm,
        acknowledged_at=None if comm is None else comm + timedelta(minutes=1),
        sender=actor(sender),
        recipient=RelayRecipient(name="Dr. Okafor", role="ed-attending"),
        method=RelayMethod.PHONE,
        read_back=read_back,
        attempts=attempts,
        finding="tension pneumothorax",
        event_time=recorded,
    )


@pytest.fixture(scope="module")
async def ledger(stack: Stack) -> Ledger:
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    data = Ledger(
        tag=tag,
        now=now,
        suspect=f"rad-{tag}",
        bulk_facility=f"fac-{tag}",
        relay_facility=f"relayfac-{tag}",
        disclosure_patient=f"MRN-D-{tag}",
    )
    phi_topic, relay_topic, bulk_topic = (f"rep-{tag}-{n}" for n in ("phi", "relay", "bulk"))
    signer = load_signers(stack.signer_key_file)
    async with PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local") as app:
        await app.register_schemas(
            [
                WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                                 canonical_form=s.canonical_form, schema_json=s.schema_json)
                for s in CODEC.schemas
            ]
        )  # fmt: skip
        writer = Writer(
            app,
            Checkpointer(
                pool=app.pool, signers=signer, policy=CheckpointPolicy(every_leaves=1, every_ms=0)
            ),
        )
        t = now - timedelta(hours=10)

        # --- a suspect radiologist's night: five patients read, one exported, one refused
        def pt(i: int, state: str | None) -> Patient:
            return Patient(id=f"MRN-{tag}-{i}", issuer="stmarys-boston", state=state)

        states = ["MA", "MA", "NH", None, "RI", "MA", "MA"]
        patients = [pt(i, s) for i, s in enumerate(states)]
        named: dict[str, Event] = {}
        for i in range(5):
            named[f"read{i}"] = phi(
                user=data.suspect, patient=patients[i], when=t + timedelta(minutes=i),
                address=f"10.77.{i % 2}.1",
            )  # fmt: skip
        named["export5"] = phi(
            user=data.suspect, patient=patients[5], when=t + timedelta(minutes=10),
            code="110106", purpose="LEGAL", recipient=LAWYER, address="10.77.0.1",
        )  # fmt: skip
        named["refused6"] = phi(
            user=data.suspect, patient=patients[6], when=t + timedelta(minutes=11),
            outcome=EventOutcome.MAJOR_FAILURE, address="10.77.1.1",
        )  # fmt: skip
        named["colleague"] = phi(
            user=f"rad-other-{tag}", patient=patients[0], when=t + timedelta(minutes=12),
            address="10.88.0.1",
        )  # fmt: skip
        named["too_early"] = phi(
            user=data.suspect, patient=pt(9, "MA"), when=t - timedelta(days=3),
        )  # fmt: skip
        named["suspect_relay"] = relay(
            facility=STMARYS, patient=patients[1], category=AcrCategory.CAT2,
            identified=t + timedelta(minutes=2), communicated=timedelta(minutes=20),
            recorded=t + timedelta(minutes=30), sender=data.suspect,
        )  # fmt: skip
        by_partition: dict[int, list[Event]] = {0: [], 1: []}
        for ev in named.values():
            if isinstance(ev, PhiAccessEvent):
                by_partition[int(ev.patient.id[-1]) % 2].append(ev)
        for partition, evs in by_partition.items():
            await writer.append(phi_topic, partition, sorted(evs, key=lambda e: e.event_time))
        await writer.append(relay_topic, 0, [named["suspect_relay"]])

        # --- a facility-wide breach: 501 residents of MA and 500 of NH
        bulk_facility = Facility(id=data.bulk_facility)
        bulk = [
            phi(
                user=f"bulk-{tag}",
                facility=bulk_facility,
                when=t + timedelta(seconds=i),
                patient=Patient(
                    id=f"B{tag}-{i}", issuer=data.bulk_facility, state="MA" if i < 501 else "NH"
                ),
                address=None,
            )
            for i in range(1001)
        ]
        await writer.append(bulk_topic, 0, bulk)

        # --- disclosures of one patient
        dp = Patient(id=data.disclosure_patient, issuer="stmarys-boston", state="MA")
        same_id_elsewhere = Patient(id=data.disclosure_patient, issuer="mercy-tulsa", state="OK")
        disc = {
            "legal": phi(user="admin01", patient=dp, when=now - timedelta(days=40),
                         code="110106", purpose="LEGAL", recipient=LAWYER),
            "treat": phi(user="admin01", patient=dp, when=now - timedelta(days=39),
                         code="110106", purpose="TREAT", recipient=DPH),
            "patrqt": phi(user="admin01", patient=dp, when=now - timedelta(days=38),
                          code="110106", purpose="PATRQT", recipient=DPH),
            "read": phi(user="rad01", patient=dp, when=now - timedelta(days=37)),
            "pubhlth": phi(user="rad01", patient=dp, when=now - timedelta(days=36),
                           purpose="PUBHLTH", recipient=DPH),
            "authorized": phi(user="admin01", patient=dp, when=now - timedelta(days=35),
                              code="110106", purpose="HRESCH", recipient=DPH,
                              details={"disclosure_basis": "authorization"}),
            "nopurpose": phi(user="admin01", patient=dp, when=now - timedelta(days=34),
                             code="110106", purpose=None, recipient=DPH),
            "old": phi(user="admin01", patient=dp, when=now - timedelta(days=7 * 366),
                       code="110106", purpose="LEGAL", recipient=LAWYER),
            "elsewhere": phi(user="admin02", patient=same_id_elsewhere,
                             when=now - timedelta(days=33), code="110106", purpose="LEGAL",
                             recipient=LAWYER, facility=Facility(id="mercy-tulsa")),
        }  # fmt: skip
        named.update({f"disc_{k}": v for k, v in disc.items()})
        await writer.append(phi_topic, 0, sorted(disc.values(), key=lambda e: e.event_time))

        # --- critical-result relays at one facility
        rf = Facility(id=data.relay_facility)

        def rp(i: int) -> Patient:
            return Patient(id=f"R{tag}-{i}", issuer=data.relay_facility)

        first_record = relay(
            facility=rf, patient=rp(5), category=AcrCategory.CAT1,
            identified=now - timedelta(hours=3), communicated=None,
            recorded=now - timedelta(hours=3) + timedelta(minutes=5),
        )  # fmt: skip
        relays = {
            "on_time": relay(facility=rf, patient=rp(0), category=AcrCategory.CAT1,
                             identified=now - timedelta(hours=5),
                             communicated=timedelta(minutes=10),
                             recorded=now - timedelta(hours=4)),
            "late": relay(facility=rf, patient=rp(1), category=AcrCategory.CAT1,
                          identified=now - timedelta(hours=5),
                          communicated=timedelta(minutes=45),
                          recorded=now - timedelta(hours=4),
                          attempts=(RelayAttempt(at=now - timedelta(hours=5) + timedelta(
                              minutes=5), method=RelayMethod.PHONE,
                              outcome=AttemptOutcome.NO_ANSWER),)),
            "no_read_back": relay(facility=rf, patient=rp(2), category=AcrCategory.CAT1,
                                  identified=now - timedelta(hours=5),
                                  communicated=timedelta(minutes=5),
                                  recorded=now - timedelta(hours=4), read_back=False),
            "overdue": relay(facility=rf, patient=rp(3), category=AcrCategory.CAT2,
                             identified=now - timedelta(hours=7), communicated=None,
                             recorded=now - timedelta(hours=7) + timedelta(minutes=1)),
            "pending": relay(facility=rf, patient=rp(4), category=AcrCategory.CAT3,
                             identified=now - timedelta(hours=1), communicated=None,
                             recorded=now - timedelta(minutes=50)),
            "first_record": first_record,
            "second_record": relay(facility=rf, patient=rp(5), category=AcrCategory.CAT1,
                                   identified=first_record.identified_at,
                                   communicated=timedelta(minutes=50),
                                   recorded=now - timedelta(hours=2)),
            "other_facility": relay(facility=STMARYS, patient=rp(6), category=AcrCategory.CAT1,
                                    identified=now - timedelta(hours=5),
                                    communicated=timedelta(hours=2),
                                    recorded=now - timedelta(hours=2)),
        }  # fmt: skip
        named.update({f"relay_{k}": v for k, v in relays.items()})
        await writer.append(relay_topic, 0, sorted(relays.values(), key=lambda e: e.event_time))

        await writer.sign_all()
        # One more access by the suspect, after the checkpoints: not in a report made as of
        # them (a report reads only below the checkpoints it names).
        late_access = phi(user=data.suspect, patient=patients[0], when=t + timedelta(hours=1))
        await writer.append(phi_topic, 0, [late_access])
        named["after_checkpoint"] = late_access
        data.uncovered = late_access.event_id
    data.events = named
    return data


@pytest.fixture
async def reports(stack: Stack) -> AsyncIterator[PostgresReports]:
    async with PostgresReports(dsn=stack.reader_url) as r:
        yield r


async def positions(
    owner: asyncpg.Connection, ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, int]]:
    rows = await owner.fetch(
        "SELECT e.event_id, g.origin, e.leaf_index FROM events e JOIN logs g USING (log_id) "
        "WHERE e.event_id = ANY($1::uuid[])",
        ids,
    )
    return {r["event_id"]: (r["origin"], r["leaf_index"]) for r in rows}


def window(data: Ledger) -> tuple[datetime, datetime]:
    return data.now - timedelta(days=1), data.now + timedelta(seconds=30)


async def test_investigation_by_user_names_every_event_and_its_proof(
    ledger: Ledger, reports: PostgresReports, owner_conn: asyncpg.Connection, stack: Stack
) -> None:
    start, end = window(ledger)
    report = await reports.investigation(
        InvestigationScope(start=start, end=end, users=(ledger.suspect,))
    )
    ev = ledger.events
    expected = [ev[f"read{i}"] for i in range(5)] + [
        ev["export5"], ev["refused6"], ev["suspect_relay"],
    ]  # fmt: skip
    assert {e.event_id for e in report.timeline} == {e.event_id for e in expected}
    assert [e.event_time for e in report.timeline] == sorted(e.event_time for e in expected)
    # Positions are the ledger's own.
    stored = await positions(owner_conn, [e.event_id for e in expected])
    assert {e.event_id: (e.position.origin, e.position.leaf_index) for e in report.timeline} == (
        stored
    )
    # Affected: patients 0-5 (6 only refused); states from the leaves.
    tag = ledger.tag
    assert [p.patient_id for p in report.patients] == [f"MRN-{tag}-{i}" for i in range(6)]
    assert [p.id for p in report.attempted_only] == [f"MRN-{tag}-6"]
    assert {s.state: s.residents for s in report.states} == {"MA": 3, "NH": 1, "RI": 1}
    assert report.unknown_state == 1
    assert not report.hhs_contemporaneous_notice
    kinds = {p.patient_id: {str(k) for k in p.phi_kinds} for p in report.patients}
    assert kinds[f"MRN-{tag}-5"] == {"demographics", "export", "images"}
    assert kinds[f"MRN-{tag}-1"] == {"demographics", "images", "report"}  # read + relay
    relay_entry = next(e for e in report.timeline if e.event_id == ev["suspect_relay"].event_id)
    assert relay_entry.kind == "critical_result_relay"

    # The named checkpoints verify with the verifier key, and every covered entry is
    # provably in its log under its checkpoint.
    assert report.uncovered_events == 0
    assert ledger.uncovered not in {e.event_id for e in report.timeline}
    assert all(e.covered for e in report.timeline)
    verifier = parse_verifier_key(stack.verifier_key)
    by_log = {c.log_id: c for c in report.checkpoints}
    assert {e.position.log_id for e in report.timeline} == set(by_log)
    async with PostgresReader(dsn=stack.reader_url) as reader:
        for c in report.checkpoints:
            opened = open_checkpoint(c.note, [verifier])
            assert (opened.origin, opened.size) == (c.origin, c.size)
        for e in report.timeline:
            c = by_log[e.position.log_id]
            if not e.covered:
                assert e.position.leaf_index >= c.size
                continue
            opened = open_checkpoint(c.note, [verifier])
            info = await reader.log(e.position.log_id)
            assert info is not None
            proof = await reader.inclusion(
                e.position.log_id, e.position.leaf_index, opened.size, info.size
            )
            ((_, leaf),) = await reader.leaves(
                e.position.log_id, start=e.position.leaf_index, end=e.position.leaf_index + 1
            )
            merkle.verify_inclusion(
                leaf_hash=merkle.leaf_hash(leaf), index=e.position.leaf_index,
                size=opened.size, proof=proof, root=opened.root_hash,
            )  # fmt: skip
    body = to_json(report)
    assert body["uncovered_events"] == 0
    assert "'=SUM" not in to_csv(report)  # the recipient is not in the patients table


async def test_investigation_by_address_and_by_facility_with_thresholds(
    ledger: Ledger, reports: PostgresReports
) -> None:
    start, end = window(ledger)
    by_address = await reports.investigation(
        InvestigationScope(start=start, end=end, network_addresses=("10.77.1.1",))
    )
    ev = ledger.events
    assert {e.event_id for e in by_address.timeline} == {
        ev["read1"].event_id, ev["read3"].event_id, ev["refused6"].event_id,
    }  # fmt: skip
    narrowed = await reports.investigation(
        InvestigationScope(
            start=start, end=end, users=(ledger.suspect,), network_addresses=("10.77.0.1",)
        )
    )
    assert {e.event_id for e in narrowed.timeline} == {
        ev[n].event_id for n in ("read0", "read2", "read4", "export5")
    }

    bulk = await reports.investigation(
        InvestigationScope(start=start, end=end, facility=ledger.bulk_facility)
    )
    assert bulk.individuals == 1001
    assert [(s.state, s.residents, s.media_notice) for s in bulk.states] == [
        ("MA", 501, True),  # more than 500 residents: media notice (164.406)
        ("NH", 500, False),  # exactly 500 is not more than 500
    ]
    assert bulk.hhs_contemporaneous_notice  # 500 or more individuals (164.408(b))
    assert bulk.uncovered_events == 0
    lines = to_csv(bulk).splitlines()
    assert len([line for line in lines if not line.startswith("#")]) == 1002
    assert [line.split(",")[:3] for line in lines if line.startswith("#state,")] == [
        ["#state", "MA", "501"],
        ["#state", "NH", "500"],
    ]


async def test_security_events_are_decoded_into_investigations(
    stack: Stack, reports: PostgresReports, owner_conn: asyncpg.Connection
) -> None:
    """Security events (migration 0007: kind security_event, a patient only when named) are
    on the user's timeline, decoded from their leaves; a successful emergency override
    exposes its patient, a login nobody, and neither is a disclosure."""
    tag = uuid.uuid4().hex[:8]
    user = f"er-{tag}"
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    patient = Patient(id=f"MRN-S-{tag}", issuer="stmarys-boston", state="MA")

    def sec(minutes: int, **kw: object) -> SecurityEvent:
        base: dict[str, object] = {
            "facility": STMARYS,
            "actor": actor(user, "ed-attending"),
            "dicom_event_id": "110114",
            "event_type_code": "110122",
            "network_address": "10.50.1.77",
            "event_time": now - timedelta(minutes=minutes),
        }
        return SecurityEvent(**{**base, **kw})  # type: ignore[arg-type]

    events = [
        sec(40, outcome=EventOutcome.MINOR_FAILURE, details={"outcome_description": "bad pw"}),
        sec(39),
        sec(30, dicom_event_id="110113", event_type_code="110127", patient=patient,
            purpose_of_use="BTG"),
        sec(29, dicom_event_id="110113", event_type_code="110138", patient=patient),
        sec(20, event_type_code="110123"),
    ]  # fmt: skip
    async with PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local") as app:
        await app.register_schemas(
            [
                WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                                 canonical_form=s.canonical_form, schema_json=s.schema_json)
                for s in CODEC.schemas
            ]
        )  # fmt: skip
        writer = Writer(
            app,
            Checkpointer(
                pool=app.pool,
                signers=load_signers(stack.signer_key_file),
                policy=CheckpointPolicy(every_leaves=1, every_ms=0),
            ),
        )
        await writer.append(f"rep-{tag}-sec", 0, events)
        await writer.sign_all()
    rows = await owner_conn.fetch(
        "SELECT kind, patient_id, dicom_event_id, action, outcome, purpose_of_use "
        "FROM events WHERE user_id = $1 ORDER BY event_time",
        user,
    )
    assert [tuple(r) for r in rows] == [
        ("security_event", None, "110114", "E", "MINOR_FAILURE", None),
        ("security_event", None, "110114", "E", "SUCCESS", None),
        ("security_event", patient.id, "110113", "E", "SUCCESS", "BTG"),
        ("security_event", patient.id, "110113", "E", "SUCCESS", None),
        ("security_event", None, "110114", "E", "SUCCESS", None),
    ]
    report = await reports.investigation(
        InvestigationScope(start=now - timedelta(hours=1), end=now, users=(user,))
    )
    assert [(e.kind, e.event_type_code, e.completed) for e in report.timeline] == [
        ("security_event", "110122", False),
        ("security_event", "110122", True),
        ("security_event", "110127", True),
        ("security_event", "110138", True),
        ("security_event", "110123", True),
    ]
    assert [(p.patient_id, p.state, [str(k) for k in p.phi_kinds]) for p in report.patients] == [
        (patient.id, "MA", ["demographics"])
    ]
    assert report.uncovered_events == 0
    accounting = await reports.disclosures(
        PatientRef(id=patient.id, issuer=patient.issuer), now=now + timedelta(seconds=1)
    )
    assert accounting.entries == ()
    assert accounting.excluded == ()


async def test_row_cap_refuses_an_overbroad_scope(ledger: Ledger, stack: Stack) -> None:
    start, end = window(ledger)
    scope = InvestigationScope(start=start, end=end, facility=ledger.bulk_facility)
    async with PostgresReports(dsn=stack.reader_url, max_rows=1000) as capped:
        with pytest.raises(MalformedInputError, match="more than 1000 events"):
            await capped.investigation(scope)
    async with PostgresReports(dsn=stack.reader_url, max_rows=1001) as enough:
        assert (await enough.investigation(scope)).individuals == 1001


async def test_accounting_of_disclosures(ledger: Ledger, reports: PostgresReports) -> None:
    ev = ledger.events
    patient = PatientRef(id=ledger.disclosure_patient, issuer="stmarys-boston")
    acc = await reports.disclosures(patient, now=ledger.now + timedelta(seconds=1))
    assert [e.sources[0].event_id for e in acc.entries] == [
        ev["disc_legal"].event_id, ev["disc_pubhlth"].event_id, ev["disc_nopurpose"].event_id,
    ]  # fmt: skip
    legal, pubhlth, nopurpose = acc.entries
    # Recipient name and address come from the leaf (the index has neither).
    assert (legal.recipient_name, legal.recipient_address) == (LAWYER.name, LAWYER.address)
    assert legal.purpose_code == "LEGAL"
    assert legal.description.startswith("CT imaging study (images; accession A1001")
    assert pubhlth.recipient_name == DPH.name
    assert [legal.needs_review, pubhlth.needs_review, nopurpose.needs_review] == [
        False, False, True,
    ]  # fmt: skip
    excluded = {x.source.event_id: x.reason for x in acc.excluded}
    assert set(excluded) == {
        ev["disc_treat"].event_id, ev["disc_patrqt"].event_id, ev["disc_authorized"].event_id,
    }  # fmt: skip
    assert "(iv)" in excluded[ev["disc_authorized"].event_id]
    page = to_html(acc)
    assert "&lt;b&gt;Harbor&lt;/b&gt;" in page
    assert "<b>" not in page
    assert "DRAFT" in page
    assert "'<b>Harbor</b> =SUM(A1)" not in to_csv(acc)  # does not start with a formula sign
    assert LAWYER.name in to_csv(acc)

    # The same id under another issuer is another person: without an issuer, refused.
    with pytest.raises(MalformedInputError, match="several issuers"):
        await reports.disclosures(PatientRef(id=ledger.disclosure_patient), now=ledger.now)
    # A one-year lookback still has them (all within 40 days); the 7-year-old one never.
    short = await reports.disclosures(patient, now=ledger.now, lookback_years=1)
    assert len(short.entries) == 3


async def test_relay_report(ledger: Ledger, reports: PostgresReports) -> None:
    ev = ledger.events
    start, end = window(ledger)
    report = await reports.relays(
        start=start, end=end, now=ledger.now, facility=ledger.relay_facility
    )
    cats = {c.category: c for c in report.categories}
    assert report.relays == 7 - 1  # two records of one relay count once
    assert (cats["CAT1"].relays, cats["CAT1"].on_time, cats["CAT1"].late) == (4, 2, 2)
    assert (cats["CAT2"].relays, cats["CAT2"].overdue) == (1, 1)
    assert (cats["CAT3"].relays, cats["CAT3"].pending) == (1, 1)
    comm = cats["CAT1"].identified_to_communicated
    assert comm is not None
    assert (comm.count, comm.median, comm.max) == (
        4, timedelta(minutes=10), timedelta(minutes=50),
    )  # fmt: skip
    issues = {x.event_id: x.issues for x in report.exceptions}
    assert issues == {
        ev["relay_late"].event_id: (RelayIssue.LATE,),
        ev["relay_no_read_back"].event_id: (RelayIssue.NO_READ_BACK,),
        ev["relay_overdue"].event_id: (RelayIssue.OVERDUE,),
        ev["relay_second_record"].event_id: (RelayIssue.LATE,),
    }
    second = next(x for x in report.exceptions if x.event_id == ev["relay_second_record"].event_id)
    assert second.superseded == (ev["relay_first_record"].event_id,)
    late = next(x for x in report.exceptions if x.event_id == ev["relay_late"].event_id)
    assert late.attempts == 1  # the failed attempt, decoded from the leaf
    assert late.position.origin.endswith(f"rep-{ledger.tag}-relay/0/2026-09")  # APPENDED_MS
    everywhere = await reports.relays(start=start, end=end, now=ledger.now)
    ids = {x.event_id for x in everywhere.exceptions}
    assert ev["relay_other_facility"].event_id in ids
    assert ev["relay_late"].event_id in ids


async def test_hostile_requests_are_refused_before_querying(reports: PostgresReports) -> None:
    now = datetime.now(UTC)
    with pytest.raises(MalformedInputError):
        await reports.investigation("everything")  # type: ignore[arg-type]
    with pytest.raises(MalformedInputError, match="lookback_years"):
        await reports.disclosures(PatientRef(id="x"), now=now, lookback_years=60)
    with pytest.raises(MalformedInputError, match="at most 3653 days"):
        await reports.relays(start=now - timedelta(days=4000), end=now, now=now)
    with pytest.raises(MalformedInputError, match="facility"):
        await reports.relays(start=now - timedelta(1), end=now, facility="x\x00y")


async def test_an_index_row_that_does_not_match_its_leaf_is_refused(stack: Stack) -> None:
    # In a database of its own: a superuser rewrites one index row's event id; the report
    # decodes the leaf, sees another event, and refuses to report rather than trust it.
    database = f"ledger_reports_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(stack.owner_url)
    try:
        await owner.execute(f'CREATE DATABASE "{database}"')
    finally:
        await owner.close()
    try:
        apply_migrations(with_database(stack.owner_url, database))
        patient = Patient(id="MRN-T", issuer="stmarys-boston", state="MA")
        now = datetime.now(UTC) - timedelta(minutes=1)
        events = [
            phi(user="rad-t", patient=patient, when=now - timedelta(minutes=i)) for i in (2, 1)
        ]
        async with PostgresAppender(
            dsn=with_database(stack.appender_url, database), ledger_name="test.ledger.local"
        ) as app:
            await app.register_schemas(
                [
                    WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                                     canonical_form=s.canonical_form, schema_json=s.schema_json)
                    for s in CODEC.schemas
                ]
            )  # fmt: skip
            checkpointer = Checkpointer(
                pool=app.pool,
                signers=load_signers(stack.signer_key_file),
                policy=CheckpointPolicy(every_leaves=1, every_ms=0),
            )
            tamper_writer = Writer(app, checkpointer)
            await tamper_writer.append("tamper-reports", 0, events)
            await tamper_writer.sign_all()
        scope = InvestigationScope(start=now - timedelta(hours=1), end=now, users=("rad-t",))
        reader_url = with_database(stack.reader_url, database)
        async with PostgresReports(dsn=reader_url) as clean:
            assert len((await clean.investigation(scope)).timeline) == 2
        su = await asyncpg.connect(with_database(superuser_url(stack), database))
        try:
            async with su.transaction():
                await su.execute("SET LOCAL session_replication_role = replica")  # triggers off
                await su.execute(
                    "UPDATE events SET event_id = $1 WHERE event_id = $2",
                    uuid.uuid4(),
                    events[1].event_id,
                )
        finally:
            await su.close()
        async with PostgresReports(dsn=reader_url) as reports:
            with pytest.raises(VerificationError, match="the index says event"):
                await reports.investigation(scope)
    finally:
        await drop_database(stack.owner_url, database)
