"""``ledger consume``, ``serve`` and ``wait ...``: the long-running processes, and the
readiness waits that scripts put before them.

Invariant: a service runs until SIGTERM; a wait exits 1 with one line when its
dependency did not answer in time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ledgerctl.commands.common import configure_logging, fail, kafka_security, ops_config
from ledgerctl.settings import KafkaRole, PgPool, Settings

if TYPE_CHECKING:
    from consumers.process import WitnessSubmission
    from ledgerctl.apiworkers import Worker

wait_app = typer.Typer(help="Wait until a dependency is ready (for scripts).", no_args_is_help=True)


def consume(verbose: bool = False) -> None:
    """Run the consumer: Kafka topics -> ledger, exactly once (until SIGTERM)."""
    from consumers.process import run_consumer
    from ledger.errors import LedgerError
    from ledger.log.keys import load_signers
    from ledger.pg.checkpointer import CheckpointPolicy

    settings = Settings.load()
    configure_logging(verbose, service="consumer", fmt=settings.log_format)
    if not settings.signer_key_file:
        raise fail("LEDGER_SIGNER_KEY_FILE is not set (run `make up`, or `ledger keygen`)")
    try:
        signers = load_signers(settings.signer_key_file)
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    asyncio.run(
        run_consumer(
            bootstrap=settings.kafka_bootstrap,
            topics=settings.topics,
            relay_topics=frozenset({settings.relay_topic}),
            registry_topics=frozenset({settings.registry_topic}),
            group_id=settings.consumer_group,
            appender_dsn=settings.require("appender_url"),
            ledger_name=settings.ledger_name,
            signers=signers,
            policy=CheckpointPolicy(
                every_leaves=settings.checkpoint_every_leaves,
                every_ms=settings.checkpoint_every_ms,
            ),
            max_clock_skew_seconds=settings.max_clock_skew_seconds,
            session_timeout_ms=settings.session_timeout_ms,
            group_instance_id=settings.consumer_instance_id,
            max_batch=settings.consumer_max_batch,
            kafka_security=kafka_security(settings, KafkaRole.CONSUMER),
            ops=ops_config(settings, "consumer"),
            pool=settings.pg_pool(PgPool.APPENDER),
            witnesses=_witness_submission(settings),
            period=settings.period,
        )
    )


def _witness_submission(settings: Settings) -> WitnessSubmission | None:
    """LEDGER_WITNESSES as the consumer's submission settings (None: off)."""
    from consumers.process import WitnessSubmission
    from ledgerctl.witnesses import WitnessSettingsError, configured_witnesses

    try:
        witnesses = configured_witnesses(settings)
    except WitnessSettingsError as exc:
        raise fail(str(exc)) from exc
    if not witnesses:
        return None
    return WitnessSubmission(
        witnesses=witnesses,
        every_seconds=settings.witness_submit_every_ms / 1000,
        timeout_seconds=settings.witness_timeout_seconds,
    )


def serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 18080,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain: serve HTTPS only.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for --tls-cert.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="API processes sharing the port (default LEDGER_API_WORKERS, 1)."
        ),
    ] = None,
    verbose: bool = False,
) -> None:
    """Run the query API (until SIGTERM). Every read is recorded in the ledger."""
    from ledgerctl.apiworkers import run_workers, shared_cursor_key

    settings = Settings.load()
    configure_logging(verbose, service="api", fmt=settings.log_format)
    cert = tls_cert or (Path(settings.tls_cert_file) if settings.tls_cert_file else None)
    key = tls_key or (Path(settings.tls_key_file) if settings.tls_key_file else None)
    if (cert is None) != (key is None):
        raise fail("give both a TLS certificate and its key, or neither")
    count = workers or settings.api_workers
    options = _ApiOptions(host=host, port=port, tls_cert=cert, tls_key=key, verbose=verbose)
    if count == 1:
        options.run(None, None)
        return
    configured = None
    if settings.cursor_key_file:  # read once, then shared by every worker (which checks it)
        try:
            configured = Path(settings.cursor_key_file).read_bytes().strip()
        except OSError as exc:
            raise fail(f"cannot read LEDGER_CURSOR_KEY_FILE: {exc.strerror}") from exc
    raise typer.Exit(run_workers(count, options.run, shared_cursor_key(configured)))


@dataclass(frozen=True, slots=True, kw_only=True)
class _ApiOptions:
    """``serve``'s options, handed to each API worker (a spawned process)."""

    host: str
    port: int
    tls_cert: Path | None
    tls_key: Path | None
    verbose: bool

    def run(self, worker: Worker | None, cursor_key: bytes | None) -> None:
        from ledgerctl.serve import run_api

        settings = Settings.load()
        if worker is not None:  # a spawned process: its own logging set-up
            configure_logging(self.verbose, service="api", fmt=settings.log_format)
        asyncio.run(
            run_api(
                settings,
                host=self.host,
                port=self.port,
                tls_cert=self.tls_cert,
                tls_key=self.tls_key,
                ops=ops_config(settings, "api"),
                worker=worker,
                cursor_key_bytes=cursor_key,
            )
        )


def version(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Print the installed version of the ledger (the one /version and /readyz report)."""
    import json
    import platform

    from producers.ops import DISTRIBUTION, package_version

    if json_out:
        answer = {
            "name": DISTRIBUTION,
            "version": package_version(),
            "python": platform.python_version(),
        }
        print(json.dumps(answer))
    else:
        print(f"{DISTRIBUTION} {package_version()} (Python {platform.python_version()})")


@wait_app.command("kafka")
def wait_kafka(timeout: float = 60.0) -> None:
    """Wait until Kafka answers a metadata request."""
    from ledgerctl.infra import kafka_ready

    settings = Settings.load()
    try:
        asyncio.run(
            kafka_ready(
                settings.kafka_bootstrap, timeout, kafka_security(settings, KafkaRole.ADMIN)
            )
        )
    except TimeoutError as exc:
        raise fail(str(exc)) from exc


@wait_app.command("postgres")
def wait_postgres(timeout: float = 60.0) -> None:
    """Wait until PostgreSQL accepts the reader role."""
    from ledgerctl.infra import postgres_ready

    settings = Settings.load()
    try:
        asyncio.run(postgres_ready(settings.require("reader_url"), timeout))
    except TimeoutError as exc:
        raise fail(str(exc)) from exc


@wait_app.command("api")
def wait_api(timeout: float = 60.0) -> None:
    """Wait until the API answers /healthz."""
    from ledgerctl.infra import api_ready

    settings = Settings.load()
    try:
        asyncio.run(api_ready(settings.api_url, timeout))
    except TimeoutError as exc:
        raise fail(str(exc)) from exc
