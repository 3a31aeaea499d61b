"""The ``ledger`` command line (typer): the single composition root for operators.

Invariant: each subcommand reads ``Settings`` once, wires the components it needs,
and never prints a secret; failures exit non-zero with a one-line reason.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ledger.log.note import Verifier
from ledgerctl.producerkeys import producer_app
from ledgerctl.settings import KafkaRole, Settings
from producers.kafka_security import KafkaSecurity

app = typer.Typer(
    help="PHI audit ledger: ingest, serve, simulate and inspect a verifiable audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
wait_app = typer.Typer(help="Wait until a dependency is ready (for scripts).", no_args_is_help=True)
app.add_typer(wait_app, name="wait")
quarantine_app = typer.Typer(
    help="Records that could not be appended: list them, re-submit after a fix.",
    no_args_is_help=True,
)
app.add_typer(quarantine_app, name="quarantine")
token_app = typer.Typer(help="API bearer tokens (stored as hashes).", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(producer_app, name="producer")
atna_app = typer.Typer(
    help="IHE ATNA audit record repository: syslog over TLS/UDP in, events out.",
    no_args_is_help=True,
)
app.add_typer(atna_app, name="atna")

console = Console(stderr=True)

#: Every command that reads PHI straight from the database, Kafka or a kept store asks why.
_REASON = typer.Option(
    "--reason",
    help="Why you read this PHI (e.g. a ticket number); recorded in the ledger with your OS user.",
)


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def _verifiers(settings: Settings, keys: list[str] | None = None) -> tuple[Verifier, ...]:
    from ledger.errors import LedgerError
    from ledger.log.keys import parse_verifiers

    configured = keys or settings.verifier_key_strings()
    if not configured:
        raise _fail("no verifier key: pass --key or set LEDGER_VERIFIER_KEY")
    try:
        return parse_verifiers(configured)
    except LedgerError as exc:
        raise _fail(f"bad verifier key: {exc}") from exc


def _kafka(settings: Settings, role: KafkaRole) -> KafkaSecurity:
    """This command's Kafka client settings, or a one-line error naming what is wrong."""
    from producers.errors import KafkaSettingsError

    try:
        return settings.kafka(role)
    except KafkaSettingsError as exc:
        raise _fail(str(exc)) from exc


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code=1)


@app.command()
def migrate() -> None:
    """Apply pending schema migrations (as the schema owner, DATABASE_URL)."""
    from ledger.errors import LedgerError
    from ledger.pg.migrate import apply_migrations

    settings = Settings.load()
    try:
        applied = apply_migrations(settings.require("database_url"))
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@app.command()
def topics() -> None:
    """Create the event topics if they are missing."""
    from aiokafka.errors import KafkaError

    from ledgerctl.infra import ensure_topics

    settings = Settings.load()
    security = _kafka(settings, KafkaRole.ADMIN)
    try:
        created = asyncio.run(
            ensure_topics(settings.kafka_bootstrap, settings.topics, settings.partitions, security)
        )
    except KafkaError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")


@wait_app.command("kafka")
def wait_kafka(timeout: float = 60.0) -> None:
    """Wait until Kafka answers a metadata request."""
    from ledgerctl.infra import kafka_ready

    settings = Settings.load()
    try:
        asyncio.run(
            kafka_ready(settings.kafka_bootstrap, timeout, _kafka(settings, KafkaRole.ADMIN))
        )
    except TimeoutError as exc:
        raise _fail(str(exc)) from exc


@wait_app.command("postgres")
def wait_postgres(timeout: float = 60.0) -> None:
    """Wait until PostgreSQL accepts the reader role."""
    from ledgerctl.infra import postgres_ready

    settings = Settings.load()
    try:
        asyncio.run(postgres_ready(settings.require("reader_url"), timeout))
    except TimeoutError as exc:
        raise _fail(str(exc)) from exc


@wait_app.command("api")
def wait_api(timeout: float = 60.0) -> None:
    """Wait until the API answers /healthz."""
    from ledgerctl.infra import api_ready

    settings = Settings.load()
    try:
        asyncio.run(api_ready(settings.api_url, timeout))
    except TimeoutError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def consume(verbose: bool = False) -> None:
    """Run the consumer: Kafka topics -> ledger, exactly once (until SIGTERM)."""
    from consumers.process import run_consumer
    from ledger.errors import LedgerError
    from ledger.log.keys import load_signers
    from ledger.pg.checkpointer import CheckpointPolicy

    _logging(verbose)
    settings = Settings.load()
    if not settings.signer_key_file:
        raise _fail("LEDGER_SIGNER_KEY_FILE is not set (run `make up`, or `ledger keygen`)")
    try:
        signers = load_signers(settings.signer_key_file)
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    asyncio.run(
        run_consumer(
            bootstrap=settings.kafka_bootstrap,
            topics=settings.topics,
            relay_topics=frozenset({settings.relay_topic}),
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
            kafka_security=_kafka(settings, KafkaRole.CONSUMER),
        )
    )


@app.command()
def keygen(
    name: Annotated[
        str | None, typer.Option(help="Key name (default: LEDGER_NAME, the ledger's name).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the signer key to this new file (mode 600) instead of printing."),
    ] = None,
) -> None:
    """Generate an Ed25519 checkpoint signing key (C2SP signed-note key strings).

    Prints the verifier key on stdout; the signer key goes to --out, or to stdout too.
    """
    from ledger.log.note import generate_signer

    key_name = name or Settings.load().ledger_name
    signer_key, verifier_key = generate_signer(key_name)
    if out is None:
        print(signer_key)
    else:
        from ledger.log.keys import write_signer_file

        try:
            write_signer_file(out, [signer_key])
        except FileExistsError as exc:
            raise _fail(f"{out} exists; refusing to overwrite a key") from exc
        console.print(f"signer key written to {out} (mode 600)")
    print(verifier_key)


@app.command("verifier-key")
def verifier_key(
    key_file: Annotated[Path, typer.Argument(help="A signer key file.")],
) -> None:
    """Print the verifier key(s) of a signer key file, one per line."""
    from ledger.errors import LedgerError
    from ledger.log.keys import load_signers

    try:
        signers = load_signers(key_file)
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    for signer in signers:
        print(signer.verifier.key)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 18080,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain: serve HTTPS only.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for --tls-cert.")] = None,
    verbose: bool = False,
) -> None:
    """Run the query API (until SIGTERM). Every read is recorded in the ledger."""
    from ledgerctl.serve import run_api

    _logging(verbose)
    settings = Settings.load()
    cert = tls_cert or (Path(settings.tls_cert_file) if settings.tls_cert_file else None)
    key = tls_key or (Path(settings.tls_key_file) if settings.tls_key_file else None)
    if (cert is None) != (key is None):
        raise _fail("give both a TLS certificate and its key, or neither")
    asyncio.run(run_api(settings, host=host, port=port, tls_cert=cert, tls_key=key))


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="investigator, auditor or admin.")],
    subject: Annotated[str, typer.Option(help="Who holds it (recorded with every read).")],
    ttl_days: Annotated[
        float | None,
        typer.Option(help="Expire after this many days (more than 0, at most 3650)."),
    ] = None,
    note: Annotated[str | None, typer.Option(help="Free text, e.g. a ticket number.")] = None,
    quiet: Annotated[bool, typer.Option(help="Print only the token.")] = False,
) -> None:
    """Issue a token. It is printed once; only its SHA-256 is stored."""
    from ledger.audit.auth import parse_role
    from ledger.errors import LedgerError
    from ledgerctl.tokens import create_token, ttl_from_days

    settings = Settings.load()
    try:
        ttl = None if ttl_days is None else ttl_from_days(ttl_days)
        issued = asyncio.run(
            create_token(
                settings.require("database_url"),
                subject=subject,
                role=parse_role(role),
                ttl=ttl,
                note=note,
            )
        )
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    if quiet:
        print(issued.text)
    else:
        console.print(f"token {issued.token_id} for {subject} ({role}); it is shown only once:")
        print(issued.text)


@token_app.command("ensure", hidden=True)
def token_ensure(
    file: Annotated[Path, typer.Option(help="Where the token is kept (mode 600).")],
    role: Annotated[str, typer.Option()] = "admin",
    subject: Annotated[str, typer.Option()] = "local-admin",
) -> None:
    """Keep a live token in FILE, issuing one if needed (used by `make up`)."""
    from ledger.audit.auth import parse_role
    from ledgerctl.tokens import create_token, token_is_live, write_secret

    settings = Settings.load()
    dsn = settings.require("database_url")
    text = file.read_text(encoding="ascii").strip() if file.is_file() else ""
    if text and asyncio.run(token_is_live(dsn, text)):
        return
    issued = asyncio.run(
        create_token(dsn, subject=subject, role=parse_role(role), ttl=None, note="make up")
    )
    write_secret(file, issued.text)
    console.print(f"issued a new {role} token for {subject} into {file}")


@token_app.command("list")
def token_list() -> None:
    """Issued tokens (never their text)."""
    from ledgerctl.tokens import list_tokens

    settings = Settings.load()
    for t in asyncio.run(list_tokens(settings.require("database_url"))):
        expires = t.expires_at.isoformat() if t.expires_at else "never"
        console.print(
            f"{t.token_id}  {t.subject:<24} {t.role:<12} {t.state:<8} expires {expires}",
            soft_wrap=True,
        )


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token (the API honours it within 30 s)."""
    import uuid

    from ledger.errors import LedgerError
    from ledgerctl.tokens import revoke_token

    settings = Settings.load()
    try:
        asyncio.run(revoke_token(settings.require("database_url"), uuid.UUID(token_id)))
    except (LedgerError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"revoked {token_id}")


@atna_app.command("serve")
def atna_serve(
    cert: Annotated[Path | None, typer.Option(help="PEM certificate chain (TLS).")] = None,
    key: Annotated[Path | None, typer.Option(help="PEM private key for --cert.")] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option(help="CA that signs the senders' client certificates (required for TLS)."),
    ] = None,
    senders: Annotated[
        Path | None,
        typer.Option(help="TOML policy: the AuditSourceIDs each certificate CN may claim."),
    ] = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    tls_port: Annotated[int, typer.Option(help="RFC 5425 (syslog over TLS) port.")] = 16514,
    udp_port: Annotated[
        int | None,
        typer.Option(
            help="RFC 5426 (syslog over UDP) port. Off unless given: UDP is not "
            "authenticated and spoofable; datagrams may claim only [udp] sources."
        ),
    ] = None,
    no_tls: Annotated[bool, typer.Option(help="Do not listen on TLS.")] = False,
    kept_dir: Annotated[Path, typer.Option(help="Where unparseable messages are kept.")] = Path(
        ".local/atna/kept"
    ),
    producer_id: Annotated[
        str | None,
        typer.Option(help="Producer id (default: LEDGER_PRODUCER_KEY_FILE's, else atna-receiver)."),
    ] = None,
    default_facility: Annotated[
        str | None, typer.Option(help="Facility when a message names no site.")
    ] = None,
    max_message_bytes: Annotated[int, typer.Option(min=2048)] = 65536,
    max_connections: Annotated[int, typer.Option(min=1)] = 256,
    idle_timeout: Annotated[float, typer.Option(help="Seconds.")] = 300.0,
    parse_workers: Annotated[
        int | None,
        typer.Option(min=0, show_default="2", help="Processes that parse messages; 0: none."),
    ] = None,
    stats_every: Annotated[float, typer.Option(help="Log counters every N seconds.")] = 60.0,
    verbose: bool = False,
) -> None:
    """Run the ATNA receiver until SIGTERM."""
    from integrations.errors import AtnaPolicyError
    from ledgerctl.atna import DEFAULT_PRODUCER_ID, run_atna, stats_json
    from ledgerctl.simulate import key_producer_id
    from producers.signing import ProducerKeyError

    _logging(verbose)
    if senders is None:
        raise _fail(
            "--senders is required: the FILE saying which AuditSourceIDs each sender may claim"
        )
    if not no_tls and client_ca is None:
        raise _fail("--client-ca is required: TLS senders must present a client certificate")
    settings = Settings.load()
    if producer_id is None:
        producer_id = key_producer_id(settings.producer_key_file, DEFAULT_PRODUCER_ID)
    try:
        stats = asyncio.run(
            run_atna(
                settings,
                host=host,
                tls_port=None if no_tls else tls_port,
                udp_port=udp_port,
                cert=cert,
                key=key,
                client_ca=client_ca,
                senders=senders,
                kept_dir=kept_dir,
                producer_id=producer_id,
                default_facility=default_facility,
                max_message_bytes=max_message_bytes,
                max_connections=max_connections,
                idle_timeout=idle_timeout,
                parse_workers=parse_workers,
                stats_every=stats_every,
            )
        )
    except (AtnaPolicyError, ProducerKeyError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    print(f"ATNA receiver exited: {stats_json(stats)}", file=sys.stderr, flush=True)


@atna_app.command("kept")
def atna_kept(
    reason: Annotated[str, _REASON],
    kept_dir: Annotated[Path, typer.Option()] = Path(".local/atna/kept"),
    only: Annotated[str | None, typer.Option("--only-reason", help="Only this reason.")] = None,
    after_id: int = 0,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    raw: Annotated[bool, typer.Option(help="Include the raw bytes (base64).")] = False,
) -> None:
    """List the messages the receiver kept instead of mapping (JSON lines).

    Kept messages are audit records as sent (PHI): the read is recorded in the ledger
    (your OS user and --reason) before any is printed.
    """
    from ledger.errors import LedgerError
    from ledgerctl.atna import kept_json
    from ledgerctl.clireads import kept_recorded

    try:
        messages = kept_recorded(
            Settings.load(), reason=reason, kept_dir=kept_dir, only=only,
            after_id=after_id, limit=limit, raw=raw,
        )  # fmt: skip
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    for message in messages:
        print(kept_json(message, with_raw=raw))


@app.command()
def simulate(
    events: Annotated[int, typer.Option("--events", "-n", min=1, help="How many events.")] = 1000,
    rate: Annotated[float, typer.Option(help="Events per second; 0 = as fast as possible.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: new each run).")] = None,
    ids_out: Annotated[
        Path | None, typer.Option("--ids-out", help="Write the emitted event ids here.")
    ] = None,
    producer_id: Annotated[
        str | None,
        typer.Option(help="Producer id stamped on events (default: LEDGER_PRODUCER_KEY_FILE's)."),
    ] = None,
    accepted_out: Annotated[
        Path | None,
        typer.Option(help="Append each event id here as soon as emit() accepted it."),
    ] = None,
) -> None:
    """Emit realistic synthetic events through the producer library."""
    from ledgerctl.simulate import key_producer_id, run_simulation

    settings = Settings.load()
    if producer_id is None:
        producer_id = key_producer_id(settings.producer_key_file, "simulator")
    summary = asyncio.run(
        run_simulation(
            settings,
            events=events,
            rate=rate,
            seed=seed,
            ids_out=ids_out,
            producer_id=producer_id,
            accepted_out=accepted_out,
        )
    )
    console.print(
        f"emitted {summary.emitted} events ({summary.relays} critical-result relays) "
        f"in {summary.seconds:.2f}s ({summary.emitted / max(summary.seconds, 1e-9):,.0f}/s); "
        f"busiest patient: {summary.busiest_patient}"
    )


@app.command()
def history(
    patient_id: Annotated[str, typer.Argument(help="Patient id (MRN).")],
    issuer: Annotated[str | None, typer.Option(help="Assigning authority.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """Print one patient's access history, newest first, read through the API."""
    from ledgerctl.report import fetch_history, render_history, report_console

    settings = Settings.load()
    entries = asyncio.run(fetch_history(settings.api(), patient_id, issuer, limit))
    render_history(report_console(), patient_id, entries)


@app.command()
def demo(
    events: Annotated[int, typer.Option("--events", "-n", min=10)] = 300,
    seed: Annotated[int | None, typer.Option()] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for ingestion.")] = 90.0,
) -> None:
    """Emit a burst of demo events, wait for the ledger, print one patient's history."""
    from ledger.errors import LedgerError
    from ledgerctl.report import prove_entries, render_history, render_proofs, report_console
    from ledgerctl.simulate import run_demo

    settings = Settings.load()
    try:
        result = asyncio.run(run_demo(settings, events=events, seed=seed, timeout=timeout))
    except TimeoutError as exc:
        raise _fail(str(exc)) from exc
    out = report_console()
    out.print(
        f"Emitted {result.emitted} audit events ({result.facilities} facilities, "
        f"{result.users} users, {result.patients} patients, 1 critical-result relay) through "
        f"Kafka; all of patient {result.patient_id}'s events were in the ledger after "
        f"{result.seconds:.1f}s."
    )
    render_history(out, result.patient_id, result.history)
    verifiers = _verifiers(settings)
    try:
        proven = asyncio.run(prove_entries(settings.api(), result.history, verifiers))
    except LedgerError as exc:
        raise _fail(f"VERIFICATION FAILED: {exc}") from exc
    render_proofs(out, proven, verifiers)


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="New (or empty) directory for the bundle.")],
    reason: Annotated[str, _REASON],
) -> None:
    """Write an offline bundle for auditors: entries, tiles, checkpoints, index, schemas.

    The bundle holds every patient's PHI: the read is recorded in the ledger (your OS
    user and --reason) before anything is written, and the files are owner-only.
    """
    from ledger.errors import LedgerError
    from ledgerctl.clireads import run_export

    settings = Settings.load()
    with _progress() as report:
        try:
            summary = run_export(settings, out=out, reason=reason, progress=report)
        except LedgerError as exc:
            raise _fail(str(exc)) from exc
    console.print(
        f"exported {summary.logs} logs, {summary.leaves:,} leaves and "
        f"{summary.checkpoints:,} checkpoints to {out} (owner-only; this read is in the ledger)"
    )


@app.command()
def verify(
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key", help="Verifier key (repeat for rotation); default LEDGER_VERIFIER_KEY."
        ),
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option(help="Verify an export bundle (from `ledger export`).")
    ] = None,
    api: Annotated[
        str | None, typer.Option(help="Verify a running ledger through its read API.")
    ] = None,
    proof: Annotated[
        Path | None, typer.Option(help="Verify one .tlog-proof file (offline).")
    ] = None,
    check_index: Annotated[
        bool, typer.Option("--check-index/--no-check-index", help="Also decode every event.")
    ] = True,
    jobs: Annotated[int, typer.Option(min=1, help="Processes: logs verify in parallel.")] = 1,
    trusted_checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--trusted-checkpoint",
            help="A checkpoint you kept earlier (file, or a directory of *.checkpoint files; "
            "repeatable): the log must still reproduce it, so truncation or a replaced "
            "history is caught.",
        ),
    ] = None,
    heads_out: Annotated[
        Path | None,
        typer.Option(
            help="After an OK verdict, write each log's verified tree head here as a "
            "checkpoint file (keep it; pass it to --trusted-checkpoint next time)."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document instead of the report.")
    ] = False,
) -> None:
    """Verify signatures, roots, consistency and the event index; report EVERY inconsistency.

    With --api, each log is pinned to its latest signed checkpoint, fetched
    first; only what it covers is checked, so a ledger that appends meanwhile
    verifies. Ends with the tree head (size, root) of every log and one
    verdict line. Exits 0 when everything verifies, 1 on any finding.
    """
    from ledger.errors import LedgerError
    from ledgerctl.verdict import load_trusted

    settings = Settings.load()
    verifiers = _verifiers(settings, key)
    if sum(x is not None for x in (bundle, api, proof)) > 1:
        raise _fail("give one of --bundle, --api, --proof")
    try:
        trusted = load_trusted(trusted_checkpoint or [])
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    try:
        ok = _run_verify_or_explain(
            console=report_console_stdout(),
            verifiers=verifiers,
            bundle=bundle,
            api=settings.api(api) if not (bundle or proof) else None,
            proof=proof,
            check_index=check_index,
            ledger_name=settings.ledger_name,
            jobs=jobs,
            trusted=trusted,
            json_out=json_out,
            heads_out=heads_out,
        )
    except _VerifyUnavailable as exc:
        console.print(f"[red]error:[/red] cannot verify: {exc}")
        raise typer.Exit(code=2) from exc
    if not ok:
        raise typer.Exit(code=1)


class _VerifyUnavailable(Exception):
    """The ledger could not be read (not: it was read and is inconsistent)."""


def _run_verify_or_explain(**kwargs: Any) -> bool:
    """``run_verify``, with unreachable APIs and refused requests as one clear error."""
    import aiohttp

    from ledger.errors import LedgerError
    from ledgerctl.verifying import run_verify

    try:
        return run_verify(**kwargs)
    except aiohttp.ClientResponseError as exc:
        hint = " (is LEDGER_API_TOKEN set and valid?)" if exc.status in (401, 403) else ""
        raise _VerifyUnavailable(f"the API answered {exc.status} {exc.message}{hint}") from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _VerifyUnavailable(f"the API is unreachable: {exc}") from exc
    except LedgerError as exc:  # an unusable bundle or API document
        raise _VerifyUnavailable(str(exc)) from exc


@quarantine_app.command("list")
def quarantine_list(
    reason: Annotated[str | None, typer.Option(help="Only this reason code.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """List quarantined records (through the API), oldest first."""
    from rich.table import Table

    from ledgerctl.quarantine import fetch_quarantine

    settings = Settings.load()
    records = asyncio.run(fetch_quarantine(settings.api(), reason=reason, limit=limit))
    table = Table(title=f"{len(records)} quarantined record(s)", title_justify="left")
    for column in ("id", "when", "topic/partition@offset", "reason", "bytes", "resent", "detail"):
        table.add_column(column, overflow="fold")
    for r in records:
        value = r.get("record_value") or ""
        table.add_row(
            str(r["quarantine_id"]),
            str(r["quarantined_at"])[:19],
            f"{r['topic']}/{r['kafka_partition']}@{r['kafka_offset']}",
            str(r["reason"]),
            str(len(value) * 3 // 4),
            str(r["resubmissions"]),
            str(r["detail"]),
        )
    report_console_stdout().print(table)


@quarantine_app.command("resubmit")
def quarantine_resubmit(
    quarantine_id: Annotated[int, typer.Argument(help="Quarantine id (from `list`).")],
    reason: Annotated[str, _REASON],
    force: Annotated[bool, typer.Option(help="Send even conflicts and oversize records.")] = False,
) -> None:
    """Send a quarantined record's bytes back to its topic (after the cause was fixed).

    It reads the record's raw bytes (PHI) from the database: the read is recorded in
    the ledger (your OS user and --reason) first.
    """
    from ledger.errors import LedgerError
    from ledgerctl.clireads import record_resubmit
    from ledgerctl.quarantine import resubmit

    settings = Settings.load()
    try:
        record_resubmit(settings, quarantine_id=quarantine_id, force=force, reason=reason)
        done = asyncio.run(
            resubmit(
                dsn=settings.require("appender_url"),
                bootstrap=settings.kafka_bootstrap,
                quarantine_id=quarantine_id,
                force=force,
                security=_kafka(settings, KafkaRole.OPERATOR),
            )
        )
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"re-submitted record {done.quarantine_id} to {done.topic}/{done.partition}@{done.offset}"
    )


spool_app = typer.Typer(help="A producer's local spool (events Kafka has not taken yet).")
app.add_typer(spool_app, name="spool")


@spool_app.command("drain")
def spool_drain(
    producer_id: Annotated[str, typer.Option(help="Whose spool (LEDGER_SPOOL_DIR/<id>).")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Kafka.")] = 300.0,
) -> None:
    """Send a producer's leftover spool to Kafka (e.g. after its host died), in order."""
    from ledgerctl.simulate import drain_spool

    settings = Settings.load()
    try:
        health = asyncio.run(drain_spool(settings, producer_id, timeout))
    except TimeoutError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"spool of {producer_id} drained: {health.sent} event(s) sent, 0 left")


@app.command()
def alerts(limit: Annotated[int, typer.Option(min=1, max=1000)] = 100) -> None:
    """List security alerts raised while ingesting (e.g. an event id re-sent with other content)."""
    from ledgerctl.quarantine import fetch_alerts

    settings = Settings.load()
    rows = asyncio.run(fetch_alerts(settings.api(), limit=limit))
    out = report_console_stdout()
    if not rows:
        out.print("no security alerts")
    for a in rows:
        out.print(f"[red]{a['raised_at'][:19]} {a['kind']}[/red] {a['detail']}")


@app.command()
def replay(
    database: Annotated[
        str, typer.Option(help="Target database (same server); created if missing, must be empty.")
    ],
    reason: Annotated[str, _REASON],
    timeout: Annotated[float, typer.Option(help="Seconds to reach the end offsets.")] = 3600.0,
) -> None:
    """Rebuild the ledger from the Kafka topics into an empty database; compare the roots.

    It reads every event's PHI from Kafka: the read is recorded in the ledger (your OS
    user and --reason) before the first record is read.
    """
    import base64

    from ledger.errors import LedgerError
    from ledger.log.keys import load_signers
    from ledgerctl.clireads import replay_recorder
    from ledgerctl.replay import replay as run_replay
    from ledgerctl.replay import source_roots

    settings = Settings.load()
    if not settings.signer_key_file:
        raise _fail("LEDGER_SIGNER_KEY_FILE is not set")
    try:
        record = replay_recorder(settings, database=database, reason=reason)
        logs = asyncio.run(
            run_replay(
                owner_url=settings.require("database_url"),
                appender_url=settings.require("appender_url"),
                database=database,
                bootstrap=settings.kafka_bootstrap,
                topics=settings.topics,
                relay_topics=frozenset({settings.relay_topic}),
                ledger_name=settings.ledger_name,
                signers=load_signers(settings.signer_key_file),
                timeout=timeout,
                before_reading=record,
                security=_kafka(settings, KafkaRole.REPLAY),
            )
        )
        source = asyncio.run(source_roots(settings.require("reader_url"), logs))
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    out = report_console_stdout()
    differ = 0
    for log in logs:
        theirs = source.get(log.origin)
        if log.size == 0:
            verdict = "empty (no entries yet)"
        elif theirs is None:
            verdict = "no source log to compare"
        else:
            verdict = "identical to the source" if theirs == log.root else "DIFFERS from the source"
        differ += theirs is not None and theirs != log.root
        root = base64.b64encode(log.root).decode()
        out.print(f"{log.origin}  size {log.size}  root {root}  {verdict}")
    if differ:
        raise typer.Exit(code=1)


def _progress() -> Any:
    from ledgerctl.verifying import progress_bar

    return progress_bar(console)


def report_console_stdout() -> Console:
    from ledgerctl.report import report_console

    return report_console()


def main() -> None:
    from producers.errors import KafkaSettingsError

    try:
        app()
    except KafkaSettingsError as exc:  # a bad Kafka setting or file, met deep in a command
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
