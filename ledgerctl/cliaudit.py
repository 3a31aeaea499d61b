"""Reads of the ledger by the command line, recorded in the ledger before any output.

Invariant: a command that reads PHI straight from the database, Kafka or a receiver's
kept store (not through the API, which records its own reads) calls ``record_cli_read``
before it writes out a byte of what it read. That returns only once Kafka acknowledged
the AuditLogUsed event (acks=all, no spool: a read is not recorded until the ledger's
topic holds it), and otherwise raises ``UnavailableError``: the command then writes
nothing and exits non-zero. The record is signed with LEDGER_CLI_PRODUCER_KEY_FILE as
the producer that key was issued to (an unsigned record would be quarantined, not
appended, so without that key nothing is read either). The operator is the process's
effective OS user (not ``$USER``, which the caller can set), with the ``--reason`` they
gave.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pwd
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from ledger.audit.disclosure import whole_logs
from ledger.audit.readlog import LedgerRead, clean_parameters, clean_text
from ledger.errors import MalformedInputError, UnavailableError
from ledgerctl.readaudit import audit_event
from ledgerctl.settings import KafkaRole, Settings
from producers.emitter import Emitter, EmitterConfig
from producers.errors import ProducerError
from producers.events import Facility
from producers.signing import load_producer_key

#: The role a CLI read is recorded with (API tokens are investigator/auditor/admin).
OPERATOR_ROLE: Final = "operator"
#: Recorded as the query's method; its path is ``/cli/<command>``.
CLI_METHOD: Final = "CLI"
MAX_REASON_CHARS: Final = 256
#: How long a command waits for Kafka to take its read record before it gives up.
RECORD_TIMEOUT_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LogHead:
    """One log as the read saw it: everything up to ``size`` was (or will be) read."""

    origin: str
    size: int


def operator() -> str:
    """The effective OS user running this process (from the uid, not the environment)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"


def check_reason(reason: str) -> str:
    """The stated purpose of a read: 1-256 printable characters, not blank."""
    text = reason.strip()
    if not text or len(text) > MAX_REASON_CHARS or not text.isprintable():
        raise MalformedInputError(
            f"--reason must be 1-{MAX_REASON_CHARS} printable characters saying why "
            "this read of the ledger is needed (e.g. a ticket number)"
        )
    return text


def cli_read(
    *,
    command: str,
    reason: str,
    parameters: Mapping[str, str] | None = None,
    heads: Sequence[LogHead] = (),
    results: int | None = None,
) -> LedgerRead:
    """The one place a CLI read of the ledger is described (every command comes here).

    ``heads`` are the logs the read disclosed, each up to its size: recorded as what the
    read disclosed (every entry of those logs below that size, so the read shows up in
    the history of every patient they name; docs/read-attribution.md); ``results`` is
    their total. (Not also as a parameter: parameter values are cut at 1,024
    characters, so a ledger with many logs would be named only in part.)
    """
    params: dict[str, str] = {
        "reason": check_reason(reason),
        "host": socket.gethostname(),
        "uid": str(os.geteuid()),
    }
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        params["sudo_user"] = sudo_user  # informative only: the environment can lie
    params.update(parameters or {})
    if heads and results is None:
        results = sum(h.size for h in heads)
    return LedgerRead(
        read_id=uuid.uuid4(),
        at=datetime.now(UTC),
        subject=clean_text(operator(), 256),
        role=OPERATOR_ROLE,
        client=None,
        method=CLI_METHOD,
        path=f"/cli/{command}",
        status=200,
        parameters=clean_parameters(params),
        results=None if results is None else min(results, 2**31 - 1),
        disclosed=whole_logs({h.origin: h.size for h in heads}),
    )


def cli_producer(settings: Settings) -> tuple[str, str]:
    """(producer id, key file) the command line signs its read records with.

    ``UnavailableError`` without a usable LEDGER_CLI_PRODUCER_KEY_FILE: the ledger would
    quarantine an unsigned record, and a read that is not in the ledger must not happen.
    """
    key_file = settings.cli_producer_key_file
    if not key_file:
        raise UnavailableError(
            "this read of the ledger cannot be recorded: LEDGER_CLI_PRODUCER_KEY_FILE is not "
            "set (`ledger producer add ledger-cli --out FILE` issues one); nothing was read out"
        )
    try:
        return load_producer_key(key_file).producer_id, key_file
    except ProducerError as exc:
        raise UnavailableError(f"this read of the ledger cannot be recorded: {exc}") from exc


async def record_cli_read(settings: Settings, read: LedgerRead) -> None:
    """Hand ``read`` to Kafka and wait for its acknowledgement; ``UnavailableError`` if not.

    No spool: a record waiting on this host's disk is not in the ledger, and the
    command must not disclose anything the ledger cannot yet show.
    """
    try:
        security = settings.kafka(KafkaRole.OPERATOR)
    except ProducerError as exc:  # a bad setting or password file: named, no traceback
        raise UnavailableError(f"this read of the ledger cannot be recorded: {exc}") from exc
    producer_id, key_file = cli_producer(settings)
    config = EmitterConfig(
        bootstrap_servers=settings.kafka_bootstrap,
        kafka_security=security,
        producer_id=producer_id,
        producer_key_file=key_file,
        access_topic=settings.access_topic,
        relay_topic=settings.relay_topic,
        # Sequence numbers rise across runs without a file to keep them in.
        first_sequence=time.time_ns() // 1000,
        connect_timeout_seconds=RECORD_TIMEOUT_SECONDS,
        max_block_seconds=RECORD_TIMEOUT_SECONDS,
        stop_timeout_seconds=RECORD_TIMEOUT_SECONDS,
    )
    event = dataclasses.replace(
        audit_event(read, ledger_name=settings.ledger_name),
        facility=Facility(id=settings.ledger_name, name="PHI audit ledger command line"),
    )
    try:
        async with asyncio.timeout(3 * RECORD_TIMEOUT_SECONDS), Emitter(config) as emitter:
            await emitter.emit_and_confirm(event)
    except (ProducerError, TimeoutError) as exc:
        # The class name only: the message may quote the command's parameters.
        raise UnavailableError(
            f"this read of the ledger cannot be recorded ({type(exc).__name__}: Kafka at "
            f"{settings.kafka_bootstrap} did not take it into {settings.access_topic}); "
            "nothing was read out"
        ) from exc


def record_now(settings: Settings, read: LedgerRead) -> None:
    """``record_cli_read`` from synchronous code (a typer command)."""
    asyncio.run(record_cli_read(settings, read))
