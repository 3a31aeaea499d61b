"""The tests' port allocator (tests/ports.py): below the ephemeral range, one slice per
worker, never the same port twice, never a bound one nor the stack's configured ones.

A port drawn with bind(0) and released was taken by another process before the test's
server bound it (CI: the Orthanc pipe's ops listener, "Address already in use").
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests import ports


def _ephemeral() -> range:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    drawn = [ports.free_port() for _ in range(200)]
    assert len(set(drawn)) == len(drawn)
    assert not set(drawn) & set(_ephemeral())
    assert all(ports.LOW <= p < ports.HIGH for p in drawn)


def test_each_worker_draws_from_its_own_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    seen = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        seen[worker] = {ports.free_port() for _ in range(50)}
    assert max(seen["gw0"]) < min(seen["gw1"])


def test_a_bound_port_and_a_configured_one_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_slice", lambda: range(30_000, 30_003))
    monkeypatch.setattr(ports, "_handed_out", set())
    monkeypatch.setenv("LEDGER_SOMETHING_PORT", "30001")
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(("127.0.0.1", 30_000))
        except OSError:
            pytest.skip("port 30000 is in use on this machine")
        assert ports.free_port() == 30_002
        with pytest.raises(RuntimeError, match="no free ports"):  # none left in the slice
            ports.free_port()


def test_a_block_of_ports_is_free_at_every_offset() -> None:
    base = ports.free_ports_at([0, 1, 100, 101])
    for offset in (0, 1, 100, 101):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", base + offset))
