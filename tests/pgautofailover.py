"""A pg_auto_failover formation of the test's own: a monitor, a primary and a
synchronous standby (Debian's ``postgresql-<major>-auto-failover`` and
``pg-auto-failover-cli``; ``deploy/local/pgautofailover.sh install``), each node a
``pg_autoctl run`` keeper on a free port in a temporary directory. The monitor's health
checks are tightened (MONITOR_SETTINGS) so a failover does not wait for defaults meant
for a network of machines.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.pgcluster import LEDGER_ROLES, PARTMAN_SQL, as_pg, free_port, pg_bin

#: Monitor settings (milliseconds): check every node each 500 ms, call a node unhealthy
#: after 2 s without an answer, promote 2 s later. The defaults (5 s, 20 s, 30 s) suit a
#: network, not a test.
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": "500",
    "pgautofailover.health_check_timeout": "500",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "200",
    "pgautofailover.node_considered_unhealthy_timeout": "2000",
    "pgautofailover.startup_grace_period": "2000",
    # How long the monitor waits for a lost primary to demote itself before promoting.
    "pgautofailover.primary_demote_timeout": "2000",
}


def installed() -> bool:
    return shutil.which("pg_autoctl") is not None and (
        Path(f"/usr/lib/postgresql/{pg_bin().parent.name}/lib/pgautofailover.so").exists()
    )


@dataclass
class Node:
    name: str
    port: int
    pgdata: Path
    process: subprocess.Popen[bytes] | None = None

    def postmaster_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


@dataclass
class Formation:
    top: Path
    password: str
    monitor: Node
    nodes: list[Node] = field(default_factory=list)

    # -- pg_autoctl

    def _env(self) -> list[str]:
        """pg_autoctl keeps its config and state under XDG directories: ours, not ~."""
        return [
            "env",
            f"XDG_CONFIG_HOME={self.top / 'xdg-config'}",
            f"XDG_DATA_HOME={self.top / 'xdg-data'}",
            f"XDG_RUNTIME_DIR={self.top / 'xdg-run'}",
            f"PATH={pg_bin()}:{os.environ['PATH']}",
            f"PG_CONFIG={pg_bin() / 'pg_config'}",
        ]

    def autoctl(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            as_pg([*self._env(), "pg_autoctl", *args]),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_autoctl {args[0]} failed: {done.stderr[-3000:]}")
        return done.stdout

    def _run(self, node: Node, *create: str) -> None:
        log = (self.top / f"{node.name}.log").open("ab")
        node.process = subprocess.Popen(
            as_pg([*self._env(), "pg_autoctl", *create, "--run"]),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as one machine
        )
        log.close()

    @property
    def monitor_uri(self) -> str:
        return f"postgres://autoctl_node@127.0.0.1:{self.monitor.port}/pg_auto_failover?sslmode=disable"

    def monitor_sql(self, statement: str) -> str:
        return self._psql(self.monitor, statement, database="pg_auto_failover", user="autoctl_node")

    def _psql(self, node: Node, statement: str, *, database: str, user: str = "postgres") -> str:
        done = subprocess.run(
            ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
             str(node.port), "-U", user, "-d", database, "-c", statement],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql on {node.name}: {done.stderr.strip()}")
        return done.stdout.strip()

    def sql(self, node: Node, statement: str, database: str = "ledger") -> str:
        return self._psql(node, statement, database=database)

    # -- the formation

    def start_monitor(self) -> None:
        self._run(
            self.monitor,
            "create", "monitor", "--pgdata", str(self.monitor.pgdata),
            "--pgport", str(self.monitor.port), "--hostname", "127.0.0.1",
            "--auth", "trust", "--no-ssl",
        )  # fmt: skip
        self._wait(lambda: self.monitor_sql("SELECT 1") == "1", "the monitor")
        for name, value in MONITOR_SETTINGS.items():
            self._psql(self.monitor, f"ALTER SYSTEM SET {name} = '{value}'", database="postgres")
        self._psql(self.monitor, "SELECT pg_reload_conf()", database="postgres")

    def add_node(self, name: str) -> Node:
        node = Node(name=name, port=free_port(), pgdata=self.top / name)
        self.nodes.append(node)
        self._run(
            node,
            "create", "postgres", "--pgdata", str(node.pgdata), "--pgport", str(node.port),
            "--pghost", "127.0.0.1", "--listen", "127.0.0.1", "--hostname", "127.0.0.1",
            "--name", name, "--dbname", "ledger", "--monitor", self.monitor_uri,
            "--auth", "trust", "--no-ssl", "--pgctl", str(pg_bin() / "pg_ctl"),
        )  # fmt: skip
        return node

    def states(self) -> dict[str, tuple[str, str]]:
        """Each node's (reported state, goal state), from the monitor."""
        rows = self.monitor_sql(
            "SELECT nodename, reportedstate, goalstate FROM pgautofailover.node"
        )
        out = {}
        for line in rows.splitlines():
            name, reported, goal = line.split("|")
            out[name] = (reported, goal)
        return out

    def wait_states(self, wanted: dict[str, str], timeout: float = 180) -> None:
        def reached() -> bool:
            now = self.states()
            return all(now.get(n, ("", ""))[0] == s == now[n][1] for n, s in wanted.items())

        self._wait(reached, f"states {wanted}", timeout)

    def primary(self) -> Node:
        """The node the monitor wants as the primary (a dead node's reported state is
        the last it sent: only the goal state is current)."""
        now = self.states()
        found = [
            n
            for n in self.nodes
            if now.get(n.name, ("", ""))[1] in ("primary", "single", "wait_primary")
        ]
        if len(found) != 1:
            raise RuntimeError(f"no single primary: {now}")
        return found[0]

    def create_ledger(self, node: Node) -> None:
        """The ledger's roles and migrated database on the primary (replicated to the rest)."""
        from ledger.pg.migrate import apply_migrations

        pw = self.password.replace("'", "''")
        for role in LEDGER_ROLES:
            extra = " CREATEDB" if role == "ledger_owner" else ""
            self.sql(node, f"CREATE ROLE {role} LOGIN{extra} PASSWORD '{pw}'", "postgres")
        self.sql(node, "ALTER DATABASE ledger OWNER TO ledger_owner", "postgres")
        self.sql(node, "ALTER SCHEMA public OWNER TO ledger_owner")
        self.sql(node, PARTMAN_SQL)  # the superuser's step of deploy/local/postgres.sh
        apply_migrations(self.url("ledger_owner"))

    def url(self, role: str, *, attrs: str = "read-write") -> str:
        """A multi-host DSN over every node: the session goes to the one that takes writes."""
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return (
            f"postgresql://{role}:{quote(self.password)}@{hosts}/ledger"
            f"?target_session_attrs={attrs}"
        )

    def kill(self, node: Node) -> None:
        """The machine dies: SIGKILL its keeper and its PostgreSQL, no goodbye to anyone."""
        pid = node.postmaster_pid()
        if node.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(timeout=30)
        if pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for node in [*self.nodes, self.monitor]:
            if node.process is not None and node.process.poll() is None:
                try:
                    os.killpg(node.process.pid, signal.SIGTERM)
                    node.process.wait(timeout=30)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(node.process.pid, signal.SIGKILL)
            if (node.pgdata / "postmaster.pid").exists():
                subprocess.run(
                    as_pg(
                        [
                            str(pg_bin() / "pg_ctl"),
                            "-D",
                            str(node.pgdata),
                            "-m",
                            "immediate",
                            "stop",
                        ]
                    ),
                    capture_output=True,
                    timeout=60,
                    check=False,
                )

    @staticmethod
    def _wait(check: object, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if check():  # type: ignore[operator]
                    return
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                last = exc
            time.sleep(0.3)
        raise TimeoutError(f"{what} not reached in {timeout:.0f} s ({last})")


@contextmanager
def formation(top: Path, password: str) -> Iterator[Formation]:
    """A monitor, then ``node1`` (primary), then ``node2`` (its synchronous standby)."""
    for sub in ("xdg-config", "xdg-data", "xdg-run"):
        (top / sub).mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(top / sub, "postgres", "postgres")
    if os.geteuid() == 0:
        shutil.chown(top, "postgres", "postgres")
    f = Formation(
        top=top,
        password=password,
        monitor=Node(name="monitor", port=free_port(), pgdata=top / "monitor"),
    )
    try:
        f.start_monitor()
        first = f.add_node("node1")
        f.wait_states({"node1": "single"})
        f.create_ledger(first)
        # pg_basebackup asks for a spread checkpoint: with the migrations' pages dirty it
        # paces their writes over minutes. Written now, the standby's copy starts at once.
        f.sql(first, "CHECKPOINT")
        f.add_node("node2")
        f.wait_states({"node1": "primary", "node2": "secondary"})
        yield f
    finally:
        f.stop()
