"""The investigator and auditor console: HTML pages served by the API process.

Invariant: every console route names one permission (or none: the sign-in pages, the
static assets and the verifier keys, which carry no PHI) in the API's own permission
table, and declares its query parameters like an API route; so the API's middleware
grants, refuses and records a console page exactly as it does an API read
(docs/console.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from ledger.audit.auth import Permission
from ledger.http.common import SESSION_AUTH, SETTINGS
from ledger.http.console import ops, pages, reportpages, signin, staticfiles
from ledger.http.console.guard import (
    CONSOLE,
    Console,
    ConsoleConfig,
    ConsoleSessions,
    console_middleware,
)
from ledger.http.console.oidc import OidcClient, OidcConfig
from ledger.http.console.sessions import SessionStore
from ledger.http.middleware import Handler

__all__ = ["ConsoleConfig", "OidcConfig", "console_middleware", "install"]

_FILTERS: Final = frozenset(
    {"since", "until", "action", "outcome", "facility", "self_audit", "cursor", "colour"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleRoute:
    method: str
    path: str
    handler: Handler
    permission: Permission | None
    name: str
    parameters: frozenset[str] = frozenset()


def console_routes() -> tuple[ConsoleRoute, ...]:
    P, R, F = Permission, ConsoleRoute, _FILTERS
    history = (
        ("patients/{patient_id}", "patient", F | {"issuer"},
         (pages.patient_page, pages.patient_csv, pages.patient_chart)),
        ("users/{user_id}", "user", F, (pages.user_page, pages.user_csv, pages.user_chart)),
        ("studies/{study_uid}", "study", F | {"accession"},
         (pages.study_page, pages.study_csv, pages.study_chart)),
        ("accessions/{accession}", "accession", F,
         (pages.accession_page, pages.accession_csv, pages.accession_chart)),
    )  # fmt: skip
    out = [
        # Any signed-in role holds ``proofs``: the home page names no patient.
        R(method="GET", path="/console/", handler=pages.home, permission=P.PROOFS,
          name="console_home"),
        R(method="GET", path="/console/sign-in", handler=signin.sign_in_form, permission=None,
          name="console_sign_in_form", parameters=frozenset({"next", "signed_out"})),
        # Public in the table: the handlers check the CSRF token and record themselves.
        R(method="POST", path="/console/sign-in", handler=signin.sign_in, permission=None,
          name="console_sign_in"),
        R(method="POST", path="/console/sign-out", handler=signin.sign_out, permission=None,
          name="console_sign_out"),
        R(method="GET", path="/console/oidc/start", handler=signin.oidc_start,
          permission=None, name="console_oidc_start"),
        R(method="GET", path="/console/oidc/callback", handler=signin.oidc_callback,
          permission=None, name="console_oidc_callback",
          parameters=frozenset({"code", "state", "hop", "error", "error_description",
                                "session_state", "iss"})),
        R(method="GET", path="/console/search", handler=pages.search, permission=P.HISTORY,
          name="console_search", parameters=frozenset({"kind", "q", "accession"})),
        R(method="GET", path="/console/alerts", handler=ops.alerts, permission=P.ALERTS,
          name="console_alerts",
          parameters=frozenset({"state", "user", "facility", "rule", "since", "until",
                                "cursor", "done"})),
        R(method="POST", path=r"/console/alerts/{alert_id:\d+}/transitions",
          handler=ops.transition, permission=P.TRIAGE, name="console_alert_transition"),
        R(method="GET", path="/console/integrity", handler=ops.integrity,
          permission=P.PROOFS, name="console_integrity"),
        R(method="GET", path="/console/investigations", handler=reportpages.investigation_form,
          permission=P.INVESTIGATE, name="console_investigation_form"),
        # The scope is a form (CSRF-checked like every console POST); it changes nothing.
        R(method="POST", path="/console/investigations", handler=reportpages.investigation_run,
          permission=P.INVESTIGATE, name="console_investigation"),
        R(method="GET", path="/console/disclosures", handler=reportpages.disclosures_form,
          permission=P.COMPLIANCE, name="console_disclosures_form",
          parameters=frozenset({"patient", "issuer"})),
        R(method="GET", path="/console/patients/{patient_id}/disclosures",
          handler=reportpages.disclosures_page, permission=P.COMPLIANCE,
          name="console_disclosures",
          parameters=frozenset({"issuer", "years", "at", "as_of", "as_of_note", "format"})),
        R(method="GET", path="/console/relays", handler=reportpages.relays_page,
          permission=P.COMPLIANCE, name="console_relays",
          parameters=frozenset({"per", "since", "until", "at", "facility", "deadline_cat1",
                                "deadline_cat2", "deadline_cat3", "as_of", "as_of_note",
                                "format"})),
        R(method="GET", path="/console/verifier-keys", handler=pages.verifier_keys,
          permission=None, name="console_verifier_keys"),
        R(method="GET", path="/console/witness-policy", handler=pages.witness_policy,
          permission=None, name="console_witness_policy"),
        R(method="GET", path=r"/console/static/{name:[A-Za-z0-9_.-]+}",
          handler=staticfiles.static_file, permission=None, name="console_static"),
    ]  # fmt: skip
    for path, kind, params, (view, csv, chart) in history:
        out += [
            R(method="GET", path=f"/console/{path}", handler=view, permission=P.HISTORY,
              name=f"console_{kind}", parameters=params),
            R(method="GET", path=f"/console/{path}/accesses.csv", handler=csv,
              permission=P.HISTORY, name=f"console_{kind}_csv", parameters=params),
            R(method="GET", path=f"/console/{path}/timeline.svg", handler=chart,
              permission=P.HISTORY, name=f"console_{kind}_chart", parameters=params),
        ]  # fmt: skip
    return tuple(out)


def install(app: web.Application, config: ConsoleConfig) -> None:
    """Mount the console on the API ``app`` (after its own routes and settings)."""
    store = SessionStore(idle=config.idle_minutes * 60)
    app[CONSOLE] = Console(
        config=config, store=store,
        oidc=None if config.oidc is None else OidcClient(config.oidc),
    )  # fmt: skip
    app[SESSION_AUTH] = ConsoleSessions(store)
    settings = app[SETTINGS]
    for r in console_routes():
        settings["permissions"][r.name] = r.permission
        template = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.path)
        settings["parameters"][(r.method, template)] = r.parameters
        app.router.add_route(r.method, r.path, r.handler, name=r.name)
    app.router.add_route("GET", "/console", _to_home, name="console_root")
    settings["permissions"]["console_root"] = None


async def _to_home(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": "/console/"})
