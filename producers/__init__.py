"""The producer library that PACS integrations embed: typed audit events, their Avro
codec, and emitters that deliver them to the ledger's Kafka topics.

Invariant: this package imports nothing else of this product (only the ``schemas``
data package), so a host can embed it alone; it never blocks its host beyond the
configured pushback and never crashes it with an unexpected exception type, only
``ProducerError`` subclasses; an event ``emit`` accepted is in Kafka or in the local,
fsynced spool, and reaches the ledger exactly once.

Everything a host uses is importable from here; the submodules are the implementation.
An asyncio host (``Emitter``; configure ``kafka_security`` too, docs/producer.md)::

    from producers import Actor, Emitter, EmitterConfig, EventAction, Facility, Patient
    from producers import PhiAccessEvent

    config = EmitterConfig(
        bootstrap_servers="kafka.example.org:9093",
        producer_id="viewer-01",
        spool_dir="/var/lib/pacs/ledger-spool",
        producer_key_file="/etc/pacs/viewer-01.key",
    )
    async with Emitter(config) as emitter:
        await emitter.emit(
            PhiAccessEvent(
                facility=Facility(id="stmarys-boston"),
                actor=Actor(user_id="dr.smith", role="radiologist"),
                dicom_event_id="110103",  # DICOM Instances Accessed
                action=EventAction.READ,
                patient=Patient(id="MRN-1", issuer="stmarys-boston", state="CA"),
            )
        )

A threaded host uses ``SyncEmitter`` (same config, ``with SyncEmitter(config)``, an
``emit`` any thread may call); a host whose interpreter must stay lean (Orthanc) uses
``PipeEmitter``, which hands events to a child process that owns the Kafka client.
The compliance registry's changes (``RegistryChange``) and their CSV/JSON loader
(``load_registry_files``) are here too; ``registry_codec()`` encodes and decodes them
(docs/design/compliance-registry.md).
``docs/producer.md`` is the integrator's guide; tests/e2e/test_producer_quickstart.py runs
this example.
"""

from producers.codec import Codec, PreparedEvent, registry_codec
from producers.emitter import Emitter, EmitterConfig, EmitterHealth
from producers.errors import (
    DecodeError,
    EmitterPushbackError,
    EmitterUnavailableError,
    EventValidationError,
    KafkaSettingsError,
    ProducerError,
    RegistryFileError,
    RegistryProblem,
    RegistryValidationError,
    SpoolError,
    SpoolFullError,
)
from producers.events import (
    MAX_DISCLOSED_PATIENTS,
    MAX_DISCLOSED_STUDIES,
    PURPOSES_OF_USE,
    AcrCategory,
    Actor,
    AttemptOutcome,
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
    Recipient,
    RelayAttempt,
    RelayMethod,
    RelayRecipient,
    SecurityEvent,
    Study,
    Transport,
    TransportChannel,
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
from producers.registry import MAX_FILE_BYTES as MAX_REGISTRY_FILE_BYTES
from producers.registry import (
    Author,
    Baa,
    Credential,
    KnownRegistryIds,
    Organization,
    OrganizationKind,
    RegistryChange,
    RegistryKind,
    RegistryOperation,
    RegistryRecord,
    StateLicense,
    WorkforceMember,
    load_registry_bytes,
    load_registry_files,
    validate_change,
)
from producers.signing import ProducerKeyError, load_producer_key
from producers.sync import SyncEmitter

__all__ = [
    "MAX_DISCLOSED_PATIENTS",
    "MAX_DISCLOSED_STUDIES",
    "MAX_REGISTRY_FILE_BYTES",
    "PIPE_MAX_PENDING",
    "PURPOSES_OF_USE",
    "AcrCategory",
    "Actor",
    "AsyncLifecycle",
    "AttemptOutcome",
    "AuditEvent",
    "AuditLogUsed",
    "Author",
    "Baa",
    "Codec",
    "Credential",
    "CriticalResultRelay",
    "DecodeError",
    "DirectoryInUseError",
    "DirectoryLock",
    "DisclosedPatient",
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
    "KnownRegistryIds",
    "LedgerQuery",
    "Organization",
    "OrganizationKind",
    "Patient",
    "PhiAccessEvent",
    "PipeEmitter",
    "PreparedEvent",
    "ProducerError",
    "ProducerKeyError",
    "Recipient",
    "RegistryChange",
    "RegistryFileError",
    "RegistryKind",
    "RegistryOperation",
    "RegistryProblem",
    "RegistryRecord",
    "RegistryValidationError",
    "RelayAttempt",
    "RelayMethod",
    "RelayRecipient",
    "SecurityEvent",
    "SpoolError",
    "SpoolFullError",
    "StateLicense",
    "Study",
    "SyncEmitter",
    "Transport",
    "TransportChannel",
    "WorkforceMember",
    "atomic_write",
    "fsync_directory",
    "load_producer_key",
    "load_registry_bytes",
    "load_registry_files",
    "new_event_id",
    "npi_checksum_ok",
    "registry_codec",
    "truncate_durably",
    "validate",
    "validate_change",
    "write_all",
]
