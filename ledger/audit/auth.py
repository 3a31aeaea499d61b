"""API access control: bearer tokens, roles and what each role may do.

Invariant: a token's text exists only with its holder; the ledger stores and looks
up SHA-256 of it. Every API route names exactly one permission (or none: public,
PHI-free), and a role holds a permission only if ``ROLE_PERMISSIONS`` says so (least
privilege). Each permission either never returns PHI or says that it does, so no
role reads PHI through a side door (docs/api.md has the table, pinned by a test):

* investigator - reconstructs who accessed what: access histories, event details
  and their proofs, breach investigations, FHIR search and read (PHI, by key); reads
  and triages compliance alerts (the privacy officer's work);
* auditor - checks the ledger and produces the HIPAA outputs: PHI-free proof
  material, and (PHI, in bulk, for full verification) leaves, entry bundles and
  index rows; accountings of disclosures, relay reports, quarantine and alerts
  (security alerts; compliance alerts are filtered by user and name patients: PHI by
  key, so not the auditor's);
* investigator and auditor both read the compliance registry (``registry``: the
  workforce, agreements, licenses and credentials the rules check; no patient);
* admin - all of the above, and writes (``POST /fhir/AuditEvent``, registry changes).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NewType, Protocol

from ledger.errors import LedgerError, MalformedInputError

TokenHash = NewType("TokenHash", bytes)

TOKEN_PREFIX: Final = "plt_"  # noqa: S105 - a public prefix, not a secret
_TOKEN_BYTES: Final = 32
_TOKEN_CHARS: Final = len(TOKEN_PREFIX) + 43  # unpadded base64url of 32 bytes


class Role(StrEnum):
    INVESTIGATOR = "investigator"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Permission(StrEnum):
    #: Access histories, event details and event proofs (PHI, by patient, user, study
    #: or event id).
    HISTORY = "history"
    #: Breach investigations over users, facilities, addresses and time windows (PHI).
    INVESTIGATE = "investigate"
    #: PHI-free proof material: the logs list, checkpoint history, inclusion and
    #: consistency proofs by index, writer schemas. (The newest checkpoint and the hash
    #: tiles are public: they need no permission.)
    PROOFS = "proofs"
    #: The entries themselves, in bulk, for full verification: leaves, entry bundles and
    #: index rows (PHI of every patient in the range read).
    ENTRIES = "entries"
    #: HIPAA outputs: accounting of disclosures (one patient's PHI), critical-result
    #: relay reports (patients named in late relays).
    COMPLIANCE = "compliance"
    #: Ingestion health: quarantined records (raw bytes: PHI) and security alerts.
    OPERATIONS = "operations"
    #: FHIR AuditEvent search and read (PHI, by patient, agent, study or event id).
    FHIR_READ = "fhir_read"
    #: FHIR AuditEvent ingestion (writes to Kafka like any producer).
    FHIR_WRITE = "fhir_write"
    #: Compliance alerts: list and read one with its evidence (PHI: they name users,
    #: facilities and patients).
    ALERTS = "alerts"
    #: Triage of compliance alerts: acknowledge, close with a disposition.
    TRIAGE = "triage"
    #: The compliance registry as known at any time and its change history (no patient:
    #: organizations, BAAs, workforce members, licenses, credentials).
    REGISTRY = "registry"
    #: Changes to the compliance registry (a registry file, emitted to its topic).
    REGISTRY_WRITE = "registry_write"


ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.INVESTIGATOR: frozenset(
        {
            Permission.HISTORY,
            Permission.INVESTIGATE,
            Permission.PROOFS,
            Permission.FHIR_READ,
            Permission.ALERTS,
            Permission.TRIAGE,
            Permission.REGISTRY,
        }
    ),
    Role.AUDITOR: frozenset(
        {
            Permission.PROOFS,
            Permission.ENTRIES,
            Permission.COMPLIANCE,
            Permission.OPERATIONS,
            Permission.REGISTRY,
        }
    ),
    Role.ADMIN: frozenset(Permission),
}


class AuthenticationError(LedgerError):
    """No valid bearer token: the API answers 401."""


class ForbiddenError(LedgerError):
    """A valid token whose role lacks the route's permission: the API answers 403."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who a valid token belongs to."""

    token_id: uuid.UUID
    subject: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    token_id: uuid.UUID
    #: The bearer token. Shown once, to whoever issued it; never stored.
    text: str
    token_hash: TokenHash


class TokenDirectory(Protocol):
    async def principal(self, token_hash: TokenHash) -> Principal | None:
        """The holder of a live (unexpired, unrevoked) token, or None."""
        ...


def token_hash(text: str) -> TokenHash:
    return TokenHash(hashlib.sha256(text.encode("ascii")).digest())


def issue_token() -> IssuedToken:
    """A new random token (256 bits) and the hash under which it is stored."""
    body = base64.urlsafe_b64encode(secrets.token_bytes(_TOKEN_BYTES)).decode().rstrip("=")
    text = TOKEN_PREFIX + body
    return IssuedToken(token_id=uuid.uuid4(), text=text, token_hash=token_hash(text))


def bearer_token(header: str | None) -> str:
    """The token in an ``Authorization`` header; raises ``AuthenticationError``."""
    if header is None:
        raise AuthenticationError("an Authorization: Bearer token is required")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
    value = value.strip()
    if (
        len(value) != _TOKEN_CHARS
        or not value.startswith(TOKEN_PREFIX)
        or not value.isascii()
        or not all(c.isalnum() or c in "-_" for c in value[len(TOKEN_PREFIX) :])
    ):
        raise AuthenticationError("that is not a token this ledger issued")
    return value


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError as exc:
        allowed = ", ".join(r.value for r in Role)
        raise MalformedInputError(f"role must be one of {allowed}, not {text!r}") from exc
