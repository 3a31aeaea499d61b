"""Test support: where the real stack is and how to reach this session's scratch ledger."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ledger.audit.ingest import Accepted, IndexFields
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledgerctl.settings import KAFKA_SECURITY_VARS, KafkaRole, kafka_security_from_env
from producers.kafka_security import KafkaSecurity, client_kwargs

if TYPE_CHECKING:
    from tests.tcp_proxy import KafkaProxy

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / ".local" / "env"


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    if not path.is_file():
        pytest.fail(
            f"{path} is missing: start PostgreSQL and Kafka first with "
            "`deploy/local/stack.sh infra` (make test does this)",
            pytrace=False,
        )
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values


def kafka_security_env(env: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType({k: env[k] for k in KAFKA_SECURITY_VARS if env.get(k)})


def local_kafka(role: KafkaRole) -> KafkaSecurity:
    """``role``'s Kafka client settings from .local/env, for helpers (and helper processes)
    that have no ``Stack`` at hand; the same as ``Stack.kafka``."""
    return kafka_security_from_env(read_env_file(), role)


def kafka_proxy(bootstrap: str) -> KafkaProxy:
    """A cuttable proxy in front of the broker (tests/tcp_proxy.py). In front of the
    secured broker it terminates TLS with the broker's certificate from .local/secrets."""
    from tests.tcp_proxy import KafkaProxy

    host, _, port = bootstrap.rpartition(":")
    security = local_kafka(KafkaRole.ADMIN)
    if not security.tls:
        return KafkaProxy(host, int(port))
    secrets_dir = ROOT / ".local" / "secrets" / "kafka"
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(secrets_dir / "broker.crt", secrets_dir / "broker.key")
    client = ssl.create_default_context(cafile=security.ca_file)
    return KafkaProxy(host, int(port), server_tls=server, client_tls=client)


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


@dataclass(frozen=True)
class Stack:
    """Connection settings for this test session's scratch ledger."""

    kafka_bootstrap: str
    owner_url: str
    appender_url: str
    reader_url: str
    database: str
    run_id: str
    signer_key_file: str
    verifier_key: str
    #: API bearer tokens of this session, by role (investigator, auditor, admin).
    tokens: dict[str, str]
    spool_dir: str
    #: Where this session's producer keys are written (mode 600 files).
    keys_dir: str = ""
    #: (database, producer id) -> key file; shared by copies of this Stack.
    producer_keys: dict[tuple[str, str], str] = field(default_factory=dict)

    def producer_key(self, producer_id: str) -> str:
        """A key file for ``producer_id``, registered in this stack's ledger on first use."""
        found = self.producer_keys.get((self.database, producer_id))
        if found is not None:
            return found
        path = issue_producer_key(self.owner_url, producer_id, Path(self.keys_dir))
        self.producer_keys[(self.database, producer_id)] = path
        return path

    #: Kafka security settings of .local/env (KAFKA_SECURITY_VARS); empty: PLAINTEXT.
    kafka_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def kafka(self, role: KafkaRole) -> KafkaSecurity:
        """The client settings of ``role``'s principal (docs/kafka.md): producers write,
        the consumer reads, the admin creates topics."""
        return kafka_security_from_env(self.kafka_env, role)

    def kafka_client(self, role: KafkaRole) -> dict[str, Any]:
        """Keyword arguments for a raw aiokafka client authenticated as ``role``."""
        return {"bootstrap_servers": self.kafka_bootstrap, **client_kwargs(self.kafka(role))}

    def auth(self, role: str = "admin") -> dict[str, str]:
        """HTTP headers authenticating as this session's token of ``role``."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def topics(self, name: str) -> tuple[str, str]:
        """Fresh (access, relay) topic names for one test or group of tests."""
        return (f"t{self.run_id}-{name}-phi-access", f"t{self.run_id}-{name}-relay")

    def registry_topic(self, name: str) -> str:
        """A fresh registry topic name (create it with one partition)."""
        return f"t{self.run_id}-{name}-registry"

    def env(self, **extra: str) -> dict[str, str]:
        """Process environment for `ledger` subprocesses against this scratch ledger."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "KAFKA_"))}
        env.update(self.kafka_env)
        env.update(
            KAFKA_BOOTSTRAP=self.kafka_bootstrap,
            DATABASE_URL=self.owner_url,
            LEDGER_APPENDER_URL=self.appender_url,
            LEDGER_READER_URL=self.reader_url,
            LEDGER_NAME="test.ledger.local",
            LEDGER_ENV_FILE=os.devnull,
            LEDGER_SIGNER_KEY_FILE=self.signer_key_file,
            LEDGER_VERIFIER_KEY=self.verifier_key,
            LEDGER_CHECKPOINT_EVERY_MS="200",
            LEDGER_API_TOKEN=self.tokens["admin"],
            LEDGER_SPOOL_DIR=self.spool_dir,
            # `ledger simulate` / `demo` sign as "simulator"; give servers their own key.
            LEDGER_PRODUCER_KEY_FILE=self.producer_key("simulator"),
            # The command line's own read records (export, replay, ...) sign as ledger-cli.
            LEDGER_CLI_PRODUCER_KEY_FILE=self.producer_key("ledger-cli"),
            # Reads recorded by test APIs go to this session's topics, never the demo's.
            LEDGER_ACCESS_TOPIC=self.topics("default")[0],
            LEDGER_RELAY_TOPIC=self.topics("default")[1],
            # A consumer started with this environment reads this registry topic, never
            # the demo's (`ledger topics` creates it; the session fixture already did).
            LEDGER_REGISTRY_TOPIC=self.registry_topic("default"),
        )
        env.update(extra)
        return env


def issue_producer_key(owner_url: str, producer_id: str, keys_dir: Path) -> str:
    """Generate a key for ``producer_id`` into ``keys_dir`` and register it (from any
    thread or event loop); returns the key file."""
    from ledger.pg.producerkeys import add_producer_key
    from producers.signing import generate_producer_key, write_producer_key

    key = generate_producer_key(producer_id)
    keys_dir.mkdir(parents=True, exist_ok=True)
    path = keys_dir / f"{uuid.uuid4().hex}.key"
    write_producer_key(path, key)
    coro = add_producer_key(owner_url, producer_id=producer_id, public_key=key.public_key)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()
    return str(path)


def _local_keys_dir() -> Path:
    import tempfile

    directory = Path(tempfile.gettempdir()) / f"phi-ledger-test-producer-keys-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def local_producer_key(producer_id: str) -> str:
    """A key file for ``producer_id`` that no ledger knows, the same in every process of
    this machine's test runs: for tests that read Kafka directly, so the emitter under
    test (or a host process it starts) signs as it does in production."""
    from producers.errors import ProducerError
    from producers.signing import generate_producer_key, write_producer_key

    path = _local_keys_dir() / f"{uuid.uuid5(uuid.NAMESPACE_URL, producer_id).hex}.key"
    if not path.exists():
        with contextlib.suppress(ProducerError):  # another process wrote it first
            write_producer_key(path, generate_producer_key(producer_id))
    return str(path)


def local_authenticator() -> object:
    """A ``ProducerAuthenticator`` trusting every ``local_producer_key``."""
    from ledger.audit.producerauth import ProducerAuthenticator, RegisteredKey
    from producers.signing import load_producer_key

    keys = []
    for path in sorted(_local_keys_dir().glob("*.key")):
        key = load_producer_key(path)
        keys.append(
            RegisteredKey(
                key_id=key.key_id,  # type: ignore[arg-type]
                producer_id=key.producer_id,
                public_key=key.public_key,
                created_at=datetime.now(UTC),
            )
        )
    return ProducerAuthenticator(keys)


def signed_headers(
    key_file: str,
    records: Sequence[tuple[str, bytes]],
    partitions: Sequence[int] | None = None,
) -> list[list[tuple[str, bytes]]]:
    """Kafka headers authenticating each (topic, value) as the key's producer, in order.

    One seal per (topic, partition) batch, as the emitter signs (docs/producer-auth.md):
    the first record of each batch carries the seal, so each must reach its partition
    before the batch's other records. ``partitions`` gives each record's partition
    (default: every record on partition 0 of its topic)."""
    from producers.signing import ENVELOPE_HEADER, MAX_BATCH, load_producer_key

    signer = load_producer_key(key_file).signer()
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (topic, _) in enumerate(records):
        groups.setdefault((topic, 0 if partitions is None else partitions[i]), []).append(i)
    out: list[list[tuple[str, bytes]]] = [[] for _ in records]
    for members in groups.values():
        for start in range(0, len(members), MAX_BATCH):
            batch = members[start : start + MAX_BATCH]
            envelopes = signer.envelopes([records[i] for i in batch])
            for i, envelope in zip(batch, envelopes, strict=True):
                out[i] = [(ENVELOPE_HEADER, envelope)]
    return out


def superuser_url(stack: Stack) -> str:
    """The cluster superuser (for tamper tests only): what an attacker with DBA rights has."""
    password = (ROOT / ".local" / "secrets" / "pg-superuser").read_text().strip()
    parts = urlsplit(stack.owner_url)
    host = parts.hostname or "127.0.0.1"
    return urlunsplit(parts._replace(netloc=f"postgres:{password}@{host}:{parts.port}"))


#: A broker timestamp (2026-09-21) for tests that append records of events spread over
#: months into one log per partition: a record's Kafka timestamp says when the broker took
#: it (and so which period's log it goes to), not when its event happened.
APPENDED_MS = 1_790_000_000_000

#: The period (a month: ``LEDGER_PERIOD``'s default) of ``synthetic_batch``'s records,
#: whose broker timestamps are 1_700_000_000_000 ms (2023-11-14) plus their offset.
SYNTHETIC_PERIOD = "2023-11"


def live_origin(base: str) -> str:
    """The origin of this month's log under ``base``: where records the broker takes now
    go (a test running across a month's end would see two logs)."""
    return shard_origin(base, time.time_ns() // 1_000_000)


def shard_origin(base: str, timestamp_ms: int) -> str:
    """The origin of the month's log that a record stamped ``timestamp_ms`` goes to, under
    ``base`` (``<ledger>/<topic>/<partition>``), when the partition has no earlier log."""
    from ledger.log.periods import PeriodLength, period_of_ms

    return f"{base}/{period_of_ms(timestamp_ms, PeriodLength.MONTH).label}"


def synthetic_batch(topic: str, first_offset: int, n: int, rng: random.Random) -> list[Accepted]:
    items = []
    for offset in range(first_offset, first_offset + n):
        record = KafkaRecord(
            topic=topic,
            partition=0,
            offset=offset,
            timestamp_ms=1_700_000_000_000 + offset,
            timestamp_type=0,
            key=b"k",
            value=rng.randbytes(rng.randint(1, 60)),
        )
        event_id = uuid.UUID(int=rng.getrandbits(128))
        index = IndexFields(
            event_id=event_id, kind="phi_access", event_time=datetime.now(UTC),
            producer_id="tree-test", producer_seq=offset, facility_id="f", patient_id="p",
            patient_issuer=None, patient_state=None, user_id="u", user_name=None,
            user_role=None, user_org=None, dicom_event_id="110103", action="R",
            outcome="SUCCESS", study_uid=None, accession=None, network_address=None,
            purpose_of_use=None,
        )  # fmt: skip
        items.append(Accepted(record=record, leaf=encode_leaf(record), index=index))
    return items


def run_ledger(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The ``ledger`` command of this checkout with ``env``, its output captured."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("ledger")), *args],
        env=dict(env), cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def export_and_verify(
    env: Mapping[str, str], tmp: Path, reason: str
) -> subprocess.CompletedProcess[str]:
    """``ledger export`` into a fresh folder under ``tmp``, then ``ledger verify`` of it."""
    bundle = tmp / f"bundle-{secrets.token_hex(3)}"
    exported = run_ledger(env, "export", "--out", str(bundle), "--reason", reason)
    if exported.returncode != 0:
        raise AssertionError(exported.stderr)
    return run_ledger(env, "verify", "--bundle", str(bundle))
