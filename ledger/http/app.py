"""The API application: its routes, the permission each requires, and what each returns.

Invariant: every route names one permission, or none when it is public and carries
no PHI (``/healthz``, ``/openapi.json``, ``/fhir/metadata``, the newest checkpoint and the
hash tiles);
``phi`` says whether a route can return PHI, and only the PHI-free permission
(``PROOFS``) guards PHI-free routes, so no role reads PHI through a side door. The
table in docs/api.md lists every route with these facts (a unit test keeps it equal,
an e2e test walks it). The middleware chain (``ledger.http.middleware``) enforces the
permissions and records every non-public request.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ledger.audit.alertbook import AlertBook, AlertTriage
from ledger.audit.auth import Permission, TokenDirectory
from ledger.audit.cursors import CursorKey
from ledger.audit.query import LedgerReader, RowHistory
from ledger.audit.readlog import ReadRecorder
from ledger.audit.registrybook import RegistryBook
from ledger.http import alerts, boundary, fhir, history, ops, proofs, registry, reports
from ledger.http.common import (
    CURSORS,
    DEFAULT_PUBLIC_URL,
    MAX_REQUEST_BYTES,
    READER,
    RECORDER,
    ROW_READER,
    SCHEMAS,
    SETTINGS,
    TOKENS,
    public_base,
)
from ledger.http.console import ConsoleConfig, console_middleware, install
from ledger.http.metrics import HttpMetrics, service_version
from ledger.http.middleware import (
    Handler,
    auth_middleware,
    errors_middleware,
    read_audit_middleware,
)
from ledger.http.openapi import document as openapi_document
from ledger.http.proxies import TrustedProxies, proxy_middleware


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    method: str
    path: str
    handler: Handler
    #: None: public (no token, not recorded); only for routes that carry no PHI.
    permission: Permission | None
    name: str
    #: Whether an answer can carry PHI (patient or user ids, events, raw records).
    phi: bool


def _public_healthz() -> Handler:
    """Liveness: the process answers (no dependency is checked; readiness is the ops
    listener's /readyz, docs/observability.md)."""
    version = service_version()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": version})

    return healthz


def routes(extra: tuple[Route, ...] = ()) -> tuple[Route, ...]:
    """Every route of the API with the permission it requires."""
    P, R = Permission, Route
    core = (
        R(method="GET", path="/healthz", handler=_public_healthz(), permission=None,
          name="healthz", phi=False),
        R(method="GET", path="/v1/patients/{patient_id}/accesses", phi=True,
          handler=history.patient_accesses, permission=P.HISTORY, name="patient_accesses"),
        R(method="GET", path="/v1/users/{user_id}/accesses", phi=True,
          handler=history.user_accesses, permission=P.HISTORY, name="user_accesses"),
        R(method="GET", path="/v1/studies/{study_uid}/accesses", phi=True,
          handler=history.study_accesses, permission=P.HISTORY, name="study_accesses"),
        R(method="GET", path="/v1/accessions/{accession}/accesses", phi=True,
          handler=history.accession_accesses, permission=P.HISTORY,
          name="accession_accesses"),
        R(method="GET", path="/v1/events/{event_id}", handler=history.event_detail,
          permission=P.HISTORY, name="event_detail", phi=True),
        # The proof file carries the entry itself (``extra``): PHI, like the event.
        R(method="GET", path="/v1/events/{event_id}/proof", handler=proofs.event_proof,
          permission=P.HISTORY, name="event_proof", phi=True),
        R(method="GET", path="/v1/logs", handler=proofs.list_logs, permission=P.PROOFS,
          name="list_logs", phi=False),
        R(method="GET", path="/v1/logs/{log}/checkpoints", handler=proofs.checkpoints,
          permission=P.PROOFS, name="checkpoints", phi=False),
        R(method="GET", path="/v1/logs/{log}/index", handler=proofs.index_rows,
          permission=P.ENTRIES, name="index_rows", phi=True),
        R(method="GET", path="/v1/logs/{log}/leaves", handler=proofs.leaves,
          permission=P.ENTRIES, name="leaves", phi=True),
        R(method="GET", path="/v1/logs/{log}/proof/inclusion", phi=False,
          handler=proofs.inclusion_proof, permission=P.PROOFS, name="inclusion_proof"),
        R(method="GET", path="/v1/logs/{log}/proof/consistency", phi=False,
          handler=proofs.consistency_proof, permission=P.PROOFS, name="consistency_proof"),
        R(method="GET", path="/v1/schemas", handler=proofs.writer_schemas,
          permission=P.PROOFS, name="writer_schemas", phi=False),
        # Public (C2SP tlog-tiles): the newest signed checkpoint and the hash tiles carry
        # no PHI, so tlog clients, monitors and witnesses follow the log with no token.
        # Levels are digits only, so a hash-tile route can never serve an entry bundle.
        R(method="GET", path="/logs/{log}/checkpoint", handler=proofs.checkpoint,
          permission=None, name="checkpoint", phi=False),
        R(method="GET", path=r"/logs/{log}/tile/{level:\d+}/{path:.+}",
          handler=proofs.hash_tile, permission=None, name="hash_tile", phi=False),
        R(method="GET", path="/logs/{log}/tile/entries/{path:.+}",
          handler=proofs.entry_bundle, permission=P.ENTRIES, name="entry_bundle", phi=True),
        R(method="GET", path="/v1/quarantine", handler=ops.quarantine,
          permission=P.OPERATIONS, name="quarantine", phi=True),
        R(method="GET", path="/v1/alerts", handler=ops.alerts, permission=P.OPERATIONS,
          name="alerts", phi=False),
    )  # fmt: skip
    return core + extra


def report_routes() -> tuple[Route, ...]:
    P, R = Permission, Route
    return (
        R(method="POST", path="/v1/investigations", handler=reports.investigation,
          permission=P.INVESTIGATE, name="investigation", phi=True),
        R(method="GET", path="/v1/patients/{patient_id}/disclosures", phi=True,
          handler=reports.disclosures, permission=P.COMPLIANCE, name="disclosures"),
        R(method="GET", path="/v1/reports/critical-results", handler=reports.relays,
          permission=P.COMPLIANCE, name="critical_results", phi=True),
        R(method="GET", path="/v1/reports/compliance", handler=reports.compliance,
          permission=P.COMPLIANCE, name="compliance_report", phi=True),
    )  # fmt: skip


def alert_routes() -> tuple[Route, ...]:
    """Compliance alerts (docs/api.md): they name users, facilities and patients (PHI)."""
    P, R = Permission, Route
    return (
        R(method="GET", path="/v1/compliance/alerts", handler=alerts.list_alerts,
          permission=P.ALERTS, name="compliance_alerts", phi=True),
        R(method="GET", path=r"/v1/compliance/alerts/{alert_id:\d+}", handler=alerts.show_alert,
          permission=P.ALERTS, name="compliance_alert", phi=True),
        R(method="POST", path=r"/v1/compliance/alerts/{alert_id:\d+}/transitions",
          handler=alerts.transition_alert, permission=P.TRIAGE,
          name="compliance_alert_transition", phi=True),
    )  # fmt: skip


def registry_routes() -> tuple[Route, ...]:
    """The compliance registry (docs/api.md): workforce members, agreements, licenses and
    credentials; no patient, so not PHI, but every read is recorded."""
    P, R = Permission, Route
    return (
        R(method="GET", path="/v1/registry", handler=registry.show,
          permission=P.REGISTRY, name="registry", phi=False),
        R(method="GET", path="/v1/registry/changes", handler=registry.changes,
          permission=P.REGISTRY, name="registry_changes", phi=False),
        R(method="POST", path="/v1/registry/changes", handler=registry.submit,
          permission=P.REGISTRY_WRITE, name="registry_submit", phi=False),
    )  # fmt: skip


def fhir_routes(*, writable: bool) -> tuple[Route, ...]:
    P, R = Permission, Route
    read = (
        # Public: the CapabilityStatement says what the server does, no PHI (docs/api.md).
        R(method="GET", path="/fhir/metadata", handler=fhir.metadata,
          permission=None, name="fhir_metadata", phi=False),
        R(method="GET", path="/fhir/AuditEvent", handler=fhir.search,
          permission=P.FHIR_READ, name="fhir_search", phi=True),
        R(method="GET", path="/fhir/AuditEvent/{event_id}", handler=fhir.read,
          permission=P.FHIR_READ, name="fhir_read", phi=True),
        # A batch of GET entries: each entry is a read, recorded on its own.
        R(method="POST", path="/fhir", handler=fhir.batch,
          permission=P.FHIR_READ, name="fhir_batch", phi=True),
    )  # fmt: skip
    if not writable:
        return read
    # A write answers with an OperationOutcome about what was sent: no ledger data.
    return (
        *read,
        R(method="POST", path="/fhir/AuditEvent", handler=fhir.create,
          permission=P.FHIR_WRITE, name="fhir_create", phi=False),
    )  # fmt: skip


def _openapi_route(document: dict[str, object]) -> Route:
    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    return Route(
        method="GET", path="/openapi.json", handler=openapi_json, permission=None,
        name="openapi", phi=False,
    )  # fmt: skip


def create_app(
    *,
    reader: LedgerReader,
    tokens: TokenDirectory,
    recorder: ReadRecorder,
    report_source: reports.ReportSource | None = None,
    fhir_submitter: fhir.FhirSubmitter | None = None,
    alert_book: AlertBook | None = None,
    alert_triage: AlertTriage | None = None,
    registry_book: RegistryBook | None = None,
    registry_writes: registry.RegistryWrites | None = None,
    extra_routes: tuple[Route, ...] = (),
    openapi: dict[str, object] | None = None,
    public_url: str = DEFAULT_PUBLIC_URL,
    cursor_key: CursorKey | None = None,
    console: ConsoleConfig | None = None,
    trusted_proxies: TrustedProxies | None = None,
    http_metrics: HttpMetrics | None = None,
) -> web.Application:
    """The API application; the caller owns the lifecycles of what it passes in.

    ``public_url`` is the base of the links the API writes (FHIR Bundle links and
    fullUrls), never taken from the request; ``cursor_key`` seals page tokens (default:
    a key of this process only, so tokens do not survive a restart). The compliance
    alert routes are served when ``alert_book`` is given; transitions answer 503 unless
    ``alert_triage`` is given too (it needs a role that may insert transitions). The
    console (docs/console.md) is mounted under /console/ when ``console`` is given.
    ``trusted_proxies``: the reverse proxies whose X-Forwarded-* headers name the client
    (``ledger.http.proxies``); by default nobody's are honoured."""
    proxies = trusted_proxies or TrustedProxies()
    app = web.Application(
        # Order matters: the audit middleware wraps authentication, so 401 and 403 are
        # recorded like any other answer; the parameter check sits inside the audit, so
        # its refusals are recorded too. The console's pages wrap them all.
        middlewares=[
            *([proxy_middleware(proxies)] if proxies.networks else []),
            *([http_metrics.middleware] if http_metrics is not None else []),
            *([console_middleware] if console is not None else []),
            errors_middleware,
            read_audit_middleware,
            auth_middleware,
            boundary.parameters_middleware,
        ],
        client_max_size=MAX_REQUEST_BYTES,
    )
    app.on_response_prepare.append(boundary.cache_headers)
    app[CURSORS] = cursor_key or CursorKey.generate()
    app[READER] = reader
    if isinstance(reader, RowHistory):
        app[ROW_READER] = reader
    app[TOKENS] = tokens
    app[RECORDER] = recorder
    app[SCHEMAS] = {}
    extra = extra_routes + fhir_routes(writable=fhir_submitter is not None)
    if report_source is not None:
        app[reports.REPORTS] = report_source
        extra += report_routes()
    if fhir_submitter is not None:
        app[fhir.FHIR_SUBMITTER] = fhir_submitter
    if alert_book is not None:
        app[alerts.ALERT_BOOK] = alert_book
        extra += alert_routes()
    if alert_triage is not None:
        app[alerts.ALERT_TRIAGE] = alert_triage
    if registry_book is not None:
        app[registry.REGISTRY_BOOK] = registry_book
        extra += registry_routes()
    if registry_writes is not None:
        app[registry.REGISTRY_WRITES] = registry_writes
    if openapi is not None:
        extra += (_openapi_route(openapi),)
    table = routes(extra)
    app[SETTINGS] = {
        "permissions": {r.name: r.permission for r in table},
        "routes": table,
        "parameters": boundary.declared_parameters(openapi_document()),
        "public_url": public_base(public_url),
    }
    for r in table:
        app.router.add_route(r.method, r.path, r.handler, name=r.name)
    if console is not None:
        install(app, console)
    return app


def served_routes(app: web.Application) -> tuple[Route, ...]:
    """The routes ``create_app`` registered on ``app``, in order."""
    table: tuple[Route, ...] = app[SETTINGS]["routes"]
    return table
