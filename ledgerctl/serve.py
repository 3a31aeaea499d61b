"""Composition root of the API process: reader, token directory, read recorder, TLS.

Invariant: the API starts only with a working read recorder (an emitter with its
own spool), so no read of the ledger goes unrecorded; the spool lives under
LEDGER_SPOOL_DIR/<producer id> and survives restarts. The producer id is the one
LEDGER_PRODUCER_KEY_FILE was issued to (else ledger-api-<host>-<port>); the FHIR feed
signs with LEDGER_FHIR_PRODUCER_KEY_FILE as a producer of its own when that is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import socket
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ledger.audit.cursors import CursorKey
from ledger.audit.readlog import ReadRecorder
from ledger.audit.registrybook import RegistrySink
from ledger.audit.rules import RulesConfig
from ledger.audit.rules.registryrules import checklist_config
from ledger.errors import MalformedInputError
from ledger.http import create_app
from ledger.http.common import public_base
from ledger.http.console import ConsoleConfig, OidcConfig
from ledger.http.console.oidc import parse_role_map
from ledger.http.fhir import FhirSubmitter
from ledger.http.metrics import HttpMetrics
from ledger.http.openapi import document
from ledger.http.proxies import TrustedProxies
from ledger.http.registry import RegistryWrites
from ledger.http.server import bind_url, serve_app, tls_context
from ledger.log.cosignature import WitnessPolicy
from ledger.log.keys import parse_verifiers
from ledger.log.note import Verifier
from ledger.pg.compliance import PostgresRulesStore
from ledger.pg.pool import PoolSettings
from ledger.pg.reader import PostgresReader
from ledger.pg.registrybook import REGISTRY_TOPIC, PostgresRegistry
from ledger.pg.reports import PostgresReports
from ledger.pg.status import unready_reason
from ledgerctl.apiworkers import Worker
from ledgerctl.fhirfeed import EmitterFhirSubmitter
from ledgerctl.readaudit import EmitterReadRecorder
from ledgerctl.registryapi import EmittingRegistrySink, FileRegistryParser, checked_emitter
from ledgerctl.rules import load_rules_config
from ledgerctl.settings import KafkaRole, PgPool, Settings
from ledgerctl.simulate import key_producer_id
from producers.emitter import Emitter, EmitterConfig
from producers.ops import EmitterCollector, OpsConfig, OpsServer, OpsState, emitter_checks

#: The spool of the API's registry writes (under LEDGER_SPOOL_DIR), apart from the CLI's.
API_REGISTRY_SPOOL = "api-registry"


def _emitter_config(settings: Settings, producer_id: str, key_file: str | None) -> EmitterConfig:
    spool = Path(settings.spool_dir) / producer_id
    spool.parent.mkdir(parents=True, exist_ok=True)
    return EmitterConfig(
        bootstrap_servers=settings.kafka_bootstrap,
        producer_id=producer_id,
        access_topic=settings.access_topic,
        relay_topic=settings.relay_topic,
        max_block_seconds=1.0,
        spool_dir=str(spool),
        producer_key_file=key_file,
        kafka_security=settings.kafka(KafkaRole.API),
    )


def _cursor_key_and_url(settings: Settings) -> tuple[CursorKey | None, str | None]:
    key_file = settings.cursor_key_file
    try:
        cursor_key = CursorKey.from_file(Path(key_file)) if key_file else None
        public_url = None if settings.public_url is None else public_base(settings.public_url)
    except MalformedInputError as exc:
        raise SystemExit(f"LEDGER_CURSOR_KEY_FILE / LEDGER_PUBLIC_URL: {exc}") from exc
    return cursor_key, public_url


def _witness_policy(settings: Settings) -> WitnessPolicy | None:
    from ledgerctl.witnesses import WitnessSettingsError, witness_policy

    try:
        return witness_policy(settings)
    except WitnessSettingsError as exc:
        raise SystemExit(str(exc)) from exc


def console_config(settings: Settings, verifiers: Sequence[Verifier]) -> ConsoleConfig:
    """The console's settings; OpenID Connect sign-in when LEDGER_OIDC_ISSUER is set."""
    oidc = None
    if settings.oidc_issuer:
        if not settings.oidc_client_id or not settings.oidc_client_secret_file:
            raise SystemExit(
                "LEDGER_OIDC_ISSUER needs LEDGER_OIDC_CLIENT_ID and LEDGER_OIDC_CLIENT_SECRET_FILE"
            )
        try:
            role_map = parse_role_map(settings.oidc_role_map)
        except ValueError as exc:
            raise SystemExit(f"LEDGER_OIDC_ROLE_MAP: {exc}") from exc
        if not role_map:
            raise SystemExit("LEDGER_OIDC_ROLE_MAP must map at least one claim value to a role")
        oidc = OidcConfig(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=Path(settings.oidc_client_secret_file).read_text().strip(),
            role_claim=settings.oidc_role_claim,
            role_map=role_map,
            subject_claim=settings.oidc_subject_claim,
        )
    policy = _witness_policy(settings)
    return ConsoleConfig(
        idle_minutes=settings.console_idle_minutes,
        verifier_keys=tuple(v.key for v in verifiers),
        witness_keys=() if policy is None else tuple(w.key for w in policy.witnesses),
        witness_threshold=0 if policy is None else policy.threshold,
        oidc=oidc,
        facility_name=settings.facility_name,
        facility_contact=settings.facility_contact,
    )


def api_producer_id(port: int) -> str:
    """One producer (and spool) per API process: host and port name it."""
    return f"ledger-api-{socket.gethostname()}-{port}"


async def run_api(
    settings: Settings,
    *,
    host: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    ops: OpsConfig | None = None,
    worker: Worker | None = None,
    cursor_key_bytes: bytes | None = None,
) -> None:
    """The API process (or worker ``worker`` of several, sealing page tokens with
    ``cursor_key_bytes``, shared by them all; ``ledgerctl.apiworkers``)."""
    me = worker or Worker()
    key_file = me.key_file(settings.producer_key_file)
    producer_id = key_producer_id(key_file, me.producer_id(api_producer_id(port)))
    config = _emitter_config(settings, producer_id, key_file)
    tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    cursor_key, public_url = _cursor_key_and_url(settings)
    if cursor_key_bytes is not None:
        cursor_key = CursorKey(cursor_key_bytes)
    if ops is not None:
        ops = dataclasses.replace(ops, port=me.ops_port(ops.port))
    async with contextlib.AsyncExitStack() as stack:
        emitter = await stack.enter_async_context(Emitter(config))
        fhir_emitter = emitter
        fhir_key = me.key_file(settings.fhir_producer_key_file)
        if fhir_key is not None:  # the FHIR feed signs as a producer of its own
            fhir_id = key_producer_id(fhir_key, f"{producer_id}-fhir")
            fhir_emitter = await stack.enter_async_context(
                Emitter(_emitter_config(settings, fhir_id, fhir_key))
            )
        recorder = EmitterReadRecorder(emitter, ledger_name=settings.ledger_name)
        state = OpsState()
        emitters = {"api": emitter} | ({} if fhir_emitter is emitter else {"fhir": fhir_emitter})
        state.registry.register(EmitterCollector(emitters))
        state.checks.update(emitter_checks(emitter, max_bytes=config.spool_max_bytes))
        try:  # reports refuse checkpoints of another ledger or not signed by these keys
            keys = settings.verifier_key_strings()
            verifiers = parse_verifiers(keys) if keys else ()
        except MalformedInputError as exc:
            raise SystemExit(f"LEDGER_VERIFIER_KEY(S): {exc}") from exc
        try:
            proxies = TrustedProxies.parse(settings.trusted_proxies)
        except MalformedInputError as exc:
            raise SystemExit(str(exc)) from exc
        await serve_api(
            trusted_proxies=proxies,
            fhir_submitter=EmitterFhirSubmitter(fhir_emitter),
            reader_dsn=settings.require("reader_url"),
            host=host,
            port=port,
            recorder=recorder,
            tls=tls,
            public_url=public_url,
            cursor_key=cursor_key,
            ledger_name=settings.ledger_name,
            verifiers=verifiers,
            triage_dsn=None
            if settings.triage_url is None
            else settings.triage_url.get_secret_value(),
            registry_topic=settings.registry_topic,
            # Sign-in sessions live in one process: no console beside other workers.
            console=console_config(settings, verifiers) if me.count == 1 else None,
            workers=me.count,
            rules=load_rules_config(settings.rules_file),
            # Registry writes need the registry producer's key (and Kafka principal);
            # without LEDGER_REGISTRY_PRODUCER_KEY_FILE they answer 503. Bodies are
            # checked either way.
            registry_sink=None
            if settings.registry_producer_key_file is None
            else EmittingRegistrySink(
                checked_emitter(settings, spool=me.producer_id(API_REGISTRY_SPOOL))
            ),
            ops=ops,
            ops_state=state,
            pools={pool: settings.pg_pool(pool) for pool in PgPool},
        )


async def serve_api(
    *,
    reader_dsn: str,
    host: str,
    port: int,
    recorder: ReadRecorder,
    fhir_submitter: FhirSubmitter | None = None,
    tls: ssl.SSLContext | None = None,
    public_url: str | None = None,
    cursor_key: CursorKey | None = None,
    ledger_name: str | None = None,
    verifiers: Sequence[Verifier] = (),
    triage_dsn: str | None = None,
    registry_topic: str = REGISTRY_TOPIC,
    registry_sink: RegistrySink[Any] | None = None,
    rules: RulesConfig | None = None,
    console: ConsoleConfig | None = None,
    trusted_proxies: TrustedProxies | None = None,
    ops: OpsConfig | None = None,
    ops_state: OpsState | None = None,
    pools: Mapping[PgPool, PoolSettings] | None = None,
    workers: int = 1,
) -> None:
    """One reader (role ledger_reader, SELECT only) and one app, served until SIGTERM.
    Links go under ``public_url`` (default: ``bind_url``); page tokens are sealed with
    ``cursor_key`` (default: a key of this process only). Reports refuse a checkpoint
    outside ``ledger_name`` or not signed by one of ``verifiers`` (when given).
    Compliance alerts are read as ``ledger_reader``; their triage (an inserted transition)
    needs ``triage_dsn`` (``LEDGER_TRIAGE_URL``), else transitions answer 503. The
    registry is read from the logs of ``registry_topic``; registry files sent to the API
    are checked, and emitted through ``registry_sink`` (None: answered 503). ``pools``
    sizes each connection pool (LEDGER_PG_<POOL>_*; unnamed: the adapter's defaults).
    Requests are counted per route on ``ops_state``'s registry, served with readiness
    (the database, and what ``ops_state`` checks already) by an ops listener when
    ``ops`` is given. With ``workers`` > 1 this is one of several processes sharing the
    port, and the console is served only when ``console`` is given."""
    state = ops_state or OpsState()
    sized = pools or {}
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(
            PostgresReader(dsn=reader_dsn, pool=sized.get(PgPool.READER))
        )
        state.checks["database"] = functools.partial(unready_reason, store.pool)
        if ops is not None:
            await stack.enter_async_context(OpsServer(ops, state))
        reports = await stack.enter_async_context(
            PostgresReports(
                dsn=reader_dsn,
                pool_size=2,
                ledger_name=ledger_name,
                verifiers=verifiers,
                # The compliance report judges accesses as the rules do (time zone,
                # roles, relay deadlines of LEDGER_RULES_FILE).
                checklist=checklist_config(rules or RulesConfig()),
                relay_deadlines=(rules or RulesConfig()).relay_late.deadlines,
                registry_topic=registry_topic,
                pool=sized.get(PgPool.REPORTS),
            )
        )
        book = await stack.enter_async_context(
            PostgresRulesStore(dsn=reader_dsn, pool_size=2, pool=sized.get(PgPool.COMPLIANCE))
        )
        triage = None
        if triage_dsn is not None:
            triage = await stack.enter_async_context(
                PostgresRulesStore(dsn=triage_dsn, pool_size=1, pool=sized.get(PgPool.COMPLIANCE))
            )
        registry = await stack.enter_async_context(
            PostgresRegistry(
                dsn=reader_dsn, registry_topic=registry_topic, pool=sized.get(PgPool.REGISTRY)
            )
        )
        app = create_app(
            reader=store,
            tokens=store,
            recorder=recorder,
            report_source=reports,
            fhir_submitter=fhir_submitter,
            alert_book=book,
            alert_triage=triage,
            registry_book=registry,
            registry_writes=RegistryWrites(parser=FileRegistryParser(), sink=registry_sink),
            openapi=document(),
            public_url=public_url or bind_url(host, port, tls=tls is not None),
            cursor_key=cursor_key,
            console=console
            if console is not None or workers > 1
            else ConsoleConfig(verifier_keys=tuple(v.key for v in verifiers)),
            trusted_proxies=trusted_proxies,
            http_metrics=HttpMetrics(state.registry),
        )
        await serve_app(app, host=host, port=port, tls=tls, reuse_port=workers > 1)
