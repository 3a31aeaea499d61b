"""Ports for the tests' own servers: below Linux's ephemeral range, one slice per worker.

A port picked by binding port 0 and releasing it comes from the ephemeral range
(32768-60999). Until the test's server binds it, any outgoing connection of the machine
may take it as its source port and any other ``bind(0)`` may be given it: a server that
then fails to bind, or a test that scrapes someone else's listener (both seen in CI).
Below that range the kernel hands nothing out on its own, so a port is only taken by an
explicit bind. Each pytest-xdist worker draws from a slice of its own, never hands the
same port out twice, and skips a port something is bound to now (the stack's servers,
a cluster's brokers); the ports of the stack named in the environment are never drawn.
deploy/local/common.sh keeps the stack's defaults below 20,000.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Sequence
from typing import Final

#: The range the workers share: above the stack's defaults, below the ephemeral range.
LOW: Final = 20_000
HIGH: Final = 32_000

_lock = threading.Lock()
_handed_out: set[int] = set()


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    width = (HIGH - LOW) // max(count, 1)
    start = LOW + width * (index % max(count, 1))
    return range(start, start + width)


def _configured() -> frozenset[int]:
    """The stack's ports set in the environment (``LEDGER_*_PORT``): never drawn."""
    return frozenset(
        int(value)
        for name, value in os.environ.items()
        if name.startswith("LEDGER_") and name.endswith("_PORT") and value.isdigit()
    )


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports_at(offsets: Sequence[int], kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A base port such that ``base + o`` is free for every offset, each one handed out
    to no other caller of this process before (and kept from them after)."""
    span = max(offsets) + 1
    where = _slice()
    taken = _configured()
    bases = range(where.start, where.stop - span + 1)
    first = random.randrange(len(bases)) if bases else 0
    with _lock:
        for i in range(len(bases)):  # every base once, from a random one on
            base = bases[(first + i) % len(bases)]
            ports = [base + o for o in offsets]
            if any(p in _handed_out or p in taken for p in ports):
                continue
            if all(_bindable(p, kind) for p in ports):
                _handed_out.update(ports)
                return base
    raise RuntimeError(f"no free ports left in {where} for offsets {list(offsets)}")


def free_port() -> int:
    """A TCP port nothing is bound to, drawn from this worker's slice."""
    return free_ports_at((0,))


def free_udp_port() -> int:
    """A UDP port nothing is bound to, drawn from this worker's slice."""
    return free_ports_at((0,), socket.SOCK_DGRAM)


def closed_address() -> str:
    """``127.0.0.1:port`` where nothing listens: a connection there is refused at once."""
    return f"127.0.0.1:{free_port()}"
