"""Planted violations of every compliance rule, each with its answer, over a clean span.

Invariant: pure and deterministic per seed. ``ComplianceSimulation(seed=..., events=N)``
has a clean stream of N events (``simstream``) and, separately drawn so the clean stream
is the same with or without them, one planted violation per rule (two for the BAA and
licence rules: never and no longer). Each plant has a user and patient of its own and
violates exactly one rule once, so a conforming rule raises exactly one alert for it, at
the event its answer names; the clean twin (``stream(plant=False)``) raises none.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from integrations.simstream import CleanStream, SimPatient, make_patients, make_study, new_uuid
from integrations.simulator import FACILITIES
from integrations.simworld import (
    PLANT_FACILITY,
    PLANT_STATES,
    PLANT_USERS,
    SimUser,
    World,
    build_world,
    registry_csv,
    watchlist_csv,
)
from producers import (
    AcrCategory,
    Actor,
    AuditEvent,
    Author,
    CriticalResultRelay,
    DisclosedPatient,
    EventAction,
    Patient,
    PhiAccessEvent,
    RegistryChange,
    Transport,
    TransportChannel,
)

#: Every rule a plant violates (docs/design/compliance.md; spec ids, version 1 each).
PLANTED_RULES: Final = (
    "registry.baa_missing", "registry.license_missing", "registry.credential_missing",
    "account.shared", "account.unknown", "account.ended",
    "privacy.own_record", "privacy.coworker_record", "privacy.vip_record",
    "access.unusual_hours", "access.bulk", "breakglass.unjustified",
    "relay.late", "relay.overdue", "relay.no_readback", "transport.unencrypted",
)  # fmt: skip
ANSWERS_FORMAT: Final = "philedger-simulated-violations/1"
#: Where a simulated span starts unless told otherwise (fixed: a seed's bytes never change).
DEFAULT_START: Final = datetime(2026, 2, 2, tzinfo=UTC)
#: The span, in days: the unusual-hours baseline needs 7 days of history before a plant.
MIN_DAYS: Final = 10
#: Distinct patients the bulk plant's search returns (the default threshold is 50).
BULK_PATIENTS: Final = 51
#: Clean users: about this many accesses each (a baseline in each partition's log).
ACCESSES_PER_USER: Final = 500
AUTHOR: Final = Author(user_id="sim-registrar", role="privacy-officer")


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """One planted violation: the rule that must raise it, at which event, about whom."""

    rule_id: str
    event_id: str
    event_time: str
    user_id: str
    facility_id: str
    patient_id: str | None
    patient_issuer: str | None
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Plant:
    """A planted violation: its trigger, the events that complete it (a later event of the
    same patient that moves the log's clock past a deadline), and what it is."""

    rule_id: str
    trigger: AuditEvent
    extra: tuple[AuditEvent, ...]
    note: str

    def answer(self) -> Answer:
        e = self.trigger
        user = e.sender if isinstance(e, CriticalResultRelay) else e.actor
        patient = e.patient
        return Answer(
            rule_id=self.rule_id, event_id=str(e.event_id), event_time=e.event_time.isoformat(),
            user_id=user.user_id, facility_id=e.facility.id,
            patient_id=None if patient is None else patient.id,
            patient_issuer=None if patient is None else patient.issuer, note=self.note,
        )  # fmt: skip


class ComplianceSimulation:
    """A registry, a clean span of ``events`` events and the plants over it."""

    def __init__(
        self, *, seed: int, events: int, start: datetime = DEFAULT_START, days: int = MIN_DAYS
    ) -> None:
        if days < MIN_DAYS:
            raise ValueError(f"a span of at least {MIN_DAYS} days is needed, not {days}")
        self.seed, self.start, self.days = seed, start, days
        rng = random.Random(seed)
        users = max(10, events // ACCESSES_PER_USER)
        self.world: World = build_world(rng, users=users, first_day=start.date())
        patients = make_patients(rng, max(60, events // 20), FACILITIES)
        self.clean = CleanStream(rng, self.world, patients, events=events, start=start, days=days)
        self._rng = random.Random(seed ^ 0x5EED_91A7)  # the plants' own draws
        self._plant_facility = next(f for f in FACILITIES if f.id == PLANT_FACILITY)
        self._patients = 0
        self.watchlist: list[tuple[str, str, str, str, str]] = []
        self.plants: tuple[Plant, ...] = self._plants()

    def stream(self, *, plant: bool) -> tuple[AuditEvent, ...]:
        """The clean events, with every plant's events merged in by time when ``plant``."""
        if not plant:
            return self.clean.events
        extra = [e for p in self.plants for e in (p.trigger, *p.extra)]
        merged = [(e.event_time, 0, i, e) for i, e in enumerate(self.clean.events)]
        merged += [(e.event_time, 1, i, e) for i, e in enumerate(extra)]
        merged.sort(key=lambda t: t[:3])
        return tuple(e for *_, e in merged)

    def answers(self, *, plant: bool) -> tuple[Answer, ...]:
        return tuple(p.answer() for p in self.plants) if plant else ()

    def registry_changes(self) -> tuple[RegistryChange, ...]:
        """Every registry record as a change made one day before the span starts (so the
        registry as known at any access holds it), with ids drawn from the seed."""
        rng = random.Random(self.seed ^ 0x0E61_5791)
        at = self.start - timedelta(days=1)
        return tuple(
            RegistryChange(author=AUTHOR, record=r, event_id=new_uuid(rng), event_time=at)
            for r in self.world.records
        )

    def registry_files(self) -> dict[str, str]:
        return registry_csv(self.world.records)

    def watchlist_file(self) -> str:
        return watchlist_csv(self.watchlist)

    # -- the plants -----------------------------------------------------------------

    def _slot(self, k: int) -> datetime:
        """The k-th plant's time: days 7 to 9 (a baseline behind it), 10:00 to 15:59."""
        return self.start + timedelta(days=7 + k % 3, hours=10 + (k // 3) % 6, minutes=7 * k % 50)

    def _patient(self, state: str = PLANT_STATES[1]) -> SimPatient:
        self._patients += 1
        patient = Patient(id=f"SIMP{self._patients:05d}", issuer=PLANT_FACILITY, state=state)
        study = make_study(self._rng)
        return SimPatient(patient=patient, facility=self._plant_facility, studies=(study,))

    def _read(
        self, actor: Actor, sim: SimPatient, at: datetime, *, code: str = "110103",
        purpose: str = "TREAT", channel: TransportChannel = TransportChannel.HTTPS,
    ) -> PhiAccessEvent:  # fmt: skip
        create = code == "110107"
        return PhiAccessEvent(
            event_id=new_uuid(self._rng), event_time=at, facility=sim.facility,
            patient=sim.patient, network_address="10.99.0.7", actor=actor,
            transport=Transport.of(TransportChannel.DICOM_TLS if create else channel),
            dicom_event_id=code, action=EventAction.CREATE if create else EventAction.READ,
            study=sim.studies[0], purpose_of_use=purpose,
            event_type_code="110127" if purpose == "ETREAT" else None,
        )  # fmt: skip

    def _plants(self) -> tuple[Plant, ...]:
        actors = {u: Actor(user_id=u, role=role, organization=org or None)
                  for u, org, role in PLANT_USERS}  # fmt: skip
        out: list[Plant] = []
        one_access = (
            ("registry.baa_missing", "plant-baa-none", "110103", "a business associate "
             "with no BAA with the facility reads a study"),
            ("registry.baa_missing", "plant-baa-ended", "110103", "a business associate "
             "whose BAA with the facility ended on day 4 reads a study"),
            ("registry.license_missing", "plant-lic-none", "110103", "a radiologist "
             "licensed in another state reads a study"),
            ("registry.license_missing", "plant-lic-expired", "110103", "a radiologist "
             "whose licence in the patient's state expired on day 3 reads a study"),
            ("registry.credential_missing", "plant-cred-none", "110103", "a radiologist "
             "credentialed at another facility only reads a study"),
            ("account.shared", "plant-shared", "110107", "a shared reading-room account "
             "imports a study"),
            ("account.unknown", "plant-unknown", "110103", "a user the registry does not "
             "know reads a study"),
            ("account.ended", "plant-ended", "110107", "a technologist whose employment "
             "ended on day 5 imports a study"),
            ("privacy.own_record", "plant-own", "110103", "a member opens their own record"),
            ("privacy.coworker_record", "plant-coworker", "110103", "a member opens a "
             "co-worker's record"),
            ("privacy.vip_record", "plant-vip", "110103", "a member opens a VIP's record"),
        )  # fmt: skip
        for rule, user, code, note in one_access:
            sim = self._patient()
            trigger = self._read(actors[user], sim, self._slot(len(out)), code=code)
            out.append(Plant(rule_id=rule, trigger=trigger, extra=(), note=note))
            self._watch(rule, sim.patient)
        out += [self._unusual_hours(len(out)), self._bulk(actors["plant-bulk"], len(out))]
        out.append(self._breakglass(actors["plant-breakglass"], len(out)))
        out += self._relays(len(out))
        sim = self._patient()
        plain = self._read(actors["plant-http"], sim, self._slot(len(out)),
                           channel=TransportChannel.HTTP)  # fmt: skip
        out.append(Plant(rule_id="transport.unencrypted", trigger=plain, extra=(),
                         note="a study read over plain HTTP"))  # fmt: skip
        return tuple(out)

    def _watch(self, rule: str, patient: Patient) -> None:
        issuer = patient.issuer or ""
        if rule == "privacy.own_record":
            self.watchlist.append(("workforce", patient.id, issuer, "plant-own", "own record"))
        elif rule == "privacy.coworker_record":
            listed = self.world.of_role("technologist")[0].actor.user_id
            self.watchlist.append(("workforce", patient.id, issuer, listed, "co-worker"))
        elif rule == "privacy.vip_record":
            self.watchlist.append(("vip", patient.id, issuer, "", "VIP"))

    def _unusual_hours(self, k: int) -> Plant:
        """A night teleradiologist with days of history reads once at midday."""
        user: SimUser = next(u for u in self.world.users if u.actor.role == "radiologist"
                             and len(u.facilities) > 1)  # fmt: skip
        day = self.start + timedelta(days=7 + k % 3)
        at = day + timedelta(hours=(user.shift_start + 12) % 24, minutes=30)
        trigger = self._read(user.actor, self._patient(), at)
        return Plant(rule_id="access.unusual_hours", trigger=trigger, extra=(),
                     note=f"a user whose shift starts at {user.shift_start:02d}:00 UTC reads "
                     "twelve hours later")  # fmt: skip

    def _bulk(self, actor: Actor, k: int) -> Plant:
        """One search whose answer discloses BULK_PATIENTS patients: one log (keyed by the
        user), so the count does not depend on how patients spread over partitions."""
        found = [self._patient().patient for _ in range(BULK_PATIENTS)]
        disclosed = tuple(DisclosedPatient(id=p.id, issuer=p.issuer, state=p.state) for p in found)
        trigger = PhiAccessEvent(
            event_id=new_uuid(self._rng), event_time=self._slot(k), facility=self._plant_facility,
            patient=None, network_address="10.99.0.8", actor=actor, dicom_event_id="110112",
            action=EventAction.EXECUTE, purpose_of_use="HOPERAT",
            transport=Transport.of(TransportChannel.HTTPS),
            disclosed=tuple(sorted(disclosed, key=lambda d: d.sort_key)),
            details={"query": "QIDO-RS /patients?BirthDate=19*"},
        )  # fmt: skip
        return Plant(rule_id="access.bulk", trigger=trigger, extra=(),
                     note=f"one search returns {BULK_PATIENTS} patients")  # fmt: skip

    def _breakglass(self, actor: Actor, k: int) -> Plant:
        sim = self._patient()
        at = self._slot(k)
        override = self._read(actor, sim, at, code="110113", purpose="ETREAT")
        later = self._read(actor, sim, at + timedelta(hours=2))  # passes the deadline
        return Plant(rule_id="breakglass.unjustified", trigger=override, extra=(later,),
                     note="an emergency override never justified")  # fmt: skip

    def _relays(self, k: int) -> list[Plant]:
        clean, out = self.clean, []
        sim = self._patient()
        late = clean.relay(sim, self._slot(k), category=AcrCategory.CAT1,
                           delay=timedelta(minutes=45))  # fmt: skip
        out.append(Plant(rule_id="relay.late", trigger=late, extra=(),
                         note="a CAT1 result communicated after 45 minutes"))  # fmt: skip
        sim = self._patient()
        pending = clean.pending(sim, self._slot(k + 1), AcrCategory.CAT1)
        follow = clean.relay(sim, self._slot(k + 1) + timedelta(days=1))
        out.append(Plant(rule_id="relay.overdue", trigger=pending, extra=(follow,),
                         note="a CAT1 result never communicated"))  # fmt: skip
        sim = self._patient()
        unread = clean.relay(sim, self._slot(k + 2), category=AcrCategory.CAT2,
                             delay=timedelta(minutes=25), read_back=False)  # fmt: skip
        follow = clean.relay(sim, self._slot(k + 2) + timedelta(days=1))
        out.append(Plant(rule_id="relay.no_readback", trigger=unread, extra=(follow,),
                         note="a CAT2 result phoned without a read-back"))  # fmt: skip
        return out


def answers_document(
    sim: ComplianceSimulation, *, plant: bool, producer_id: str | None = None
) -> str:
    """The answer file (JSON): the run's identity and every planted violation."""
    stream = sim.stream(plant=plant)
    doc = {
        "format": ANSWERS_FORMAT,
        "seed": sim.seed,
        "clean_events": len(sim.clean.events),
        "emitted": len(stream),
        "planted": plant,
        "registry_changes": len(sim.world.records),
        "producer_id": producer_id,
        "first_event_time": stream[0].event_time.isoformat() if stream else None,
        "last_event_time": max(e.event_time for e in stream).isoformat() if stream else None,
        "violations": [answer_dict(a) for a in sim.answers(plant=plant)],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def answer_dict(a: Answer) -> dict[str, str | None]:
    return {k: getattr(a, k) for k in Answer.__slots__}


def rules_toml(watchlist: str) -> str:
    """The rules' configuration the answers assume: every default, and the watch list
    (a relative path is read beside the TOML file)."""
    return (
        "# Written by `ledger simulate --registry`: the answers assume every default\n"
        "# threshold, and the privacy rules read this watch list.\n"
        "[privacy_lists]\n"
        f"file = {json.dumps(watchlist)}\n"
    )
