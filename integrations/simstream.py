"""The clean stream of a simulated compliance span: days of accesses and relays in which
no compliance rule has anything to say.

Invariant: pure and deterministic per seed, sorted by event time, and clean: each user
reads only at the facilities the registry (``simworld``) covers it for, only within its
shift (so an hour-of-day baseline sees nothing unusual), reaches at most a few patients
an hour (far below any bulk threshold), always over an encrypted channel, justifies
every break-glass on the override itself, and every critical result is relayed well
within its ACR deadline with a read-back. No clean event touches a watch-listed patient.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final

from integrations.simulator import _FINDINGS, _MODALITIES, _RECIPIENTS, _STATES_BY_FACILITY
from integrations.simworld import SHIFT_HOURS, SimUser, World
from producers import (
    AcrCategory,
    AttemptOutcome,
    AuditEvent,
    CriticalResultRelay,
    DisclosedPatient,
    EventAction,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    RelayAttempt,
    RelayMethod,
    RelayRecipient,
    Study,
    Transport,
    TransportChannel,
)

#: One event in this many is a critical-result relay.
RELAY_ONE_IN: Final = 50
#: Default ACR deadlines (the rules' defaults): a clean relay is communicated well within.
DEADLINES: Final = MappingProxyType(
    {
        AcrCategory.CAT1: timedelta(minutes=30),
        AcrCategory.CAT2: timedelta(hours=6),
        AcrCategory.CAT3: timedelta(days=3),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimPatient:
    patient: Patient
    facility: Facility
    studies: tuple[Study, ...]


def new_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def make_study(rng: random.Random) -> Study:
    modality, sop = rng.choice(_MODALITIES)
    return Study(
        uid=f"2.25.{uuid.UUID(int=rng.getrandbits(128)).int}",
        accession=f"A{rng.randrange(10**7, 10**8)}",
        modality=modality,
        sop_classes=(sop,),
        instances=rng.randint(1, 600),
    )


def make_patients(
    rng: random.Random, count: int, facilities: Sequence[Facility]
) -> list[SimPatient]:
    """``count`` patients spread over ``facilities``, ids unique (``MRN`` + 7 digits)."""
    out: list[SimPatient] = []
    seen: set[str] = set()
    while len(out) < count:
        pid = f"MRN{rng.randrange(10**6, 10**7)}"
        if pid in seen:
            continue
        seen.add(pid)
        facility = facilities[len(out) % len(facilities)]
        patient = Patient(
            id=pid, issuer=facility.id, state=rng.choice(_STATES_BY_FACILITY[facility.id])
        )
        studies = tuple(make_study(rng) for _ in range(rng.randint(1, 3)))
        out.append(SimPatient(patient=patient, facility=facility, studies=studies))
    return out


def shift_times(
    rng: random.Random, user: SimUser, count: int, *, start: datetime, days: int
) -> list[datetime]:
    """``count`` instants spread evenly over the user's shift on each of ``days`` days."""
    times: list[datetime] = []
    shift = timedelta(hours=SHIFT_HOURS)
    for day in range(days):
        n = count // days + (1 if day < count % days else 0)
        begin = start + timedelta(days=day, hours=user.shift_start)
        times += [begin + shift * ((j + rng.random()) / n) for j in range(n)]
    return times


class CleanStream:
    """The clean events of one span: ``CleanStream(rng, world, ...).events``."""

    def __init__(
        self,
        rng: random.Random,
        world: World,
        patients: Sequence[SimPatient],
        *,
        events: int,
        start: datetime,
        days: int,
    ) -> None:
        self._rng = rng
        self._world = world
        self._by_facility: dict[str, list[SimPatient]] = {}
        for p in patients:
            self._by_facility.setdefault(p.facility.id, []).append(p)
        self._patients = tuple(patients)
        relays = events // RELAY_ONE_IN
        accesses = events - relays
        timed: list[tuple[datetime, int, AuditEvent]] = []
        users = world.users
        for i, user in enumerate(users):
            n = accesses // len(users) + (1 if i < accesses % len(users) else 0)
            for at in shift_times(rng, user, n, start=start, days=days):
                timed.append((at, len(timed), self.access(user, at)))
        span = timedelta(days=days).total_seconds()
        for _ in range(relays):
            at = start + timedelta(seconds=rng.uniform(0, span))
            relay = self.relay(rng.choice(self._patients), at)
            timed.append((relay.event_time, len(timed), relay))
        timed.sort(key=lambda t: (t[0], t[1]))
        self.events: tuple[AuditEvent, ...] = tuple(e for _, _, e in timed)

    def _ip(self) -> str:
        rng = self._rng
        return f"10.{rng.randrange(1, 40)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    def access(self, user: SimUser, at: datetime) -> PhiAccessEvent:
        rng = self._rng
        sim = rng.choice(self._by_facility[rng.choice(user.facilities)])
        role, roll = user.actor.role, rng.random()
        study: Study | None = rng.choice(sim.studies)
        patient: Patient | None = sim.patient
        code, action, purpose = "110103", EventAction.READ, "TREAT"
        channel = TransportChannel.HTTPS
        disclosed: tuple[DisclosedPatient, ...] = ()
        details: dict[str, str] = {}
        event_type: str | None = None
        recipient = None
        if role == "technologist":  # a modality's import
            code, action, channel = "110107", EventAction.CREATE, TransportChannel.DICOM_TLS
        elif role == "radiologist" and roll < 0.12:  # a worklist search by date
            code, action, study, patient = "110112", EventAction.EXECUTE, None, None
            disclosed = self._disclosed(sim.facility.id)
            details = {"query": "QIDO-RS /studies?StudyDate=today"}
        elif role == "radiologist" and roll < 0.25:  # a patient's prior studies
            code, action, study = "110112", EventAction.EXECUTE, None
            details = {"query": "QIDO-RS /studies?PatientID=..."}
        elif role == "referring-physician" and roll < 0.04:  # a justified break-glass
            code, action, purpose = "110113", EventAction.EXECUTE, "ETREAT"
            event_type = "110127"
            details = {"justification": "unresponsive patient in the emergency department"}
        elif role == "pacs-admin" and roll < 0.5:  # a disclosure to an outside recipient
            code, purpose = "110106", rng.choice(("LEGAL", "PUBHLTH", "HPAYMT"))
            recipient = rng.choice(_RECIPIENTS)
        elif role == "pacs-admin" and roll < 0.7:
            code, action, purpose = "110105", EventAction.DELETE, "HOPERAT"
        elif role == "pacs-admin":
            code, action, study = "110112", EventAction.EXECUTE, None
            details = {"query": "QIDO-RS /studies?PatientID=..."}
        event_id = new_uuid(rng)
        return PhiAccessEvent(
            event_id=event_id,
            event_time=at,
            facility=sim.facility,
            patient=patient,
            network_address=self._ip(),
            transport=Transport.of(channel),
            actor=user.actor,
            dicom_event_id=code,
            action=action,
            outcome=EventOutcome.SUCCESS,
            study=study,
            purpose_of_use=purpose,
            disclosed=disclosed,
            details=details,
            event_type_code=event_type,
            recipient=recipient,
        )

    def _disclosed(self, facility: str) -> tuple[DisclosedPatient, ...]:
        picked = self._rng.sample(self._by_facility[facility], self._rng.randint(2, 4))
        return tuple(
            sorted(
                (
                    DisclosedPatient(
                        id=p.patient.id,
                        issuer=p.patient.issuer,
                        state=p.patient.state,
                        studies=tuple(sorted(s.uid for s in p.studies)),
                    )
                    for p in picked
                ),
                key=lambda d: d.sort_key,
            )
        )

    def relay(
        self,
        sim: SimPatient,
        identified: datetime,
        *,
        category: AcrCategory | None = None,
        delay: timedelta | None = None,
        read_back: bool = True,
    ) -> CriticalResultRelay:
        """A relay of a critical finding about ``sim``, communicated ``delay`` after it was
        identified (default: within half its deadline, at most 20 minutes)."""
        rng = self._rng
        category = category or rng.choice(tuple(AcrCategory))
        if delay is None:
            most = min(DEADLINES[category] / 2, timedelta(minutes=20))
            delay = timedelta(seconds=rng.uniform(60, most.total_seconds()))
        communicated = identified + delay
        acknowledged = communicated + timedelta(seconds=rng.randint(20, 120))
        reached = RelayAttempt(
            at=communicated, method=RelayMethod.PHONE, outcome=AttemptOutcome.REACHED
        )
        return self._relay_record(
            sim,
            identified,
            category,
            read_back=read_back,
            attempts=(reached,),
            communicated=communicated,
            acknowledged=acknowledged,
            event_time=acknowledged,
        )

    def pending(
        self, sim: SimPatient, identified: datetime, category: AcrCategory
    ) -> CriticalResultRelay:
        """A relay documented while nobody could be reached yet: two unanswered calls."""
        calls = tuple(
            RelayAttempt(
                at=identified + timedelta(minutes=m),
                method=RelayMethod.PHONE,
                outcome=AttemptOutcome.NO_ANSWER,
            )
            for m in (4, 11)
        )
        return self._relay_record(
            sim,
            identified,
            category,
            read_back=False,
            attempts=calls,
            communicated=None,
            acknowledged=None,
            event_time=identified + timedelta(minutes=15),
        )

    def _relay_record(
        self,
        sim: SimPatient,
        identified: datetime,
        category: AcrCategory,
        *,
        read_back: bool,
        attempts: tuple[RelayAttempt, ...],
        communicated: datetime | None,
        acknowledged: datetime | None,
        event_time: datetime,
    ) -> CriticalResultRelay:
        rng = self._rng
        radiologists = self._world.of_role("radiologist")
        ref = rng.choice(self._world.of_role("referring-physician")).actor
        return CriticalResultRelay(
            event_id=new_uuid(rng),
            event_time=event_time,
            facility=sim.facility,
            category=category,
            finding=rng.choice(_FINDINGS[category]),
            patient=sim.patient,
            study=rng.choice(sim.studies),
            identified_at=identified,
            communicated_at=communicated,
            acknowledged_at=acknowledged,
            sender=rng.choice(radiologists).actor,
            recipient=RelayRecipient(
                name=ref.name or ref.user_id, role="ordering-physician", npi=ref.npi
            ),
            method=RelayMethod.PHONE,
            read_back=read_back,
            attempts=attempts,
        )
