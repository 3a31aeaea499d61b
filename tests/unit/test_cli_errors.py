"""The ``ledger`` command line's answer to a setup mistake: one ``error:`` line, exit 1,
no traceback (a traceback reads as a crash and hides the sentence that says what to do)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from producers.files import DirectoryLock
from producers.signing import generate_producer_key, write_producer_key

LEDGER = str(Path(sys.executable).with_name("ledger"))


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``ledger`` run that reaches nothing (Kafka's discard port)."""
    key = tmp_path / "pacs-1.key"
    if not key.exists():
        write_producer_key(key, generate_producer_key("pacs-1"))
    return {
        **os.environ,
        "LEDGER_PRODUCER_KEY_FILE": str(key),
        "KAFKA_BOOTSTRAP": "127.0.0.1:9",
        "COLUMNS": "200",
        **extra,
    }


def drain(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEDGER, "spool", "drain", "--producer-id", "pacs-1", "--timeout", "1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_spool_another_process_holds_is_one_clear_error(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    held = DirectoryLock(spool / "pacs-1" / "lock")
    (spool / "pacs-1").mkdir(parents=True)
    held.acquire()  # another emitter (here: this test) uses pacs-1's spool
    try:
        done = drain(env_for(tmp_path, LEDGER_SPOOL_DIR=str(spool)))
    finally:
        held.release()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: spool directory {spool / 'pacs-1'} is in use by another process" in (
        done.stdout + done.stderr
    )


def test_another_producers_key_is_one_clear_error(tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    write_producer_key(other, generate_producer_key("pacs-2"))
    done = drain(env_for(tmp_path, LEDGER_SPOOL_DIR=str(tmp_path / "spool"),
                         LEDGER_PRODUCER_KEY_FILE=str(other)))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: the key in {other} is producer 'pacs-2''s, not 'pacs-1''s" in done.stderr
