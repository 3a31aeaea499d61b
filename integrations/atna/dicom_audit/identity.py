"""Who an event of a message is: its deterministic id, and the private ledger object.

Invariant: the ``i``-th event (0-based) of a received message gets the UUIDv5 (SHA-1,
RFC 4122 section 4.3) of ``ATNA_NAMESPACE`` and the message bytes, with a BOM and
trailing white space removed, followed for ``i > 0`` by a NUL and ``i`` in decimal. A
message this package wrote carries its event id, and what DICOM has no element for, in
its *ledger object* instead (``LedgerObject``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Final

from integrations.atna.dicom_audit.model import (
    ATNA_NAMESPACE,
    LEDGER_OBJECT_CODE,
    ParticipantObject,
)
from integrations.errors import AtnaUnmappableError
from schemas import dicom

__all__ = ["LedgerObject", "event_id_for", "is_ledger", "unmappable", "utf8_text"]

_TRAILING_SPACE: Final = b" \t\r\n"
_UTF8_BOM: Final = b"\xef\xbb\xbf"


def unmappable(reason: str, problem: str, field: str | None = None) -> AtnaUnmappableError:
    return AtnaUnmappableError(f"DICOM audit message: {problem}", reason=reason, field=field)


def _identity_bytes(payload: bytes) -> bytes:
    body = payload[3:] if payload.startswith(_UTF8_BOM) else payload
    return body.rstrip(_TRAILING_SPACE)


def event_id_for(payload: bytes, index: int = 0) -> uuid.UUID:
    """The event id of the ``index``-th event of a received message (see the module doc)."""
    name = _identity_bytes(payload)
    if index:
        name += b"\x00%d" % index
    digest = hashlib.sha1(ATNA_NAMESPACE.bytes + name, usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


def utf8_text(value: bytes, field: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise unmappable("invalid_event", f"{field} is not UTF-8 text", field) from exc


class LedgerObject:
    """The private ledger object of a message this module wrote."""

    def __init__(self, obj: ParticipantObject) -> None:
        text = obj.object_id
        if not text.startswith("urn:uuid:"):
            raise unmappable("invalid_event", "the ledger object needs a urn:uuid: id")
        try:
            self.event_id = uuid.UUID(text.removeprefix("urn:uuid:"))
        except ValueError as exc:
            raise unmappable("invalid_event", "the ledger object's id is not a UUID") from exc
        self.values: dict[str, str] = {}
        #: Every value of each plain detail, in order (``values`` keeps the last).
        self.multi: dict[str, list[str]] = {}
        self.pairs: dict[str, list[tuple[str, str]]] = {}
        for key, raw in obj.details:
            value = utf8_text(raw, f"ledger detail {key}")
            if key in ("detail", "query-parameter"):
                try:
                    pair = json.loads(value)
                except ValueError as exc:
                    raise unmappable("invalid_event", f"ledger {key} is not JSON") from exc
                if not (
                    isinstance(pair, list)
                    and len(pair) == 2
                    and all(isinstance(p, str) for p in pair)
                ):
                    raise unmappable("invalid_event", f"ledger {key} must be [key, value]")
                self.pairs.setdefault(key, []).append((pair[0], pair[1]))
            else:
                self.values[key] = value
                self.multi.setdefault(key, []).append(value)

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def integer(self, key: str) -> int | None:
        value = self.values.get(key)
        if value is None:
            return None
        if not value.isascii() or not value.lstrip("-").isdigit():
            raise unmappable("invalid_event", f"ledger detail {key} must be an integer")
        return int(value)


def is_ledger(obj: ParticipantObject) -> bool:
    return (
        obj.id_type.system == dicom.PRIVATE_CODE_SYSTEM and obj.id_type.code == LEDGER_OBJECT_CODE
    )
