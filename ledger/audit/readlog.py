"""Reads of the ledger, recorded in the ledger (DICOM 110101 "Audit Log Used").

Invariant: the API answers an authenticated request only after its ``LedgerRead``
has been handed to the ``ReadRecorder`` (which sends it through Kafka like any
producer, or spools it durably); if the recorder cannot take it, the request fails
with 503 and no data leaves the API. Values are cut to the event schema's limits
here, so a hostile query string can never make its own audit record invalid.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, Protocol

from ledger.audit.disclosure import NOTHING, Disclosure

#: Limits of the AuditLogUsed schema's fields (producers.events: MAX_TEXT_CHARS etc.).
MAX_PATH_CHARS: Final = 1024
MAX_VALUE_CHARS: Final = 1024
MAX_KEY_CHARS: Final = 256
MAX_PARAMETERS: Final = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerRead:
    read_id: uuid.UUID
    at: datetime
    subject: str
    role: str
    client: str | None
    method: str
    path: str
    status: int
    parameters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    results: int | None = None
    patient_id: str | None = None
    patient_issuer: str | None = None
    #: The ledger entries the answer returned: the read shows up in the history of each
    #: patient they name (AuditLogUsed v2 ``disclosed``; ``ledger.audit.disclosure.whole_logs``
    #: for "every entry of these logs up to these sizes").
    disclosed: Disclosure = NOTHING


class ReadRecorder(Protocol):
    async def record(self, read: LedgerRead) -> None:
        """Durably hand the read over (Kafka or spool); raises ``UnavailableError``."""
        ...


def clean_text(value: str, limit: int) -> str:
    """Printable, valid UTF-8, at most ``limit`` characters (cut with an ellipsis)."""
    text = value.encode("utf-8", "replace").decode("utf-8")
    text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text


def clean_parameters(pairs: Mapping[str, str]) -> dict[str, str]:
    """Query parameters as the schema accepts them: first value of each, bounded."""
    out: dict[str, str] = {}
    for key, value in pairs.items():
        name = clean_text(key, MAX_KEY_CHARS).strip() or "\ufffd"
        if name in out:
            continue
        if len(out) == MAX_PARAMETERS - 1:
            out["\u2026"] = "more parameters were cut"
            break
        out[name] = clean_text(value, MAX_VALUE_CHARS)
    return out
