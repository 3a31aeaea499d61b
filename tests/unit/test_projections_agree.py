"""The consumer's and the verifier's event projections agree, column by column.

``consumers.projection.index_fields`` (what the consumer writes into the ``events`` table) and
``ledger.verify.projection.project_event`` (what the verifier expects a row to say) are
written twice on purpose: the verifier must not trust the code it checks. This test is what
keeps the two equal: every event kind, with its optional parts present and absent, goes
through the real codec, the consumer's projection of the record, and the verifier's
projection of the same bytes decoded with the stored writer schemas.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from consumers.projection import event_index
from integrations.simulator import Simulator
from ledger.audit.records import SchemaSet, StoredSchema
from ledger.verify import project_event
from ledger.verify.patients import expected_patients, patients_problem
from ledger.verify.projection import cell_equal
from producers.codec import Codec
from producers.events import (
    AcrCategory,
    Actor,
    AuditEvent,
    AuditLogUsed,
    CriticalResultRelay,
    DisclosedPatient,
    DisclosedRange,
    EventAction,
    EventOutcome,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    RelayMethod,
    RelayRecipient,
    SecurityEvent,
    Study,
)
from producers.registry import (
    Author,
    Organization,
    OrganizationKind,
    RegistryChange,
    RegistryOperation,
    StateLicense,
)

_WHEN = datetime(2026, 3, 9, 6, 58, 44, 913000, tzinfo=UTC)
_FACILITY = Facility(id="stmarys-boston", name="St Mary's Boston")
_ACTOR = Actor(user_id="rad004.kowalski", role="radiologist", name="Ana K", organization="Org")
_PATIENT = Patient(id="MRN1234567", issuer="stmarys-boston", state="MA")

#: Columns the consumer sets by policy for a relay, not from the event: the verifier does
#: not compare them (docs/design/verifier.md, "Index").
_RELAY_POLICY = frozenset({"action", "outcome", "purpose_of_use"})
#: ``disclosed`` and ``patients`` are checked by their own collaborators
#: (``ledger.verify.disclosures``, ``ledger.verify.patients``).
_NOT_PROJECTED = frozenset({"disclosed", "patients"})


def _registry() -> list[RegistryChange]:
    """Registry changes: indexed with no patient and no facility, by their author."""
    author = Author(user_id="privacy.officer", role="privacy_officer")
    return [
        RegistryChange(
            author=author,
            event_time=_WHEN,
            record=Organization(
                organization_id="stmarys-boston",
                name="St Mary's",
                organization_kind=OrganizationKind.FACILITY,
            ),
        ),
        RegistryChange(
            author=author,
            event_time=_WHEN,
            operation=RegistryOperation.RETIRE,
            record=StateLicense(
                license_id="lic-1",
                user_id="rad004.kowalski",
                state="MA",
                number="A1",
                valid_from=_WHEN.date(),
            ),
        ),
    ]


def _handmade() -> list[AuditEvent]:
    """Every kind, with the optional parts the simulator never leaves out (or never sets)."""
    return [
        PhiAccessEvent(
            event_time=_WHEN,
            facility=Facility(id="minimal"),
            actor=Actor(user_id="u1", role="technologist"),
            dicom_event_id="110112",
            action=EventAction.EXECUTE,
            patient=Patient(id="P-1"),
        ),
        CriticalResultRelay(
            event_time=_WHEN,
            facility=_FACILITY,
            category=AcrCategory.CAT1,
            patient=_PATIENT,
            study=Study(uid="2.25.1", accession="ACC-1"),
            identified_at=_WHEN - timedelta(hours=1),
            sender=_ACTOR,
            recipient=RelayRecipient(name="Dr Who", role="referrer"),
            method=RelayMethod.PHONE,
            read_back=False,
        ),
        SecurityEvent(
            event_time=_WHEN,
            facility=_FACILITY,
            actor=_ACTOR,
            dicom_event_id="110114",
            event_type_code="110122",
            outcome=EventOutcome.MINOR_FAILURE,
            network_address="198.51.100.23",
        ),
        SecurityEvent(
            event_time=_WHEN,
            facility=_FACILITY,
            actor=_ACTOR,
            dicom_event_id="110113",
            event_type_code="110127",
            patient=_PATIENT,
            purpose_of_use="ETREAT",
        ),
        AuditLogUsed(
            event_time=_WHEN,
            facility=Facility(id="test.ledger"),
            actor=Actor(user_id="auditor.kim", role="auditor"),
            query=LedgerQuery(method="GET", path="/v1/users/x/accesses", status=200, results=2),
            network_address="127.0.0.1",
        ),
        AuditLogUsed(
            event_time=_WHEN,
            facility=Facility(id="test.ledger"),
            actor=Actor(user_id="auditor.kim", role="auditor", name="Kim"),
            query=LedgerQuery(method="GET", path="/v1/patients/P/accesses", status=200),
            patient=_PATIENT,
            disclosed=(DisclosedRange(log="test.ledger/phi-access/0", start=3, end=9),),
        ),
        # PhiAccessEvent v2: a query that names nobody and returned three patients, one
        # that matched nobody, and one that names its patient and returned it and another.
        PhiAccessEvent(
            event_time=_WHEN,
            facility=_FACILITY,
            actor=_ACTOR,
            dicom_event_id="110112",
            action=EventAction.EXECUTE,
            patient=None,
            disclosed=(
                DisclosedPatient(id="MRN9", state="MA", studies=("2.25.7", "2.25.8")),
                DisclosedPatient(id="MRN1", issuer="a"),
                DisclosedPatient(id="MRN1", issuer="b", studies=("2.25.9",)),
            ),
            disclosed_truncated=True,
            disclosed_total=40,
        ),
        PhiAccessEvent(
            event_time=_WHEN,
            facility=_FACILITY,
            actor=_ACTOR,
            dicom_event_id="110112",
            action=EventAction.EXECUTE,
            patient=None,
        ),
        PhiAccessEvent(
            event_time=_WHEN,
            facility=_FACILITY,
            actor=_ACTOR,
            dicom_event_id="110112",
            action=EventAction.EXECUTE,
            patient=_PATIENT,
            disclosed=(
                DisclosedPatient(id="MRN0", issuer="stmarys-boston"),
                DisclosedPatient(id="MRN1234567", issuer="stmarys-boston", state="MA"),
            ),
        ),
    ]


def _events() -> list[AuditEvent | RegistryChange]:
    return [*Simulator(seed=7).events(200, relay_every=10), *_handmade(), *_registry()]


def _schemas(codec: Codec) -> SchemaSet:
    return SchemaSet(
        [
            StoredSchema(
                fingerprint=s.fingerprint, full_name=s.full_name, schema_json=s.schema_json
            )
            for s in codec.schemas
        ]
    )


def _stored(column: str, value: object) -> object:
    """The consumer's value as the database hands it to the verifier (text, or an int)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def test_every_kind_is_covered() -> None:
    kinds = {event_index(e.stamped(producer_id="t", producer_seq=0)).kind for e in _events()}
    assert kinds == {
        "phi_access",
        "critical_result_relay",
        "security_event",
        "audit_log_used",
        "registry_change",
    }


@pytest.mark.parametrize("event", _events(), ids=lambda e: type(e).__name__)
def test_the_two_projections_agree_column_by_column(event: AuditEvent | RegistryChange) -> None:
    codec = Codec()
    stamped = event.stamped(producer_id="producer-1", producer_seq=41)
    row = dataclasses.asdict(event_index(stamped))
    name, record = _schemas(codec).decode(codec.encode(stamped))
    projected = project_event(name, record)

    skipped = _NOT_PROJECTED | (_RELAY_POLICY if row["kind"] == "critical_result_relay" else set())
    assert set(projected) == set(row) - skipped, "the same columns, apart from the documented"
    for column, expected in projected.items():
        assert cell_equal(column, expected, _stored(column, row[column])), column


@pytest.mark.parametrize("event", _handmade()[-3:], ids=["three", "none", "named-and-two"])
def test_the_verifier_derives_the_consumers_disclosed_patients(event: AuditEvent) -> None:
    """``event_patients`` rows (the consumer's ``patients``) are what the verifier derives
    from the leaf on its own (``ledger.verify.patients``), in the same order."""
    codec = Codec()
    stamped = event.stamped(producer_id="producer-1", producer_seq=41)
    row = dataclasses.asdict(event_index(stamped))
    name, record = _schemas(codec).decode(codec.encode(stamped))
    assert expected_patients(name, record) == list(row["patients"])
    assert patients_problem(name, record, row) is None
