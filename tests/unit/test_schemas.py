"""Published schemas are immutable: their fingerprints are pinned here and in schemas/README.md."""

from __future__ import annotations

from pathlib import Path

import fastavro

import schemas
from producers.codec import Codec, load_shipped_schemas

PINNED = [
    ("philedger.audit.PhiAccessEvent", "ee6e393ef1d478ae"),
    ("philedger.audit.CriticalResultRelay", "69822b0cb223d1dc"),
    ("philedger.audit.AuditLogUsed", "12d031c13ce628ed"),
    ("philedger.audit.SecurityEvent", "e6a9ad8d8576fb89"),
    ("philedger.audit.AuditLogUsed", "c99b86cb05106cbe"),  # v2: adds ``disclosed``
    ("philedger.audit.PhiAccessEvent", "1f7e8aa358e48ee9"),  # v2: optional patient, disclosed
    ("philedger.audit.PhiAccessEvent", "e6ba5b1e5a454708"),  # v3: transport
    ("philedger.registry.RegistryChange", "9186b9f685e14526"),
]


def test_published_fingerprints_are_unchanged() -> None:
    assert [(s.full_name, s.fingerprint.hex()) for s in load_shipped_schemas()] == PINNED


def test_readme_lists_every_fingerprint() -> None:
    readme = (Path(schemas.__file__).parent / "README.md").read_text()
    for _, fingerprint in PINNED:
        assert f"`{fingerprint}`" in readme


def test_stored_schema_json_reproduces_the_fingerprint() -> None:
    # What the consumer stores in writer_schemas must hash back to the wire fingerprint.
    from ledger.audit.records import fingerprint_of

    for s in Codec().schemas:
        assert fingerprint_of(s.schema_json) == s.fingerprint
        assert "__fastavro_parsed" not in s.schema_json


def _nullable_fields_without_default(record: dict[str, object]) -> list[str]:
    missing = []
    for field in record.get("fields", []):  # type: ignore[attr-defined]
        ftype = field["type"]
        if isinstance(ftype, list) and "null" in ftype and "default" not in field:
            missing.append(field["name"])
        for candidate in ftype if isinstance(ftype, list) else [ftype]:
            if isinstance(candidate, dict) and candidate.get("type") == "record":
                missing += _nullable_fields_without_default(candidate)
    return missing


def test_every_optional_field_has_a_default() -> None:
    # Evolution rule 1 depends on defaults; a nullable field without one is a mistake.
    for name in schemas.ALL_SCHEMA_FILES:
        raw = schemas.load_schema_json(name)
        fastavro.parse_schema(raw)
        assert _nullable_fields_without_default(raw) == [], name


def test_the_default_check_catches_a_missing_default() -> None:
    bad = {"type": "record", "name": "X", "fields": [{"name": "a", "type": ["null", "string"]}]}
    assert _nullable_fields_without_default(bad) == ["a"]
