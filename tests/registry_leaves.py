"""Registry changes appended to a scratch ledger's registry log the way the consumer
appends them (real leaves, encoded by the producer library, through the real appender),
and signed, without the Kafka path: for tests of what reads the registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ledger.audit.ingest import Accepted, IndexFields, WriterSchemaInfo
from ledger.log.keys import load_signers
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from producers import RegistryChange, registry_codec
from tests.support import APPENDED_MS

CODEC = registry_codec()
LEDGER_NAME = "test.ledger.local"


async def _index_kind(conn: asyncpg.Connection | PoolConnectionProxy) -> str:
    """``registry_change`` once the event index knows it (migration 0014, the registry
    pipeline's); before that a patient-less ``phi_access`` row, which 0010 allows."""
    definition = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'events_kind_check'"
    )
    return "registry_change" if "registry_change" in str(definition) else "phi_access"


def _item(change: RegistryChange, *, topic: str, offset: int, kind: str) -> Accepted:
    stamped = dataclasses.replace(change, producer_id="registry-test", producer_seq=offset + 1)
    record = KafkaRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp_ms=APPENDED_MS,
        timestamp_type=0,
        key=change.record.record_id.encode(),
        value=CODEC.encode(stamped),
    )
    index = IndexFields(
        event_id=change.event_id, kind=kind, event_time=change.event_time,
        producer_id="registry-test", producer_seq=offset + 1, facility_id="",
        patient_id=None, patient_issuer=None, patient_state=None,
        user_id=change.author.user_id, user_name=None, user_role=change.author.role,
        user_org=None, dicom_event_id=None, action=None, outcome=None, study_uid=None,
        accession=None, network_address=None, purpose_of_use=None,
    )  # fmt: skip
    return Accepted(record=record, leaf=encode_leaf(record), index=index)


async def append_registry(
    dsn: str,
    topic: str,
    changes: Sequence[RegistryChange],
    *,
    first_offset: int = 0,
    signer_key_file: str | None = None,
) -> int:
    """Append ``changes`` at ``first_offset`` of partition 0 of ``topic`` (the registry
    log, origin ``test.ledger.local/<topic>/0``); sign the log's new size when
    ``signer_key_file`` is given. Returns the log id."""
    async with PostgresAppender(
        dsn=dsn, ledger_name=LEDGER_NAME, reference_topics=frozenset({topic})
    ) as app:
        await app.register_schemas(
            [
                WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                                 canonical_form=s.canonical_form, schema_json=s.schema_json)
                for s in CODEC.schemas
            ]
        )  # fmt: skip
        async with app.pool.acquire() as conn:
            kind = await _index_kind(conn)
        items = [
            _item(c, topic=topic, offset=first_offset + i, kind=kind) for i, c in enumerate(changes)
        ]
        result = await app.append(topic=topic, partition=0, items=items)
        if result.appended != len(changes):
            raise AssertionError(f"appended {result.appended} of {len(changes)}")
        if signer_key_file is not None:
            checkpointer = Checkpointer(
                pool=app.pool,
                signers=load_signers(signer_key_file),
                policy=CheckpointPolicy(every_leaves=1, every_ms=0),
            )
            await checkpointer.checkpoint(result.log_id, force=True)
        return result.log_id
