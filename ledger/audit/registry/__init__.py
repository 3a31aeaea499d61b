"""The compliance registry as the ledger knows it: organizations, BAAs, workforce
members, state licenses and credentials, each with the ledger position of the change
that set it, and the state as known at any instant.

Pure: built from appended RegistryChange leaves (``parse_change``) by whoever reads
them (the rules evaluator, ``ledger registry show``, the API); it imports
``ledger.audit`` and ``ledger.errors`` only. Design: docs/design/compliance.md and
docs/design/compliance-registry.md.
"""

from __future__ import annotations

from ledger.audit.registry.model import (
    REGISTRY_CHANGE,
    Baa,
    Credential,
    License,
    Member,
    Organization,
    OrgKind,
    RegistryChangeRecord,
    RegistryEntry,
    RegistryRecord,
    identity_of,
    in_period,
    parse_change,
)
from ledger.audit.registry.timeline import RegistrySnapshot, RegistryTimeline, RegistryView

__all__ = [
    "REGISTRY_CHANGE",
    "Baa",
    "Credential",
    "License",
    "Member",
    "OrgKind",
    "Organization",
    "RegistryChangeRecord",
    "RegistryEntry",
    "RegistryRecord",
    "RegistrySnapshot",
    "RegistryTimeline",
    "RegistryView",
    "identity_of",
    "in_period",
    "parse_change",
]
