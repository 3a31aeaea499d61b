"""Avro schemas of the audit events, shipped as package data.

Invariant: this package holds data only (``*.avsc`` files and this loader); it
imports nothing from the rest of the product, so any layer may read it.
"""

from __future__ import annotations

import json
from importlib.resources import files

PHI_ACCESS_V1 = "phi_access_event.v1.avsc"
CRITICAL_RESULT_RELAY_V1 = "critical_result_relay.v1.avsc"
AUDIT_LOG_USED_V1 = "audit_log_used.v1.avsc"
#: Adds ``disclosed``: the ledger positions a read returned (docs/read-attribution.md).
AUDIT_LOG_USED_V2 = "audit_log_used.v2.avsc"
SECURITY_EVENT_V1 = "security_event.v1.avsc"
#: The patient becomes optional and ``disclosed`` lists the patients an answer returned
#: (docs/design/multi-patient-events.md).
PHI_ACCESS_V2 = "phi_access_event.v2.avsc"
#: One change to the compliance registry (docs/design/compliance-registry.md).
REGISTRY_CHANGE_V1 = "registry_change.v1.avsc"
#: Adds ``transport``: the channel the access travelled on and whether it was encrypted
#: (docs/design/transport.md).
PHI_ACCESS_V3 = "phi_access_event.v3.avsc"

ALL_SCHEMA_FILES: tuple[str, ...] = (
    PHI_ACCESS_V1,
    CRITICAL_RESULT_RELAY_V1,
    AUDIT_LOG_USED_V1,
    SECURITY_EVENT_V1,
    # Decoded like every older version; new AuditLogUsed events are written with it.
    AUDIT_LOG_USED_V2,
    # v1 and v2 leaves still decode with their own schema.
    PHI_ACCESS_V2,
    # New PhiAccessEvents are written with it (the last listed for its name).
    PHI_ACCESS_V3,
    # The compliance registry's changes: the consumer accepts them on a registry topic
    # only (``wrong_topic`` elsewhere) and projects them as ``registry_change`` rows.
    REGISTRY_CHANGE_V1,
)

#: The registry's schemas (a subset of ``ALL_SCHEMA_FILES``), versioned by the same rules
#: (README.md): docs/design/compliance-registry.md.
REGISTRY_SCHEMA_FILES: tuple[str, ...] = (REGISTRY_CHANGE_V1,)


def load_schema_json(name: str) -> dict[str, object]:
    """Return the parsed JSON of one schema file shipped in this package."""
    text = files(__name__).joinpath(name).read_text(encoding="utf-8")
    loaded: dict[str, object] = json.loads(text)
    return loaded
