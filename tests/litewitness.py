"""A real litewitness (torchwood v0.6.1, built by deploy/local/gotools.sh) for the tests:
its own ssh-agent holding a fresh Ed25519 key, its own SQLite database, a free port.

Every process started here is stopped by its pid when the context ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_port as _free_port

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(os.environ.get("LEDGER_GOTOOLS_DIR") or ROOT / ".local") / "bin"
LITEWITNESS = TOOLS / "litewitness"
WITNESSCTL = TOOLS / "witnessctl"


@dataclass(frozen=True, slots=True, kw_only=True)
class Litewitness:
    url: str
    name: str
    vkey: str  # its cosignature/v1 verifier key, as it logged it
    db: Path

    def add_log(self, origin: str, log_vkeys: list[str]) -> None:
        """``witnessctl add-log`` then ``add-key`` for each of the log's verifier keys."""
        _run([str(WITNESSCTL), "add-log", "-db", str(self.db), "-origin", origin])
        for vkey in log_vkeys:
            _run([str(WITNESSCTL), "add-key", "-db", str(self.db), "-origin", origin,
                  "-key", vkey])  # fmt: skip

    def list_logs(self) -> str:
        return _run([str(WITNESSCTL), "list-logs", "-db", str(self.db)])


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed: {done.stderr.strip()}")
    return done.stdout


def require_litewitness() -> None:
    if not (LITEWITNESS.exists() and WITNESSCTL.exists()):
        if os.environ.get("CI"):
            raise RuntimeError(f"litewitness missing in {TOOLS}: run deploy/local/gotools.sh")
        pytest.skip(f"litewitness not in {TOOLS}: run deploy/local/gotools.sh litewitness")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(predicate: object, what: str, tries: int = 200) -> None:
    for _ in range(tries):
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


@contextlib.contextmanager
def litewitness(workdir: Path, name: str = "witness.test.local/w1") -> Iterator[Litewitness]:
    """Start ssh-agent and litewitness in ``workdir``; yield the running witness."""
    require_litewitness()
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "witness_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)])
    fingerprint = _run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"]).split()[1]
    sock = workdir / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    witness: subprocess.Popen[bytes] | None = None
    try:
        _wait_for(sock.exists, "ssh-agent")
        _run(["ssh-add", "-q", str(key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)})
        port = _free_port()
        db = workdir / "litewitness.db"
        log = workdir / "litewitness.log"
        with log.open("wb") as out:
            witness = subprocess.Popen(
                [str(LITEWITNESS), "-db", str(db), "-name", name, "-ssh-agent", str(sock),
                 "-key", fingerprint, "-listen", f"127.0.0.1:{port}"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

        def listening() -> bool:
            if witness is not None and witness.poll() is not None:
                raise RuntimeError(f"litewitness exited: {log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return True
            return False

        _wait_for(listening, "litewitness")
        found = re.search(r"vkey=(\S+)", log.read_text())
        if found is None:
            raise RuntimeError("litewitness did not log its verifier key")
        yield Litewitness(
            url=f"http://127.0.0.1:{port}", name=name, vkey=found.group(1).strip('"'), db=db
        )
    finally:
        if witness is not None:
            _stop(witness)
        _stop(agent)
