"""The producer library that PACS integrations embed: typed audit events, their Avro
codec, and emitters that deliver them to the ledger's Kafka topics.

Invariant: this package imports nothing else of this product (only the ``schemas``
data package), so a host can embed it alone; it never blocks its host beyond the
configured pushback and never crashes it with an unexpected exception type, only
``ProducerError`` subclasses; an event ``emit`` accepted is in Kafka or in the local,
fsynced spool, and reaches the ledger exactly once.

Everything a host uses is importable from here; the submodules are the implementation.
An asyncio host::

    from producers import Actor, Emitter, EmitterConfig, EventAction, Patient
    from producers import PhiAccessEvent

    config = EmitterConfig(
        bootstrap_servers="kafka.example.org:9093",
        producer_id="pacs-01",
        spool_dir="/var/lib/pacs/ledger-spool",
        producer_key_file="/etc/pacs/ledger-producer.key",
    )
    async with Emitter(config) as emitter:
        await emitter.emit(
            PhiAccessEvent(
                actor=Actor(user_id="dr.smith", role="radiologist"),
                action=EventAction.VIEW,
                patient=Patient(patient_id="MRN-1", state="CA"),
                ...
            )
        )

A threaded host uses ``SyncEmitter`` (same config, blocking ``emit``); a host whose
interpreter must stay lean (Orthanc) uses ``PipeEmitter``, which hands events to a child
process that owns the Kafka client. ``docs/producer.md`` is the integrator's guide.
"""

from producers.codec import Codec, PreparedEvent
from producers.emitter import Emitter, EmitterConfig, EmitterHealth
from producers.errors import (
    DecodeError,
    EmitterPushbackError,
    EmitterUnavailableError,
    EventValidationError,
    KafkaSettingsError,
    ProducerError,
    SpoolError,
    SpoolFullError,
)
from producers.events import (
    PURPOSES_OF_USE,
    AcrCategory,
    Actor,
    AttemptOutcome,
    AuditEvent,
    AuditLogUsed,
    CriticalResultRelay,
    DisclosedRange,
    EventAction,
    EventOutcome,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    Recipient,
    RelayAttempt,
    RelayMethod,
    RelayRecipient,
    SecurityEvent,
    Study,
    new_event_id,
    npi_checksum_ok,
    validate,
)
from producers.files import (
    DirectoryInUseError,
    DirectoryLock,
    atomic_write,
    fsync_directory,
    truncate_durably,
    write_all,
)
from producers.kafka_security import KafkaSecurity
from producers.lifecycle import AsyncLifecycle
from producers.pipe import MAX_PENDING as PIPE_MAX_PENDING
from producers.pipe import PipeEmitter
from producers.signing import ProducerKeyError, load_producer_key
from producers.sync import SyncEmitter

__all__ = [
    "PIPE_MAX_PENDING",
    "PURPOSES_OF_USE",
    "AcrCategory",
    "Actor",
    "AsyncLifecycle",
    "AttemptOutcome",
    "AuditEvent",
    "AuditLogUsed",
    "Codec",
    "CriticalResultRelay",
    "DecodeError",
    "DirectoryInUseError",
    "DirectoryLock",
    "DisclosedRange",
    "Emitter",
    "EmitterConfig",
    "EmitterHealth",
    "EmitterPushbackError",
    "EmitterUnavailableError",
    "EventAction",
    "EventOutcome",
    "EventValidationError",
    "Facility",
    "KafkaSecurity",
    "KafkaSettingsError",
    "LedgerQuery",
    "Patient",
    "PhiAccessEvent",
    "PipeEmitter",
    "PreparedEvent",
    "ProducerError",
    "ProducerKeyError",
    "Recipient",
    "RelayAttempt",
    "RelayMethod",
    "RelayRecipient",
    "SecurityEvent",
    "SpoolError",
    "SpoolFullError",
    "Study",
    "SyncEmitter",
    "atomic_write",
    "fsync_directory",
    "load_producer_key",
    "new_event_id",
    "npi_checksum_ok",
    "truncate_durably",
    "validate",
    "write_all",
]
