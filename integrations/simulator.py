"""Realistic synthetic teleradiology audit traffic, for demos, benchmarks and fault tests.

Invariant: for a given seed the sequence of events is deterministic (ids, times
and all), every generated event passes ``validate``, and the mix resembles a
teleradiology night shift: radiologists reading studies at several facilities,
technologists importing, referring physicians viewing, exports to outside
recipients, queries, logins, the occasional break-the-glass and deletion, and
critical-result relays.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from producers import (
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
    Study,
    Transport,
    TransportChannel,
    npi_checksum_ok,
)

FACILITIES = (
    Facility(id="stmarys-boston", name="St. Mary's Medical Center, Boston"),
    Facility(id="mercy-tulsa", name="Mercy Regional Hospital, Tulsa"),
    Facility(id="valleygen-phoenix", name="Valley General Hospital, Phoenix"),
    Facility(id="lakeside-chicago", name="Lakeside Imaging Center, Chicago"),
    Facility(id="pinecrest-denver", name="Pinecrest Community Hospital, Denver"),
)
_STATES_BY_FACILITY = {
    "stmarys-boston": ("MA", "NH", "RI"),
    "mercy-tulsa": ("OK", "AR", "KS"),
    "valleygen-phoenix": ("AZ", "NM", "NV"),
    "lakeside-chicago": ("IL", "IN", "WI"),
    "pinecrest-denver": ("CO", "WY", "NE"),
}
_FIRST = (
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonah",
    "Kemi",
    "Liam",
    "Maya",
    "Noor",
    "Owen",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tess",
)
_LAST = (
    "Alvarez",
    "Brennan",
    "Chen",
    "Diallo",
    "Eriksen",
    "Fischer",
    "Gupta",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Morales",
    "Nakamura",
    "Okafor",
    "Patel",
)
_MODALITIES = (
    ("CT", "1.2.840.10008.5.1.4.1.1.2"),
    ("MR", "1.2.840.10008.5.1.4.1.1.4"),
    ("CR", "1.2.840.10008.5.1.4.1.1.1"),
    ("US", "1.2.840.10008.5.1.4.1.1.6.1"),
    ("DX", "1.2.840.10008.5.1.4.1.1.1.1"),
)
_FINDINGS = {
    AcrCategory.CAT1: (
        "tension pneumothorax",
        "acute intracranial hemorrhage",
        "aortic dissection",
    ),
    AcrCategory.CAT2: ("new pulmonary embolism, hemodynamically stable", "acute appendicitis"),
    AcrCategory.CAT3: ("indeterminate renal mass", "incidental 9 mm lung nodule"),
}
_RECIPIENTS = (
    Recipient(
        name="Harbor Law Group LLP",
        address="100 Federal St, Boston, MA 02110",
        organization="Harbor Law Group",
    ),
    Recipient(
        name="State Department of Public Health",
        address="250 Washington St, Boston, MA",
        organization="DPH",
    ),
    Recipient(
        name="Acme Life Insurance Co.",
        address="PO Box 4410, Hartford, CT 06101",
        organization="Acme Life",
    ),
)


#: Where simulated time starts unless told otherwise.
DEFAULT_START = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)


#: One access in this many travels unencrypted (plain HTTP, or DICOM without TLS).
PLAIN_ONE_IN: Final = 50


def _transport(event_id: uuid.UUID, *, dicom: bool) -> Transport:
    """Mostly encrypted, one in ``PLAIN_ONE_IN`` plain: derived from the event id, so the
    random stream (and every other field of a seed's events) is what it was before v3."""
    plain = event_id.int % PLAIN_ONE_IN == 0
    if dicom:  # an import: a modality's C-STORE
        return Transport.of(TransportChannel.DICOM if plain else TransportChannel.DICOM_TLS)
    return Transport.of(TransportChannel.HTTP if plain else TransportChannel.HTTPS)


def make_npi(rng: random.Random) -> str:
    """A random NPI with a correct check digit."""
    while True:
        prefix = str(rng.choice((1, 2))) + "".join(str(rng.randrange(10)) for _ in range(8))
        for check in range(10):
            candidate = f"{prefix}{check}"
            if npi_checksum_ok(candidate):
                return candidate


@dataclass(frozen=True, slots=True, kw_only=True)
class SimPatient:
    patient: Patient
    facility: Facility
    studies: tuple[Study, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Population:
    radiologists: tuple[Actor, ...]
    technologists: tuple[Actor, ...]
    referrers: tuple[Actor, ...]
    admins: tuple[Actor, ...]
    patients: tuple[SimPatient, ...]


def _name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def build_population(rng: random.Random, *, patients: int) -> Population:
    def people(n: int, role: str, prefix: str, org: str | None, npi: bool) -> tuple[Actor, ...]:
        out = []
        for i in range(n):
            name = _name(rng)
            out.append(
                Actor(
                    user_id=f"{prefix}{i:03d}.{name.split()[1].lower()}",
                    name=name,
                    role=role,
                    organization=org,
                    npi=make_npi(rng) if npi else None,
                )
            )
        return tuple(out)

    pats = []
    for i in range(patients):
        facility = FACILITIES[i % len(FACILITIES)]
        studies = []
        for _ in range(rng.randint(1, 3)):
            modality, sop = rng.choice(_MODALITIES)
            studies.append(
                Study(
                    uid=f"2.25.{uuid.UUID(int=rng.getrandbits(128)).int}",
                    accession=f"A{rng.randrange(10**7, 10**8)}",
                    modality=modality,
                    sop_classes=(sop,),
                    instances=rng.randint(1, 600),
                )
            )
        pats.append(
            SimPatient(
                patient=Patient(
                    id=f"MRN{rng.randrange(10**6, 10**7)}",
                    issuer=facility.id,
                    state=rng.choice(_STATES_BY_FACILITY[facility.id]),
                ),
                facility=facility,
                studies=tuple(studies),
            )
        )
    return Population(
        radiologists=people(8, "radiologist", "rad", "Nocturne Teleradiology Group", True),
        technologists=people(6, "technologist", "tech", None, False),
        referrers=people(6, "referring-physician", "ref", None, True),
        admins=people(2, "pacs-admin", "admin", None, False),
        patients=tuple(pats),
    )


class Simulator:
    """Deterministic event stream: ``Simulator(seed=7).events(100)``."""

    def __init__(self, *, seed: int = 0, patients: int = 40, start: datetime | None = None) -> None:
        self._rng = random.Random(seed)
        self.population = build_population(self._rng, patients=patients)
        # Times walk forward from `start` and never pass the present, so every event
        # validates. The default start is fixed, so one seed always yields byte-identical
        # events: re-running a simulation re-sends duplicates, never conflicts.
        self._clock = start or DEFAULT_START

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def _tick(self) -> datetime:
        step = timedelta(milliseconds=self._rng.randint(5, 900))
        self._clock = min(self._clock + step, datetime.now(UTC))
        return self._clock

    def _ip(self) -> str:
        rng = self._rng
        return f"10.{rng.randrange(1, 40)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    def events(
        self, count: int, *, relay_every: int = 50
    ) -> Iterator[PhiAccessEvent | CriticalResultRelay]:
        for i in range(count):
            if relay_every and i % relay_every == relay_every // 2:
                yield self.relay()
            else:
                yield self.access()

    def access(self) -> PhiAccessEvent:
        rng = self._rng
        pop = self.population
        sim = rng.choice(pop.patients)
        study: Study | None = rng.choice(sim.studies)
        event_type_code: str | None = None
        recipient: Recipient | None = None
        outcome = EventOutcome.SUCCESS
        details: dict[str, str] = {}
        roll = rng.random()
        if roll < 0.55:  # a radiologist reads the study
            actor, code, action, purpose = rng.choice(pop.radiologists), "110103", "R", "TREAT"
        elif roll < 0.70:  # a referring physician views images or the report
            actor, code, action, purpose = rng.choice(pop.referrers), "110103", "R", "TREAT"
        elif roll < 0.80:  # a technologist imports a new study
            actor, code, action, purpose = rng.choice(pop.technologists), "110107", "C", "TREAT"
        elif roll < 0.90:  # a worklist query
            actor, code, action, purpose = rng.choice(pop.radiologists), "110112", "E", "TREAT"
            study = None
            details = {"query": "QIDO-RS /studies?PatientID=..."}
        elif roll < 0.95:  # an export: a disclosure to an outside recipient
            actor, code, action = rng.choice(pop.admins), "110106", "R"
            purpose = rng.choice(("LEGAL", "PUBHLTH", "HPAYMT"))
            recipient = rng.choice(_RECIPIENTS)
        elif roll < 0.98:  # break the glass
            actor, code, action, purpose = rng.choice(pop.referrers), "110113", "E", "ETREAT"
            event_type_code = "110127"
        else:  # a deletion, sometimes refused
            actor, code, action, purpose = rng.choice(pop.admins), "110105", "D", "HOPERAT"
            outcome = rng.choice((EventOutcome.SUCCESS, EventOutcome.MINOR_FAILURE))
        event_id, event_time, address = self._uuid(), self._tick(), self._ip()
        return PhiAccessEvent(
            event_id=event_id,
            event_time=event_time,
            facility=sim.facility,
            patient=sim.patient,
            network_address=address,
            transport=_transport(event_id, dicom=code == "110107"),
            actor=actor,
            dicom_event_id=code,
            event_type_code=event_type_code,
            action=EventAction(action),
            outcome=outcome,
            study=study,
            purpose_of_use=purpose,
            recipient=recipient,
            details=details,
        )

    def relay(self) -> CriticalResultRelay:
        rng = self._rng
        sim = rng.choice(self.population.patients)
        category = rng.choice(tuple(AcrCategory))
        identified = self._tick()
        attempts = []
        at = identified
        for _ in range(rng.choice((0, 0, 1, 2))):
            at += timedelta(minutes=rng.randint(2, 9))
            attempts.append(
                RelayAttempt(
                    at=at,
                    method=RelayMethod.PHONE,
                    outcome=rng.choice((AttemptOutcome.NO_ANSWER, AttemptOutcome.LEFT_MESSAGE)),
                )
            )
        communicated = at + timedelta(minutes=rng.randint(1, 40))
        attempts.append(
            RelayAttempt(at=communicated, method=RelayMethod.PHONE, outcome=AttemptOutcome.REACHED)
        )
        acknowledged = communicated + timedelta(seconds=rng.randint(10, 120))
        overshoot = acknowledged - datetime.now(UTC)
        if overshoot > timedelta(0):  # keep the whole relay in the past
            identified -= overshoot
            communicated -= overshoot
            acknowledged -= overshoot
            attempts = [
                RelayAttempt(at=a.at - overshoot, method=a.method, outcome=a.outcome)
                for a in attempts
            ]
        ref = rng.choice(self.population.referrers)
        self._clock = max(self._clock, acknowledged)
        return CriticalResultRelay(
            event_id=self._uuid(),
            event_time=self._clock,
            facility=sim.facility,
            category=category,
            finding=rng.choice(_FINDINGS[category]),
            patient=sim.patient,
            study=rng.choice(sim.studies),
            identified_at=identified,
            communicated_at=communicated,
            acknowledged_at=acknowledged,
            sender=rng.choice(self.population.radiologists),
            recipient=RelayRecipient(
                name=ref.name or ref.user_id, role="ordering-physician", npi=ref.npi
            ),
            method=RelayMethod.PHONE,
            read_back=rng.random() < 0.9,
            attempts=tuple(attempts),
        )
