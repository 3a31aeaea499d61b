"""`ledger producer add|list|revoke`: the registry an operator manages."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from producers.signing import load_producer_key
from tests.support import ROOT, Stack

pytestmark = pytest.mark.integration

LEDGER = str(Path(sys.executable).with_name("ledger"))


def ledger(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEDGER, "producer", *args], env=stack.env(), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_add_list_revoke(stack: Stack, tmp_path: Path) -> None:
    producer = f"cli-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "p.key"
    added = ledger(stack, "add", producer, "--out", str(out))
    assert added.returncode == 0, added.stderr
    key = load_producer_key(out)  # mode 600, or it would be refused
    assert out.stat().st_mode & 0o777 == 0o600
    assert added.stdout.strip() == key.key_id
    assert key.seed.hex() not in added.stdout + added.stderr, "the private key is never printed"

    listed = ledger(stack, "list")
    (line,) = [x for x in listed.stdout.splitlines() if x.startswith(key.key_id)]
    assert producer in line
    assert "active" in line

    again = ledger(stack, "add", producer, "--out", str(out))
    assert again.returncode == 1, "an existing key file is never overwritten"

    revoked = ledger(stack, "revoke", key.key_id, "--reason", "test rotation")
    assert revoked.returncode == 0, revoked.stderr
    (line,) = [x for x in ledger(stack, "list").stdout.splitlines() if x.startswith(key.key_id)]
    assert "revoked" in line
    assert "test rotation" in line
    assert ledger(stack, "revoke", "0123456789abcdef").returncode == 1, "unknown key id"
