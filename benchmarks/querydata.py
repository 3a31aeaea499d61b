"""The queries benchmark's simulated ledger: who and where (``Population``, ``users``),
and the encoded, classified event templates every loaded event is made from. Everything
is derived from N and fixed seeds, so a size always makes the same data."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import fastavro

from consumers.classify import classify
from integrations.simulator import Simulator, make_npi
from ledger.audit.ingest import Accepted
from ledger.log.leaf import KafkaRecord
from producers.codec import Codec
from producers.events import event_key

LEDGER_NAME = "bench.ledger.local"
TOPIC = "phi-access"
LOGS = 4
#: Event times span five years up to here (fixed, so a seed always makes the same data).
END = datetime(2026, 11, 1, tzinfo=UTC)
SPAN = timedelta(days=5 * 365)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CHUNK = 20_000
FACILITIES = 50
#: (role, user id prefix, users, organisation, has an NPI): 5,000 users in all.
ROLES = (
    ("radiologist", "rad", 1500, "Nocturne Teleradiology Group", True),
    ("referring-physician", "ref", 2500, None, True),
    ("technologist", "tech", 800, None, False),
    ("pacs-admin", "admin", 200, None, False),
)
#: Patient skew: (share of events, patients per log = per-log patients // divisor).
HOT = (0.02, 5000)
BUSY = (0.10, 200)
#: Within a role, user i is picked as int(n * u ** USER_SKEW): the first few are busiest.
USER_SKEW = 1.5
CITIES = (
    "boston", "tulsa", "phoenix", "chicago", "denver", "austin", "seattle", "miami",
    "atlanta", "omaha",
)  # fmt: skip
_STATES = ("MA", "OK", "AZ", "IL", "CO", "TX", "WA", "FL", "GA", "NE")
_FIRST = ("Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonah")
_LAST = ("Alvarez", "Brennan", "Chen", "Diallo", "Eriksen", "Fischer", "Gupta", "Haddad")


# ---------------------------------------------------------------------------- population


@dataclass(frozen=True, slots=True)
class Population:
    """Who and where, derived deterministically from N."""

    events: int

    @property
    def patients_per_log(self) -> int:
        return max(100, self.events // 10 // LOGS)

    def tier(self, share_divisor: int) -> int:
        return max(1, self.patients_per_log // share_divisor)

    @staticmethod
    def patient(k: int) -> tuple[str, str, str]:
        """(id, issuer, state) of patient k; patient k's events go to partition k % LOGS."""
        f = (k // LOGS) % FACILITIES
        return f"MRN{k:08d}", facility_id(f), _STATES[f % len(_STATES)]

    def busy_patients(self) -> list[str]:
        """Ids of the patients with hundreds of accesses each (both skew tiers)."""
        return [
            self.patient(i * LOGS + p)[0] for p in range(LOGS) for i in range(self.tier(BUSY[1]))
        ]


def facility_id(f: int) -> str:
    return f"fac{f:02d}-{CITIES[f % len(CITIES)]}"


def users() -> dict[str, list[dict[str, Any]]]:
    """Each role's users as Avro actor records (with a home network address)."""
    rng = random.Random(5)
    out: dict[str, list[dict[str, Any]]] = {}
    for r, (role, prefix, n, org, npi) in enumerate(ROLES):
        people = []
        for i in range(n):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            people.append(
                {
                    "user_id": f"{prefix}{i:04d}.{last.lower()}",
                    "name": f"{first} {last}",
                    "role": role,
                    "organization": org,
                    "npi": make_npi(rng) if npi else None,
                    "_address": f"10.{40 + r}.{i // 250}.{i % 250 + 1}",
                }
            )
        out[role] = people
    return out


# ---------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class Template:
    header: bytes  # C3 01 + fingerprint
    schema: dict[str, Any]  # parsed fastavro schema
    record: dict[str, Any]  # decoded Avro record
    relay: bool
    role: str
    kind: str
    dicom_event_id: str | None
    action: str | None
    outcome: str | None
    purpose_of_use: str | None
    time_us: int


def micros(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def templates(count: int, seed: int) -> list[Template]:
    """``count`` simulated events, encoded and classified exactly as the consumer would."""
    codec = Codec()
    parsed: dict[bytes, dict[str, Any]] = {
        s.fingerprint: cast(dict[str, Any], fastavro.parse_schema(dict(s.parsed)))
        for s in codec.schemas
    }
    out = []
    sim = Simulator(seed=seed, patients=200)
    for i, event in enumerate(sim.events(count)):
        value = codec.encode(event.stamped(producer_id="template", producer_seq=i))
        key = event_key(event).encode()
        record = KafkaRecord(topic=TOPIC, partition=0, offset=i, timestamp_ms=0,
                             timestamp_type=0, key=key, value=value)  # fmt: skip
        item = classify(record, codec)
        assert isinstance(item, Accepted), item
        schema, decoded = codec.decode_record(value)
        rec: dict[str, Any] = dict(decoded)  # a plain Avro record: fields by name
        relay = item.index.kind == "critical_result_relay"
        actor = rec["sender"] if relay else rec["actor"]
        out.append(
            Template(
                header=value[:10],
                schema=parsed[schema.fingerprint],
                record=rec,
                relay=relay,
                role=actor["role"],
                kind=item.index.kind,
                dicom_event_id=item.index.dicom_event_id,
                action=item.index.action,
                outcome=item.index.outcome,
                purpose_of_use=item.index.purpose_of_use,
                time_us=micros(rec["event_time"]),
            )
        )
    return out
