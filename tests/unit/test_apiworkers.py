"""API workers' identities: producer ids, key files and ops ports of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.audit.cursors import MIN_KEY_BYTES
from ledgerctl.apiworkers import Worker, shared_cursor_key


def test_worker_zero_is_the_single_process_and_the_others_append_their_index() -> None:
    assert Worker().producer_id("ledger-api-h-18080") == "ledger-api-h-18080"
    assert Worker(index=2, count=3).producer_id("ledger-api-h-18080") == "ledger-api-h-18080-w2"


def test_each_worker_signs_with_a_key_file_of_its_own(tmp_path: Path) -> None:
    key = tmp_path / "api.key"
    key.write_text("k0")
    (tmp_path / "api-w1.key").write_text("k1")
    assert Worker().key_file(str(key)) == str(key)
    assert Worker(index=1, count=2).key_file(str(key)) == str(tmp_path / "api-w1.key")
    assert Worker(index=1, count=2).key_file(None) is None
    with pytest.raises(SystemExit, match=r"api-w2\.key is missing"):
        Worker(index=2, count=3).key_file(str(key))


def test_ops_ports_follow_the_configured_one_and_any_free_port_stays_so() -> None:
    assert [Worker(index=k, count=3).ops_port(18090) for k in range(3)] == [18090, 18091, 18092]
    assert Worker(index=1, count=2).ops_port(0) == 0


def test_one_cursor_key_for_all_workers() -> None:
    assert shared_cursor_key(b"x" * 40) == b"x" * 40
    fresh = shared_cursor_key(None)
    assert len(fresh) == MIN_KEY_BYTES
    assert fresh != shared_cursor_key(None)
