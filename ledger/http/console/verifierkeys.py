"""``GET /console/verifier-keys``: the verifier keys the in-browser check trusts, and
``GET /console/witness-policy``: the witnesses whose cosignatures it requires.

Invariant: the answer is the JSON list of the configured verifier-key strings
(``LEDGER_VERIFIER_KEY(S)``, the operator's configuration, never read from the ledger's
database), each once, each a key that ``parse_verifier_key`` accepted; public keys only,
no PHI. The witness policy is ``{"keys": [...], "threshold": k}`` from LEDGER_WITNESSES
and LEDGER_WITNESS_THRESHOLD (``{"keys": [], "threshold": 0}``: none required).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiohttp import web

from ledger.log.note import Verifier

PATH = "/console/verifier-keys"
WITNESS_PATH = "/console/witness-policy"


def verifier_keys_handler(
    verifiers: Sequence[Verifier],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler answering the keys of ``verifiers`` (``[]`` when none is configured: the
    page then says that it has no key to check against)."""
    keys = [v.key for v in verifiers]

    async def verifier_keys(request: web.Request) -> web.Response:
        return answer(keys)

    return verifier_keys


def answer(keys: Iterable[str]) -> web.Response:
    """The answer of the route: each key once, in order (the same key configured in
    both LEDGER_VERIFIER_KEY and LEDGER_VERIFIER_KEYS is one key)."""
    return web.json_response(list(dict.fromkeys(keys)), headers={"Cache-Control": "no-cache"})


def witness_policy_answer(keys: Iterable[str], threshold: int) -> web.Response:
    """The witness policy route's answer (not cached: a changed policy applies at once)."""
    body = {"keys": list(dict.fromkeys(keys)), "threshold": threshold}
    return web.json_response(body, headers={"Cache-Control": "no-cache"})


def witness_policy_handler(
    keys: Sequence[str] = (), threshold: int = 0
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler answering one fixed policy (the default: none required)."""

    async def witness_policy(request: web.Request) -> web.Response:
        return witness_policy_answer(keys, threshold)

    return witness_policy
