"""TLS contexts of the two sides (DICOM PS3.15 B.1/B.9 secure transport: TLS 1.2 or
later, certificates from PEM files), and the peer facts a record needs.

Invariant: the listening context requires a client certificate signed by the configured
CA whenever a CA is configured (mutual TLS) and accepts TLS 1.2+ only; the upstream
context always verifies the PACS certificate against the configured CA and its name.
"""

from __future__ import annotations

import ssl

from integrations.dicomproxy.config import TlsFiles
from integrations.dicomproxy.errors import DicomProxyConfigError

__all__ = ["certificate_subject", "client_context", "server_context"]


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The listening side's context: our certificate, and the client CA if any."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if files.cert_file is None or files.key_file is None:
            raise DicomProxyConfigError("a TLS listener needs cert_file and key_file")
        ctx.load_cert_chain(files.cert_file, files.key_file)
        if files.ca_file is not None:
            ctx.load_verify_locations(cafile=files.ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise DicomProxyConfigError(
            f"listening TLS files unusable: {exc}", key="listen.tls"
        ) from exc
    return ctx


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """The upstream side's context: verifies the PACS; presents our certificate if set."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=files.ca_file)
        if files.cert_file is not None and files.key_file is not None:
            ctx.load_cert_chain(files.cert_file, files.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise DicomProxyConfigError(
            f"upstream TLS files unusable: {exc}", key="upstream.tls"
        ) from exc
    return ctx


def certificate_subject(sock: object) -> tuple[bool, str | None]:
    """Whether ``sock`` is a TLS socket, and the subject of the certificate its peer
    presented (``CN=...,O=...``, most specific first as in RFC 4514), if any."""
    if not isinstance(sock, ssl.SSLSocket):
        return False, None
    try:
        cert = sock.getpeercert()
    except (OSError, ValueError):
        return True, None
    if not cert:
        return True, None
    rdns = cert.get("subject", ())
    parts = [f"{_short(k)}={v}" for rdn in reversed(rdns) for k, v in rdn]
    return True, ",".join(parts) or None


_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
}


def _short(name: str) -> str:
    return _SHORT.get(name, name)
