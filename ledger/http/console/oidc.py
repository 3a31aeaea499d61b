"""Sign-in through an OpenID Connect issuer: authorization code flow with PKCE.

Invariant: a person is signed in only with an ID token whose signature verifies under
the issuer's published keys, whose ``iss``, ``aud``, ``exp``, ``iat`` and ``nonce`` are
the ones this sign-in expects (Authlib's ``CodeIDToken`` checks them), obtained by
exchanging a code bound to this browser's ``state`` and PKCE verifier; and only when a
claim of the token maps to one of the API's roles. The issuer is reached over the
network given in its discovery document, never at a URL taken from the request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ledger.audit.auth import Principal, Role
from ledger.errors import LedgerError, UnavailableError

#: What a subject taken from a claim may hold (the token subjects' alphabet).
_SUBJECT: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_ALGORITHMS: Final = ["RS256", "ES256", "EdDSA", "PS256"]
_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
#: Tolerated clock difference with the issuer (seconds).
LEEWAY: Final = 60


class OidcError(LedgerError):
    """The issuer's answer does not sign this person in (message safe to show)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    #: The claim whose value(s) say the role, and its values mapped to roles, in order:
    #: the first value of the mapping that the claim holds decides.
    role_claim: str = "roles"
    role_map: tuple[tuple[str, Role], ...] = ()
    #: The claim recorded as the person (falls back to ``sub``).
    subject_claim: str = "preferred_username"
    scope: str = "openid profile email"


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    """Where to send the browser, and what the session keeps until the callback."""

    url: str
    pending: dict[str, str]


class OidcClient:
    """The relying party: one per API process; discovery and keys are cached."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._metadata: dict[str, Any] | None = None

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as http,
                http.get(url) as resp,
            ):
                if resp.status != 200:
                    raise UnavailableError(f"the OpenID issuer answered {resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UnavailableError("the OpenID issuer cannot be reached") from exc
        if not isinstance(body, dict):
            raise UnavailableError("the OpenID issuer answered something that is not JSON")
        return body

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            meta = await self._get_json(url)
            if meta.get("issuer") != self.config.issuer:
                raise UnavailableError("the OpenID issuer's metadata names another issuer")
            self._metadata = meta
        return self._metadata

    async def start(self, redirect_uri: str) -> Start:
        meta = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.config.scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        pending = {"state": state, "nonce": nonce, "verifier": verifier, "redirect": redirect_uri}
        return Start(url=f"{meta['authorization_endpoint']}?{query}", pending=pending)

    async def finish(self, pending: Mapping[str, str], code: str) -> Principal:
        """The person the issuer vouches for, after checking everything it says."""
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending["redirect"],
            "code_verifier": pending["verifier"],
        }
        auth = aiohttp.BasicAuth(self.config.client_id, self.config.client_secret)
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as http,
                http.post(meta["token_endpoint"], data=form, auth=auth) as resp,
            ):
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UnavailableError("the OpenID issuer cannot be reached") from exc
        if status != 200 or not isinstance(body, dict) or "id_token" not in body:
            raise OidcError("the OpenID issuer refused the sign-in code")
        keys = KeySet.import_key_set(await self._get_json(meta["jwks_uri"]))  # type: ignore[arg-type]
        return self._principal(self._claims(str(body["id_token"]), keys, pending["nonce"]))

    def _claims(self, id_token: str, keys: KeySet, nonce: str) -> dict[str, Any]:
        try:
            token = jwt.decode(id_token, keys, algorithms=_ALGORITHMS)
            claims = CodeIDToken(
                token.claims,
                token.header,
                options={
                    "iss": {"essential": True, "value": self.config.issuer},
                    "aud": {"essential": True, "value": self.config.client_id},
                },
                params={"nonce": nonce, "client_id": self.config.client_id},
            )
            claims.validate(leeway=LEEWAY)
        except (JoseError, ValueError) as exc:
            raise OidcError("the ID token from the OpenID issuer is not valid") from exc
        return dict(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        subject = claims.get(self.config.subject_claim) or claims.get("sub")
        if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
            raise OidcError("the account's name is not one the ledger can record")
        held = claims.get(self.config.role_claim)
        values = {held} if isinstance(held, str) else set(held) if isinstance(held, list) else set()
        role = next((r for value, r in self.config.role_map if value in values), None)
        if role is None:
            raise OidcError("your account holds none of the ledger's roles")
        token_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.config.issuer}#{claims['sub']}")
        return Principal(token_id=token_id, subject=subject, role=role)


def parse_role_map(text: str) -> tuple[tuple[str, Role], ...]:
    """``value=role,value=role`` (LEDGER_OIDC_ROLE_MAP) as ordered pairs."""
    out = []
    for item in text.split(","):
        if not item.strip():
            continue
        value, sep, role = item.strip().rpartition("=")
        if not sep or not value:
            raise ValueError(f"role map entries are value=role, not {item.strip()!r}")
        out.append((value, Role(role.strip())))
    return tuple(out)
