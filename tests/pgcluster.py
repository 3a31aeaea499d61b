"""Throwaway PostgreSQL clusters for the tests of docs/postgres.md: each one initdb'd in a
temporary directory on a free port, never the shared stack's. A cluster can serve TLS
only (a certificate from a CA the test makes), be a streaming replica made with
pg_basebackup, and hold a migrated ledger with the three roles of deploy/local.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

from tests.ports import free_port

LEDGER_ROLES = ("ledger_owner", "ledger_appender", "ledger_reader")
# The superuser's pg_partman step of deploy/local/postgres.sh (docs/postgres.md).
PARTMAN_SQL = (Path(__file__).parents[1] / "deploy" / "local" / "pg-superuser.sql").read_text()


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL server binaries are not installed")
    return found[-1]


def as_pg(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as its own user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stderr.strip()[-2000:]}")
    return done  # type: ignore[no-any-return]


def _give_to_postgres(*paths: Path) -> None:
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, "postgres", "postgres")


# ------------------------------------------------------------------ certificates


@dataclass(frozen=True, slots=True)
class Ca:
    cert: Path
    key: Path


def make_ca(where: Path, name: str) -> Ca:
    """A throwaway certificate authority (openssl, EC P-256, two days)."""
    where.mkdir(parents=True, exist_ok=True)
    ca = Ca(where / f"{name}.crt", where / f"{name}.key")
    _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes", "-days", "2", "-keyout", str(ca.key), "-out", str(ca.cert),
          "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"])  # fmt: skip
    return ca


def issue_server_cert(ca: Ca, where: Path, *, names: str) -> tuple[Path, Path]:
    """A server certificate signed by ``ca`` for ``names`` (a subjectAltName value)."""
    cert, key, csr = where / "server.crt", where / "server.key", where / "server.csr"
    _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes", "-keyout", str(key), "-out", str(csr),
          "-subj", "/CN=ledger-postgres"])  # fmt: skip
    ext = where / "server.ext"
    ext.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
          "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(ext)])  # fmt: skip
    key.chmod(0o600)
    return cert, key


# ------------------------------------------------------------------ clusters


@dataclass
class Cluster:
    """One PostgreSQL cluster under ``home``, on 127.0.0.1:``port``. Every role's password
    is ``password``. With ``ca``, it serves TLS only (pg_hba: hostssl lines alone) with
    a certificate for ``localhost`` signed by ``ca``."""

    home: Path
    port: int
    password: str
    ca: Ca | None = None
    extra_conf: str = ""
    hba: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def sock(self) -> Path:
        return self.home / "run"

    @property
    def log(self) -> Path:
        return self.home / "postgresql.log"

    def url(
        self,
        role: str,
        *,
        database: str = "ledger",
        host: str | None = None,
        **params: str,
    ) -> str:
        """A DSN for ``role``; with TLS, ``sslmode=verify-full`` against the cluster's CA
        unless ``params`` say otherwise."""
        if self.ca is not None:
            params = {"sslmode": "verify-full", "sslrootcert": str(self.ca.cert), **params}
        where = host or ("localhost" if self.ca is not None else "127.0.0.1")
        query = f"?{urlencode(params)}" if params else ""
        return f"postgresql://{role}:{quote(self.password)}@{where}:{self.port}/{database}{query}"

    # -- lifecycle

    def init(self) -> None:
        self.home.mkdir(parents=True)
        self.sock.mkdir()
        _give_to_postgres(self.home, self.sock)
        pwfile = self.home / "pw"
        pwfile.write_text(self.password)
        _give_to_postgres(pwfile)
        _run(as_pg([str(pg_bin() / "initdb"), "-D", str(self.data), "-U", "postgres",
                    "--auth-local=peer", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                    "-E", "UTF8", "--locale=C.UTF-8"]))  # fmt: skip
        pwfile.unlink()
        conf = [
            "listen_addresses = '127.0.0.1'",
            "max_connections = 60",
            "shared_buffers = 32MB",
            "wal_level = replica",
            "max_wal_senders = 10",
            "max_replication_slots = 10",
            "hot_standby = on",
            "hot_standby_feedback = on",
            "fsync = off",  # a test cluster: a killed server keeps its writes (page cache)
            self.extra_conf,
        ]
        hba = ["local all all peer"]
        kind = "host"
        if self.ca is not None:
            cert, key = issue_server_cert(self.ca, self.home, names="DNS:localhost")
            for f in (cert, key):
                target = self.data / f.name
                shutil.copy(f, target)
                _give_to_postgres(target)
                target.chmod(0o600)
            conf += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
            kind = "hostssl"
        hba += [
            f"{kind} all all 127.0.0.1/32 scram-sha-256",
            f"{kind} replication all 127.0.0.1/32 scram-sha-256",
            *self.hba,
        ]
        with (self.data / "postgresql.conf").open("a") as out:
            out.write("\n# --- test cluster ---\n" + "\n".join(conf) + "\n")
        (self.data / "pg_hba.conf").write_text("\n".join(hba) + "\n")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sock}"
        _run(as_pg([str(pg_bin() / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                    "-o", options, "-w", "-t", "120", "start"]))  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                as_pg([str(pg_bin() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
                capture_output=True,
                timeout=120,
                check=False,
            )

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash: no shutdown checkpoint, no goodbye to clients)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)

    def psql(self, statement: str, *, database: str = "postgres") -> str:
        """One statement as the superuser over the Unix socket (peer authentication)."""
        done = _run(as_pg(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h",
                           str(self.sock), "-p", str(self.port), "-U", "postgres", "-d",
                           database, "-c", statement]))  # fmt: skip
        return done.stdout.strip()

    # -- the ledger

    def create_ledger(self, *, database: str = "ledger") -> None:
        """The three roles of deploy/local/postgres.sh and a migrated ``database``, plus a
        ``replicator`` role for pg_basebackup and standbys."""
        from ledger.pg.migrate import apply_migrations

        self.create_roles()
        self.psql(f"CREATE DATABASE {database} OWNER ledger_owner")
        apply_migrations(self.url("ledger_owner", database=database))

    def create_roles(self) -> None:
        pw = self.password.replace("'", "''")
        for role in LEDGER_ROLES:
            extra = " CREATEDB" if role == "ledger_owner" else ""
            self.psql(f"CREATE ROLE {role} LOGIN{extra} PASSWORD '{pw}'")
        self.psql(f"CREATE ROLE replicator LOGIN REPLICATION PASSWORD '{pw}'")
        # In template1, as postgres.sh does: every ledger database made afterwards has it.
        self.psql(PARTMAN_SQL, database="template1")

    def client(self, tool: str, *args: str) -> str:
        """A client program (pg_dump, pg_restore) as ``ledger_owner`` over TCP."""
        env = {**os.environ, "PGPASSWORD": self.password}
        if self.ca is not None:
            env |= {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(self.ca.cert)}
        host = "localhost" if self.ca is not None else "127.0.0.1"
        done = _run([str(pg_bin() / tool), "-h", host, "-p", str(self.port), "-U",
                     "ledger_owner", *args], env=env)  # fmt: skip
        return done.stdout

    def lsn(self) -> str:
        return self.psql("SELECT pg_current_wal_lsn()")


@contextmanager
def cluster_home(prefix: str) -> Iterator[Path]:
    """A temporary directory the postgres user can reach, removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix=prefix))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


@contextmanager
def running(*clusters: Cluster) -> Iterator[None]:
    """Stop (immediately) every cluster given, whatever happens in the block."""
    try:
        yield
    finally:
        for c in clusters:
            c.stop("immediate")


def new_cluster(
    top: Path, name: str, *, ca: Ca | None = None, extra_conf: str = "", password: str = ""
) -> Cluster:
    cluster = Cluster(
        home=top / name,
        port=free_port(),
        password=password or secrets.token_urlsafe(18),
        ca=ca,
        extra_conf=extra_conf,
    )
    cluster.init()
    cluster.start()
    return cluster


def standby_of(primary: Cluster, top: Path, name: str) -> Cluster:
    """A hot standby streaming from ``primary``: pg_basebackup, then standby.signal and
    primary_conninfo (TLS verify-full when the primary serves TLS only)."""
    replica = Cluster(home=top / name, port=free_port(), password=primary.password, ca=primary.ca)
    replica.home.mkdir(parents=True)
    replica.sock.mkdir()
    _give_to_postgres(replica.home, replica.sock)
    conninfo = {
        "host": "localhost" if primary.ca else "127.0.0.1",
        "port": str(primary.port),
        "user": "replicator",
        "password": primary.password,
        "application_name": name,
    }
    if primary.ca is not None:
        conninfo |= {"sslmode": "verify-full", "sslrootcert": str(primary.ca.cert)}
    env = {**os.environ, "PGPASSWORD": primary.password}
    if primary.ca is not None:
        env |= {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(primary.ca.cert)}
    _run(as_pg([str(pg_bin() / "pg_basebackup"), "-D", str(replica.data), "-h",
                conninfo["host"], "-p", str(primary.port), "-U", "replicator", "-X", "stream",
                "-c", "fast"]), env=env)  # fmt: skip
    line = " ".join(f"{k}='{v}'" for k, v in conninfo.items())
    with (replica.data / "postgresql.auto.conf").open("a") as f:
        f.write(f"primary_conninfo = '{line.replace(chr(39), chr(39) * 2)}'\n")
    standby = replica.data / "standby.signal"
    standby.touch()
    _give_to_postgres(standby)
    replica.start()
    return replica


def wait_replayed(primary: Cluster, replica: Cluster, timeout: float = 120) -> None:
    """Until ``replica`` has replayed everything ``primary`` has written so far."""
    target = primary.lsn()
    deadline = time.monotonic() + timeout
    while True:
        behind = replica.psql(f"SELECT pg_wal_lsn_diff('{target}', pg_last_wal_replay_lsn()) > 0")
        if behind == "f":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"replica did not replay up to {target}")
        time.sleep(0.1)
