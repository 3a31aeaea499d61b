"""``ledger migrate``, ``topics``, ``keygen`` and ``verifier-key``: provisioning the
database schema, the Kafka topics and the checkpoint signing keys.

Invariant: a signer key is written only to a new file (mode 600), never over another.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from ledgerctl.commands.common import console, fail, kafka_security
from ledgerctl.settings import KafkaRole, Settings


def migrate() -> None:
    """Apply pending schema migrations (as the schema owner, DATABASE_URL)."""
    from ledger.errors import LedgerError
    from ledger.pg.migrate import apply_migrations

    settings = Settings.load()
    try:
        applied = apply_migrations(settings.require("database_url"))
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    console.print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


def topics() -> None:
    """Create the event topics and the registry topic (one partition) if they are missing,
    replicated as LEDGER_TOPIC_REPLICATION_FACTOR / LEDGER_TOPIC_MIN_INSYNC_REPLICAS say."""
    from aiokafka.errors import KafkaError

    from ledgerctl.infra import ensure_topics, under_replicated

    settings = Settings.load()
    security = kafka_security(settings, KafkaRole.ADMIN)
    try:
        created = asyncio.run(
            ensure_topics(
                settings.kafka_bootstrap,
                settings.event_topics,
                settings.partitions,
                security,
                replication=settings.replication,
            )
        )
        created += asyncio.run(
            ensure_topics(
                settings.kafka_bootstrap,
                (settings.registry_topic,),
                1,
                security,
                replication=settings.replication,
            )
        )
        gaps = asyncio.run(
            under_replicated(
                settings.kafka_bootstrap, settings.topics, settings.replication, security
            )
        )
    except KafkaError as exc:
        raise fail(str(exc)) from exc
    console.print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")
    for gap in gaps:  # an existing topic is never altered: say so (docs/scaling.md)
        console.print(f"warning: topic {gap}; recreate it to change that")


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
            raise fail(f"{out} exists; refusing to overwrite a key") from exc
        console.print(f"signer key written to {out} (mode 600)")
    print(verifier_key)


def verifier_key(
    key_file: Annotated[Path, typer.Argument(help="A signer key file.")],
) -> None:
    """Print the verifier key(s) of a signer key file, one per line."""
    from ledger.errors import LedgerError
    from ledger.log.keys import load_signers

    try:
        signers = load_signers(key_file)
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    for signer in signers:
        print(signer.verifier.key)
