"""Certificates for ATNA tests and the ATNA benchmark, issued by the same script `make up`
uses (deploy/local/atna-pki.sh): a client CA, client certificates with a given subject
CN, and the receiver's own (self-signed, ``localhost``) server certificate."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKI = ROOT / "deploy" / "local" / "atna-pki.sh"


@dataclass(frozen=True, slots=True)
class Pki:
    where: Path
    server_cert: Path
    server_key: Path
    client_ca: Path

    def client(self, cn: str, *, ca: str = "") -> tuple[Path, Path]:
        """A client certificate and key for ``cn``, signed by this PKI's client CA, or
        (``ca`` = a name) by another CA of that name made on the spot."""
        ca_dir = self.where / (f"other-{ca}" if ca else "ca")
        if ca:
            subprocess.run(["bash", str(PKI), "ca", str(ca_dir)], check=True)
        out = self.where / "clients" / f"{ca or 'ca'}-{cn}"
        subprocess.run(["bash", str(PKI), "client", str(ca_dir), cn, str(out)], check=True)
        return Path(f"{out}.crt"), Path(f"{out}.key")


def make_pki(where: Path) -> Pki:
    where.mkdir(parents=True, exist_ok=True)
    cert, key = where / "server.crt", where / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(["bash", str(PKI), "ca", str(where / "ca")], check=True)
    return Pki(where, cert, key, where / "ca" / "client-ca.crt")
