"""The DICOM audit proxy: a DIMSE proxy (pynetdicom) in front of any PACS that relays
C-ECHO, C-FIND (patient and study root, modality worklist), C-MOVE, C-GET and C-STORE
and records each operation as a ``DicomOperation`` for an ``OperationRecorder``; the
``LedgerRecorder`` writes each one to the ledger as a PhiAccessEvent v2 (``eventmap``).

It owns the listening side (``transport``, ``tls``), the relay (``handlers``,
``upstream``) and what it records (``operations``, ``identifiers``, ``recording``); it
imports pynetdicom, pydicom and the producer library's public surface only. Design and
statuses: docs/dicom-proxy.md.
"""

from integrations.dicomproxy.config import (
    Destination,
    Limits,
    ListenConfig,
    ProxyConfig,
    TlsFiles,
    UpstreamConfig,
    load_config,
    parse_config,
)
from integrations.dicomproxy.errors import (
    DicomProxyConfigError,
    DicomProxyError,
    RecorderUnavailable,
)
from integrations.dicomproxy.eventmap import event_of
from integrations.dicomproxy.ledgerconfig import LedgerConfig
from integrations.dicomproxy.ledgerrecorder import LedgerRecorder
from integrations.dicomproxy.operations import (
    DicomOperation,
    OperationKind,
    OperationRecorder,
    PatientRef,
    SubOperations,
)
from integrations.dicomproxy.recorders import LoggingRecorder, MemoryRecorder
from integrations.dicomproxy.service import DicomProxy, serve

__all__ = [
    "Destination",
    "DicomOperation",
    "DicomProxy",
    "DicomProxyConfigError",
    "DicomProxyError",
    "LedgerConfig",
    "LedgerRecorder",
    "Limits",
    "ListenConfig",
    "LoggingRecorder",
    "MemoryRecorder",
    "OperationKind",
    "OperationRecorder",
    "PatientRef",
    "ProxyConfig",
    "RecorderUnavailable",
    "SubOperations",
    "TlsFiles",
    "UpstreamConfig",
    "event_of",
    "load_config",
    "parse_config",
    "serve",
]
