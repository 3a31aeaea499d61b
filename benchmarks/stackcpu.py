"""CPU seconds the local stack's servers have used: where an ingest's CPU goes.

On a 2-core machine the end-to-end rate is bounded by the CPU every process spends per
event (consumer, PostgreSQL, the broker) together; the consumer's own share says how much
a faster consumer could ever buy. Reads Linux's /proc: a server's threads, its live
children, and the children it has reaped (PostgreSQL's backends that already exited).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

LOCAL = Path(__file__).resolve().parents[1] / ".local"


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _own_and_reaped(pid: int) -> float:
    fields = _stat(pid)  # fields[0] is the state: utime is [11], stime [12], cutime [13]...
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _live_children(parent: int) -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat(int(entry.name))[1]) == parent:
                total += process_cpu(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def postgres_cpu() -> float:
    """The local PostgreSQL cluster: its postmaster, live backends and reaped ones."""
    pid = int((LOCAL / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    return _own_and_reaped(pid) + _live_children(pid)


def kafka_cpu() -> float:
    """The local single broker (every thread of its JVM)."""
    pid = int((LOCAL / "run" / "kafka.pid").read_text().split()[0])
    return _own_and_reaped(pid)


#: The servers ``stack_cpu`` reads, by name.
SERVERS: Final = {"PostgreSQL": postgres_cpu, "Kafka": kafka_cpu}


def stack_cpu() -> dict[str, float]:
    """CPU seconds so far of PostgreSQL and the broker, by name; a server that is not the
    local stack's (no pid file here, say a remote database) is left out."""
    found = {}
    for name, read in SERVERS.items():
        try:
            found[name] = read()
        except (OSError, ValueError, IndexError):
            continue
    return found
