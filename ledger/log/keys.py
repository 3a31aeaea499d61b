"""Loading the ledger's signing and verification keys.

Invariant: a signer key file is used only if neither its group nor others may
read or write it (the process refuses it otherwise), and key material is never
logged; a file may hold several signer keys, and then every checkpoint is signed
by all of them (key rotation overlap).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ledger.errors import MalformedInputError
from ledger.log.note import Signer, Verifier, parse_signer_key, parse_verifier_key


def load_signers(path: str | os.PathLike[str]) -> tuple[Signer, ...]:
    """Signers from a key file (one ``PRIVATE+KEY+...`` string per line)."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
    except OSError as exc:
        raise MalformedInputError(f"cannot read signer key file {file}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MalformedInputError(
            f"refusing signer key file {file}: it is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 {file}"
        )
    lines = [ln.strip() for ln in file.read_text(encoding="utf-8").splitlines()]
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    if not keys:
        raise MalformedInputError(f"signer key file {file} holds no key")
    signers = []
    for number, key in enumerate(keys, 1):
        try:
            signers.append(parse_signer_key(key))
        except MalformedInputError as exc:
            # Never echo the line: it is a private key.
            raise MalformedInputError(f"{file}: key {number} is malformed") from exc
    return tuple(signers)


def parse_verifiers(keys: Iterable[str]) -> tuple[Verifier, ...]:
    """Verifiers from verifier-key strings (whitespace- or comma-separated lists allowed)."""
    out = []
    for item in keys:
        for key in item.replace(",", " ").split():
            out.append(parse_verifier_key(key))
    if not out:
        raise MalformedInputError("no verifier key given")
    return tuple(out)


def write_signer_file(path: str | os.PathLike[str], signer_keys: Iterable[str]) -> None:
    """Create a new signer key file with mode 600; refuses to overwrite."""
    file = Path(path)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("".join(f"{k}\n" for k in signer_keys))
