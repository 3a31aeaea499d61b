"""The ledger's public ingestion API: what a consumer hands the ledger to append.

Invariant: a batch covers a contiguous run of one partition's offsets, in order,
and each record in it is exactly one of ``Accepted`` (becomes a leaf, unless its
event id is already recorded with the same bytes) or ``Rejected`` (goes to
quarantine with its reason). The ledger never drops a record of a batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ledger.audit.producerauth import Seal
from ledger.log.leaf import KafkaRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexFields:
    """The queryable projection of one event (see the ``events`` table)."""

    event_id: uuid.UUID
    kind: str
    event_time: datetime
    producer_id: str
    producer_seq: int
    facility_id: str
    patient_id: str | None  # None for audit_log_used, security_event and v2 phi_access
    patient_issuer: str | None
    patient_state: str | None
    user_id: str
    user_name: str | None
    user_role: str | None
    user_org: str | None
    dicom_event_id: str | None
    action: str | None
    outcome: str | None
    study_uid: str | None
    accession: str | None
    network_address: str | None
    purpose_of_use: str | None
    #: What a read of the ledger disclosed: canonical (origin, first leaf, end leaf)
    #: ranges (``read_disclosures``); empty for every other kind.
    disclosed: tuple[tuple[str, int, int], ...] = ()
    #: The patients an access answer returned (PhiAccessEvent v2 ``disclosed``), in the
    #: leaf's canonical order: (issuer, id, state, study UIDs) rows of ``event_patients``;
    #: empty for every other kind.
    patients: tuple[tuple[str | None, str, str | None, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """A record that decoded and validated; it becomes a leaf."""

    record: KafkaRecord
    leaf: bytes
    index: IndexFields
    #: (seal id, entry) of the producer seal it was authenticated with
    #: (``ledger.audit.producerauth``); stored in the leaf's row for offline checks.
    seal_ref: tuple[bytes, int] | None = None
    #: The verified seal this record carried, stored with its batch.
    seal: Seal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """A record that cannot be appended; it goes to quarantine with a specific reason."""

    record: KafkaRecord
    reason: str
    detail: str
    #: Also raise a security alert (failed producer authentication).
    alert: bool = False
    #: The record's producer-authentication envelope, kept with it in quarantine.
    envelope: bytes | None = None
    #: The verified seal this record carried: stored even though the record is refused,
    #: since the other records of its batch refer to it.
    seal: Seal | None = None


BatchItem = Accepted | Rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterSchemaInfo:
    fingerprint: bytes
    full_name: str
    canonical_form: str
    schema_json: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    """What one append did. ``skipped`` counts records already applied earlier."""

    log_id: int
    next_offset: int
    appended: int
    duplicates: int
    quarantined: int
    skipped: int
    first_leaf: int
    alerts: int = 0


class Appender(Protocol):
    """The port through which a consumer appends to the ledger."""

    async def register_schemas(self, schemas: Sequence[WriterSchemaInfo]) -> None: ...

    async def committed_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """The next offset to consume for each partition that has any committed batch."""
        ...

    async def claim(self, *, topic: str, partition: int, writer_id: str) -> int:
        """Become the log's only writer: returns a new epoch that fences every older one."""
        ...

    async def append(
        self,
        *,
        topic: str,
        partition: int,
        items: Sequence[BatchItem],
        epoch: int | None = None,
    ) -> AppendResult:
        """Append one partition's batch atomically, together with its Kafka position.

        With ``epoch``, raises ``FencedError`` if another writer has claimed the log since.
        """
        ...


class Checkpointing(Protocol):
    """The port through which a consumer drives checkpoint signing."""

    @property
    def sweep_interval(self) -> float:
        """Seconds between sweeps for logs whose unsigned leaves have waited long enough."""
        ...

    async def after_append(self, log_id: int, size: int) -> object:
        """Sign the log at ``size`` if a checkpoint is due; cheap when it is not."""
        ...

    async def checkpoint_all_due(self) -> Sequence[object]: ...
