"""Test support: where the real stack is and how to reach this session's scratch ledger."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

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

    def topics(self, name: str) -> tuple[str, str]:
        """Fresh (access, relay) topic names for one test or group of tests."""
        return (f"t{self.run_id}-{name}-phi-access", f"t{self.run_id}-{name}-relay")

    def env(self, **extra: str) -> dict[str, str]:
        """Process environment for `ledger` subprocesses against this scratch ledger."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "KAFKA_"))}
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
        )
        env.update(extra)
        return env
