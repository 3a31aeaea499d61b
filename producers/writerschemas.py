"""The writer schemas this package ships: each one's single-object fingerprint, full
name, Parsing Canonical Form and parsed form, loaded from the ``schemas`` package.

Invariant: a ``WriterSchema`` is immutable and its fingerprint is the CRC-64-AVRO of
its Parsing Canonical Form, little-endian, as single-object encoding puts it on the
wire; ``stamp_in_place`` says whether a schema has the producer stamp where
``Codec.prepare`` splices it (right after ``event_id`` and ``event_time``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import fastavro
from fastavro.schema import fingerprint as avro_fingerprint
from fastavro.schema import to_parsing_canonical_form

import schemas

__all__ = ["WriterSchema", "load_shipped_schemas", "schema_fingerprint", "stamp_in_place"]

#: The fields a prepared event leaves out, in the order every writer schema has them.
_STAMP_FIELDS: Final = (("producer_id", "string"), ("producer_seq", "long"))


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterSchema:
    """One known writer schema: its fingerprint, full name and canonical form."""

    fingerprint: bytes
    full_name: str
    canonical_form: str
    schema_json: str
    parsed: Mapping[str, object]


def stamp_in_place(parsed: Mapping[str, object]) -> bool:
    fields = parsed.get("fields")
    if not isinstance(fields, list) or len(fields) < 4:
        return False
    names = [(f.get("name"), f.get("type")) for f in fields[:4] if isinstance(f, dict)]
    if len(names) != 4 or tuple(names[2:]) != _STAMP_FIELDS:
        return False
    # prepare() steps over a string (event_id) and a long (event_time) to find the stamp.
    kinds = [t.get("type") if isinstance(t, dict) else t for _, t in names[:2]]
    return kinds == ["string", "long"]


def schema_fingerprint(schema_json: Mapping[str, object]) -> tuple[bytes, str]:
    """Return (8-byte single-object fingerprint, parsing canonical form) of a schema."""
    canonical = to_parsing_canonical_form(fastavro.parse_schema(dict(schema_json)))
    # fastavro renders CRC-64-AVRO as the hex of the little-endian bytes, which is
    # exactly the order single-object encoding puts on the wire.
    return bytes.fromhex(avro_fingerprint(canonical, "CRC-64-AVRO")), canonical


def _parse(schema_json: Mapping[str, object]) -> dict[str, object]:
    parsed = fastavro.parse_schema(dict(schema_json))
    if not isinstance(parsed, dict):
        raise TypeError("a writer schema must be a JSON object (an Avro record)")
    return parsed


def load_shipped_schemas(
    names: Iterable[str] = schemas.ALL_SCHEMA_FILES,
) -> tuple[WriterSchema, ...]:
    """The named writer schemas shipped in the ``schemas`` package (by default every
    schema: the audit events' and the registry change's)."""
    out = []
    for name in names:
        raw = schemas.load_schema_json(name)
        fp, canonical = schema_fingerprint(raw)
        parsed = _parse(raw)
        out.append(
            WriterSchema(
                fingerprint=fp,
                full_name=str(parsed["name"]),
                canonical_form=canonical,
                schema_json=json.dumps(raw, separators=(",", ":"), sort_keys=True),
                parsed=MappingProxyType(parsed),
            )
        )
    return tuple(out)
