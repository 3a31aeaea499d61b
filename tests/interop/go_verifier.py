"""Run the independent Go verifier (``tests/interop/go``) on data the Python ledger produced.

The Go program uses only ``golang.org/x/mod/sumdb/note`` and ``golang.org/x/mod/sumdb/tlog``,
the reference implementations of C2SP signed notes and RFC 6962 proofs.  It is built once per
process into ``<repo>/.local/interop/`` (Go's own build cache makes later builds fast).  A
missing ``go`` toolchain is an error, never a skip: CI has Go, and an interoperability check
that silently does not run proves nothing.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "BINARY_NAME",
    "CACHE_DIR",
    "GO_SOURCE_DIR",
    "GoVerifierError",
    "build_go_verifier",
    "go_available",
    "go_verify",
    "run_go_verifier",
]

REPO = Path(__file__).resolve().parents[2]
GO_SOURCE_DIR = Path(__file__).resolve().parent / "go"
CACHE_DIR = REPO / ".local" / "interop"
BINARY_NAME = "ledger-interop-verify"
BUILD_TIMEOUT_S = 600  # the first build may download golang.org/x/mod through the proxy
RUN_TIMEOUT_S = 120


class GoVerifierError(RuntimeError):
    """The Go verifier could not be built or run, or rejected its input as unusable."""


def go_available() -> bool:
    """True iff a ``go`` toolchain is on ``PATH``."""
    return shutil.which("go") is not None


@functools.cache
def build_go_verifier() -> Path:
    """Build the Go verifier (once per process) and return the path of the binary."""
    go = shutil.which("go")
    if go is None:
        raise GoVerifierError(
            "the `go` toolchain is not on PATH: the Go interoperability tests need Go "
            f"(>= the version in {GO_SOURCE_DIR / 'go.mod'}); install it, do not skip these tests"
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    target = CACHE_DIR / BINARY_NAME
    # Build to a private name, then rename: concurrent test processes never see a partial file.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{BINARY_NAME}.", dir=CACHE_DIR)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        proc = subprocess.run(
            [go, "build", "-trimpath", "-buildvcs=false", "-o", str(tmp), "."],
            cwd=GO_SOURCE_DIR,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise GoVerifierError(
                f"`go build` of {GO_SOURCE_DIR} failed (exit {proc.returncode}):\n"
                f"{proc.stderr.strip()}"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def run_go_verifier(raw_input: str) -> subprocess.CompletedProcess[str]:
    """Run the verifier on ``raw_input`` as is and return the completed process."""
    return subprocess.run(
        [str(build_go_verifier())],
        input=raw_input,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def go_verify(payload: dict[str, Any]) -> dict[str, Any]:
    """Verify ``payload`` with Go and return its JSON result.

    ``payload`` has ``verifier_keys`` and any of ``checkpoints``, ``inclusion``,
    ``consistency`` and ``tlog_proofs`` (see ``go/main.go``).  The result has one entry per
    input item in each of those lists, each with ``ok`` and, when not ok, ``error``.
    """
    full: dict[str, Any] = {
        "checkpoints": [],
        "inclusion": [],
        "consistency": [],
        "tlog_proofs": [],
    }
    full.update(payload)
    proc = run_go_verifier(json.dumps(full))
    if proc.returncode != 0:
        raise GoVerifierError(
            f"the Go verifier refused its input (exit {proc.returncode}): {proc.stderr.strip()}"
        )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
