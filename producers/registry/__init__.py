"""The compliance registry's producer side: organizations, BAAs, workforce members, state
licenses and credentials, each change a ``RegistryChange`` event (schema
``philedger.registry.RegistryChange``), and the loader of registry files.

Owns the record model (``model``), its Avro mapping (``records``), its validation
(``validation``) and the CSV/JSON file loader (``files``, ``crosscheck``); it imports only
``producers.events`` (shared field rules), ``producers.errors`` and the standard library.
The codec (``producers.codec``) encodes and decodes changes. Design:
docs/design/compliance-registry.md.
"""

from producers.registry.crosscheck import KnownRegistryIds
from producers.registry.files import (
    MAX_FILE_BYTES,
    MAX_LINES,
    load_registry_bytes,
    load_registry_files,
    parse_registry_bytes,
    read_registry_file,
)
from producers.registry.model import (
    Author,
    Baa,
    Credential,
    Organization,
    OrganizationKind,
    RegistryChange,
    RegistryKind,
    RegistryOperation,
    RegistryRecord,
    StateLicense,
    WorkforceMember,
    kind_of,
)
from producers.registry.records import (
    REGISTRY_SCHEMA_NAME,
    registry_from_record,
    registry_to_record,
)
from producers.registry.validation import (
    US_STATES,
    validate_change,
    validate_registry_record,
    validated_registry_record,
)

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_LINES",
    "REGISTRY_SCHEMA_NAME",
    "US_STATES",
    "Author",
    "Baa",
    "Credential",
    "KnownRegistryIds",
    "Organization",
    "OrganizationKind",
    "RegistryChange",
    "RegistryKind",
    "RegistryOperation",
    "RegistryRecord",
    "StateLicense",
    "WorkforceMember",
    "kind_of",
    "load_registry_bytes",
    "load_registry_files",
    "parse_registry_bytes",
    "read_registry_file",
    "registry_from_record",
    "registry_to_record",
    "validate_change",
    "validate_registry_record",
    "validated_registry_record",
]
