"""Composition root of the API process: reader, token directory, read recorder, TLS.

Invariant: the API starts only with a working read recorder (an emitter with its
own spool), so no read of the ledger goes unrecorded; the spool lives under
LEDGER_SPOOL_DIR/ledger-api-<host>-<port> and survives restarts.
"""

from __future__ import annotations

import socket
from pathlib import Path

from ledger.__main__ import serve_api, tls_context
from ledger.api.common import public_base
from ledger.cursors import CursorKey
from ledger.errors import MalformedInputError
from ledgerctl.fhirfeed import EmitterFhirSubmitter
from ledgerctl.readaudit import EmitterReadRecorder
from ledgerctl.settings import KafkaRole, Settings
from producers.emitter import Emitter, EmitterConfig


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
) -> None:
    producer_id = api_producer_id(port)
    spool = Path(settings.spool_dir) / producer_id
    spool.parent.mkdir(parents=True, exist_ok=True)
    config = EmitterConfig(
        bootstrap_servers=settings.kafka_bootstrap,
        producer_id=producer_id,
        access_topic=settings.access_topic,
        relay_topic=settings.relay_topic,
        max_block_seconds=1.0,
        spool_dir=str(spool),
        kafka_security=settings.kafka(KafkaRole.API),
    )
    tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    key_file = settings.cursor_key_file
    try:
        cursor_key = CursorKey.from_file(Path(key_file)) if key_file else None
        public_url = None if settings.public_url is None else public_base(settings.public_url)
    except MalformedInputError as exc:
        raise SystemExit(f"LEDGER_CURSOR_KEY_FILE / LEDGER_PUBLIC_URL: {exc}") from exc
    async with Emitter(config) as emitter:
        recorder = EmitterReadRecorder(emitter, ledger_name=settings.ledger_name)
        await serve_api(
            fhir_submitter=EmitterFhirSubmitter(emitter),
            reader_dsn=settings.require("reader_url"),
            host=host,
            port=port,
            recorder=recorder,
            tls=tls,
            public_url=public_url,
            cursor_key=cursor_key,
        )
