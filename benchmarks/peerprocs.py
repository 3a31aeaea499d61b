"""Running the peers of benchmarks/peers.py: Tessera's POSIX log (inside our driver's
process) and a real immudb server fed by our SetAll client.

Each run gets a temporary directory, removed afterwards whatever happens; the immudb
server listens on a free loopback port and is stopped (TERM, then KILL) before the run
returns, and dies with this process if it is killed (PR_SET_PDEATHSIG). The directories
carry the benchmark's pid: those a SIGKILLed run left are removed by the next run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.peerfmt import DriverResult, PeerError, parse_result

ROOT = Path(__file__).resolve().parents[1]
BINARIES = ("tessera-bench", "immudb", "immudb-bench")
DRIVER_TIMEOUT_S = 900
TEMP_PREFIX = "ledger-peers-"


def peers_bin() -> Path:
    """Where deploy/local/peers.sh leaves the binaries (LEDGER_PEERS_DIR, as there)."""
    return Path(os.environ.get("LEDGER_PEERS_DIR") or ROOT / ".local" / "peers") / "bin"


def require_binaries() -> dict[str, Path]:
    """The peers' binaries, or a PeerError naming what is missing and how to build it."""
    found = {name: peers_bin() / name for name in BINARIES}
    missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
    if missing:
        raise PeerError(
            f"missing in {peers_bin()}: {', '.join(missing)}; build them with "
            "deploy/local/peers.sh (needs Go; `make bench` runs it)"
        )
    return found


def temp_dir(kind: str) -> Path:
    """A new temporary directory tagged with this process's pid."""
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{kind}-"))


def sweep_stale() -> list[Path]:
    """Remove the temporary directories of benchmark processes that no longer run."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*-*"):
        pid = path.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# Loaded here, not in the forked child: the child then makes one system call and takes
# no lock another thread of this process might have held at the fork.
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def exit_status(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = _ANSI.sub("", path.read_text(errors="replace"))
        return "\n".join(text.splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_driver(args: list[str], *, expected: int, home: Path) -> DriverResult:
    """Run one Go driver to the end and read its result; its stderr on failure."""
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S, check=False,
            env={**os.environ, "HOME": str(home)}, preexec_fn=_die_with_parent,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"{Path(args[0]).name} ran over {DRIVER_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise PeerError(
            f"{Path(args[0]).name}: {exit_status(done.returncode)}: {done.stderr.strip()[-2000:]}"
        )
    return parse_result(done.stdout, expected=expected)


def run_tessera(bins: dict[str, Path], entries: Path, n: int, batch: int) -> DriverResult:
    """Append the entries to a new Tessera POSIX log until a signed checkpoint covers them."""
    work = temp_dir("tessera")
    try:
        return run_driver(
            [str(bins["tessera-bench"]), "-storage_dir", str(work / "log"),
             "-entries", str(entries), "-batch_size", str(batch)],
            expected=n, home=work,
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class Immudb:
    """A running immudb server of our own."""

    port: int
    process: subprocess.Popen[bytes]
    work: Path

    @property
    def log(self) -> Path:
        return self.work / "immudb.log"

    def exited(self) -> str | None:
        """None while it runs; else its exit status and the end of its log."""
        code = self.process.poll()
        return None if code is None else f"{exit_status(code)}; its log ends:\n{_tail(self.log)}"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def immudb_server(binary: Path, *, ready_s: float = 60) -> Iterator[Immudb]:
    """A fresh immudb server (default settings: synced, indexed) on a free port, with its
    data in a temporary directory; stopped and removed on exit."""
    work = temp_dir("immudb")
    port = free_port()
    args = [str(binary), "--dir", str(work / "data"), "--address", "127.0.0.1",
            "--port", str(port), "--pgsql-server=false", "--metrics-server=false",
            "--web-server=false"]  # fmt: skip
    server = None
    try:
        with (work / "immudb.log").open("wb") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=work,
                env={**os.environ, "HOME": str(work)}, preexec_fn=_die_with_parent,
            )  # fmt: skip
        server = Immudb(port=port, process=process, work=work)
        deadline = time.monotonic() + ready_s
        while not _listening(port):
            if (why := server.exited()) is not None:
                raise PeerError(f"the immudb server did not start: {why}")
            if time.monotonic() > deadline:
                raise PeerError(f"the immudb server did not listen within {ready_s:.0f} s")
            time.sleep(0.05)
        yield server
    finally:
        if server is not None:
            _stop(server.process)
        shutil.rmtree(work, ignore_errors=True)


def run_immudb(bins: dict[str, Path], entries: Path, n: int, per_tx: int) -> DriverResult:
    """SetAll of the entries, ``per_tx`` per transaction, one session, into a new server."""
    with immudb_server(bins["immudb"]) as server:
        try:
            return run_driver(
                [str(bins["immudb-bench"]), "-port", str(server.port), "-entries", str(entries),
                 "-per_tx", str(per_tx), "-state_dir", str(server.work)],
                expected=n, home=server.work,
            )  # fmt: skip
        except PeerError as exc:
            if (why := server.exited()) is not None:
                raise PeerError(f"the immudb server died during the run: {why}") from exc
            raise
