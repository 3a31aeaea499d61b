"""A throwaway PostgreSQL cluster of its own, started by deploy/local/postgres.sh.

For tests that stop, restart or reconfigure the server: they must never touch the shared
one, which the rest of the suite (possibly in another worker process) is using. The
script runs against a temporary LEDGER_PG_HOME on a free port and sets the cluster up as
`make up` does (roles with the shared secrets, pg_partman, the detach guard).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pgcluster import free_port
from tests.support import ROOT

SCRIPT = ROOT / "deploy" / "local" / "postgres.sh"
SECRETS = ROOT / ".local" / "secrets"


@dataclass(frozen=True)
class PrivatePostgres:
    home: Path
    port: int

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log(self) -> Path:
        return self.home / "log" / "postgresql.log"

    def url(self, role: str, database: str = "ledger") -> str:
        secret = "pg-superuser" if role == "postgres" else f"pg-{role}"
        password = (SECRETS / secret).read_text().strip()
        return f"postgresql://{role}:{password}@127.0.0.1:{self.port}/{database}"

    def script(self, action: str = "start") -> subprocess.CompletedProcess[str]:
        """``postgres.sh ACTION`` against this cluster (never the shared one); checked."""
        env = {**os.environ, "LEDGER_PG_HOME": str(self.home), "LEDGER_PG_PORT": str(self.port)}
        done = subprocess.run(
            ["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr
        if action == "start":
            assert str(self.home) in done.stderr, "the script worked on the throwaway cluster"
        return done

    def pg_ctl(self, *args: str) -> None:
        pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        command = [str(pg_bin / "pg_ctl"), "-D", str(self.data), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def private_postgres(prefix: str) -> Iterator[PrivatePostgres]:
    """A started cluster in a temporary directory; stopped and removed afterwards."""
    if shutil.which("runuser") is None and os.geteuid() == 0:
        pytest.fail("runuser is needed to run PostgreSQL as root's postgres user")
    top = Path(tempfile.mkdtemp(prefix=prefix))
    top.chmod(0o755)  # the postgres user must reach its cluster directory
    cluster = PrivatePostgres(home=top / "pg", port=free_port())
    try:
        cluster.script("start")
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(top, ignore_errors=True)
