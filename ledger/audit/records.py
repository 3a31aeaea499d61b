"""Decoding stored messages with the writer schemas recorded in the ledger.

Invariant: the ledger decodes every message it stores without the producer
library: the single-object header names the writer schema by fingerprint, and
the schema's JSON is stored beside the leaves (``writer_schemas``). A schema is
used only if its Parsing Canonical Form hashes to its stored fingerprint.
Decoded values are rendered JSON-safe (UUIDs and datetimes as ISO strings).
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import fastavro
from fastavro.schema import fingerprint as avro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from ledger.errors import MalformedInputError, VerificationError

MAGIC: Final = b"\xc3\x01"
HEADER_LEN: Final = 10

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSchema:
    fingerprint: bytes
    full_name: str
    schema_json: str


def fingerprint_of(schema_json: str) -> bytes:
    """CRC-64-AVRO of the schema's Parsing Canonical Form, in wire (little-endian) order."""
    try:
        parsed = fastavro.parse_schema(json.loads(schema_json))
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedInputError(f"not an Avro schema: {exc}") from exc
    return bytes.fromhex(avro_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


class SchemaSet:
    """Writer schemas by fingerprint, each checked against its fingerprint."""

    __slots__ = ("_names", "_parsed")

    def __init__(self, schemas: Iterable[StoredSchema]) -> None:
        self._parsed: dict[bytes, dict[str, object]] = {}
        self._names: dict[bytes, str] = {}
        for s in schemas:
            actual = fingerprint_of(s.schema_json)
            if actual != s.fingerprint:
                raise VerificationError(
                    f"stored schema {s.full_name} has fingerprint {s.fingerprint.hex()} "
                    f"but its canonical form hashes to {actual.hex()}"
                )
            parsed = fastavro.parse_schema(json.loads(s.schema_json))
            if not isinstance(parsed, dict):
                raise MalformedInputError(f"stored schema {s.full_name} is not a record schema")
            self._parsed[s.fingerprint] = parsed
            self._names[s.fingerprint] = s.full_name

    def name_of(self, fingerprint: bytes) -> str | None:
        return self._names.get(fingerprint)

    def decode(self, message: bytes) -> tuple[str, dict[str, JsonValue]]:
        """Decode one single-object message to (schema full name, JSON-safe record)."""
        name, record = self.decode_native(message)
        rendered = to_json(record)
        if not isinstance(rendered, dict):
            raise MalformedInputError("Avro body is not a record")
        return name, rendered

    def decode_native(self, message: bytes) -> tuple[str, dict[str, Any]]:
        """Decode one single-object message to (schema full name, record) with the
        values fastavro returns (``datetime`` for timestamps, ``date``, ``UUID``): for
        readers that never serialise the record (the rules evaluator), which skips
        rendering it JSON-safe."""
        if len(message) < HEADER_LEN or message[:2] != MAGIC:
            raise MalformedInputError("not an Avro single-object message")
        fp = message[2:HEADER_LEN]
        schema = self._parsed.get(fp)
        if schema is None:
            raise MalformedInputError(f"unknown writer schema fingerprint {fp.hex()}")
        buf = io.BytesIO(message)
        buf.seek(HEADER_LEN)
        try:
            record = fastavro.schemaless_reader(buf, schema, None)
        except Exception as exc:  # fastavro raises many kinds on hostile bytes
            raise MalformedInputError(f"malformed Avro body: {type(exc).__name__}") from exc
        if buf.tell() != len(message):
            raise MalformedInputError("trailing bytes after the Avro body")
        if type(record) is not dict:
            raise MalformedInputError("Avro body is not a record")
        return self._names[fp], record


_SCALARS: Final = frozenset({str, int, bool, float, type(None)})


def to_json(value: object) -> JsonValue:
    """Render a decoded Avro value JSON-safe (the exact types fastavro returns are
    dispatched first: the rules evaluator renders every leaf it reads)."""
    t = type(value)
    if t in _SCALARS:
        return value  # type: ignore[return-value]
    if t is dict:
        return {
            (k if type(k) is str else str(k)): (v if type(v) in _SCALARS else to_json(v))
            for k, v in value.items()  # type: ignore[attr-defined]
        }
    if t is list:
        return [v if type(v) in _SCALARS else to_json(v) for v in value]  # type: ignore[attr-defined]
    return _to_json_generic(value)


def _to_json_generic(value: object) -> JsonValue:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return str(value)
