"""FHIR R4 AuditEvent views of stored ledger events (IHE BALP aligned), and FHIR search.

This package owns the ledger's FHIR face: ``audit_event`` (a stored record as an AuditEvent
carrying its ledger position), ``parse_search`` (strict ``GET /fhir/AuditEvent`` parameters,
from the one table ``catalog``; the ITI-81 narrowing in ``filters``), ``_summary`` /
``_elements`` / ``_format`` (``shaping``), the CapabilityStatement (``capability``), batch
Bundles at the base (``batch``), the searchset and batch-response Bundles, and
OperationOutcome. Everything here is pure (no
I/O, no clock) and works on the JSON-safe records ``ledger.audit.records.SchemaSet.decode``
returns; it may import ``ledger.audit.records``, ``ledger.audit.query``, ``ledger.errors`` and
the data package ``schemas`` (``schemas.fhir`` is the vocabulary it shares with the inbound
feed, ``integrations.fhir``), never the producer library. The mapping is described in
docs/design/fhir.md.
"""

from __future__ import annotations

from ledger.audit.fhir.auditevent import audit_event
from ledger.audit.fhir.batch import MAX_BATCH_ENTRIES, NOT_SUPPORTED, EntryRequest, batch_requests
from ledger.audit.fhir.bundles import EntryOutcome, batch_response_bundle, searchset_bundle
from ledger.audit.fhir.capability import FHIR_VERSION, capability_statement
from ledger.audit.fhir.catalog import RESULT_PARAMETERS, SEARCH_PARAMETERS, SearchParameter
from ledger.audit.fhir.dates import DateBound
from ledger.audit.fhir.filters import Narrowing, matches
from ledger.audit.fhir.outcomes import Issue, operation_outcome
from ledger.audit.fhir.search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    AuditEventSearch,
    TypeCode,
    parse_search,
)
from ledger.audit.fhir.shaping import NOT_ACCEPTABLE, Shape, check_format, parse_shape, subset
from ledger.audit.fhir.stored import format_instant
from ledger.audit.fhir.vocabulary import (
    ACCESS_SCHEMA,
    AUDIT_ENTITY_TYPE,
    AUDIT_LOG_USED_SCHEMA,
    DCM,
    DEFAULT_BASE_URL,
    HL7_PURPOSES_OF_USE,
    RELAY_SCHEMA,
    SECURITY_SCHEMA,
    V3_ACT_REASON,
    V3_PARTICIPATION_TYPE,
    FhirNamespace,
    Resource,
    namespace,
)

__all__ = [
    "ACCESS_SCHEMA",
    "AUDIT_ENTITY_TYPE",
    "AUDIT_LOG_USED_SCHEMA",
    "DCM",
    "DEFAULT_BASE_URL",
    "DEFAULT_COUNT",
    "FHIR_VERSION",
    "HL7_PURPOSES_OF_USE",
    "MAX_BATCH_ENTRIES",
    "MAX_COUNT",
    "NOT_ACCEPTABLE",
    "NOT_SUPPORTED",
    "RELAY_SCHEMA",
    "RESULT_PARAMETERS",
    "SEARCH_PARAMETERS",
    "SECURITY_SCHEMA",
    "V3_ACT_REASON",
    "V3_PARTICIPATION_TYPE",
    "AuditEventSearch",
    "DateBound",
    "EntryOutcome",
    "EntryRequest",
    "FhirNamespace",
    "Issue",
    "Narrowing",
    "Resource",
    "SearchParameter",
    "Shape",
    "TypeCode",
    "audit_event",
    "batch_requests",
    "batch_response_bundle",
    "capability_statement",
    "check_format",
    "format_instant",
    "matches",
    "namespace",
    "operation_outcome",
    "parse_search",
    "parse_shape",
    "searchset_bundle",
    "subset",
]
