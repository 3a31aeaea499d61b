"""How a request reached Orthanc: the ``transport`` of the events the plugin records.

Invariant: pure functions of the plugin's settings and the request; what Orthanc's own
settings say wins (``SslEnabled``: HTTPS, else HTTP; ``DicomTlsEnabled``: DICOM over
TLS, else plain DICOM), and a plain HTTP request is recorded ``encrypted`` only where a
trusted proxy (``TrustedProxies``) says its client came over HTTPS
(``X-Forwarded-Proto``); from a trusted proxy that says nothing, unknown. A setting that
cannot be read is UNKNOWN. docs/design/transport.md.
"""

from __future__ import annotations

from collections.abc import Mapping

from integrations.orthanc.config import PluginConfig
from producers import Transport, TransportChannel

__all__ = ["dicom_transport", "http_transport"]


def http_transport(config: PluginConfig, ip: str | None, headers: Mapping[str, str]) -> Transport:
    """The transport of one REST request from ``ip`` with these (lower-cased) headers."""
    if config.http_tls is None:
        return Transport.of(TransportChannel.UNKNOWN)
    if config.http_tls:
        return Transport.of(TransportChannel.HTTPS)
    if ip is not None and ip in config.trusted_proxies:
        # Orthanc saw plain HTTP from a proxy; what the client used, only the proxy knows.
        proto = (headers.get("x-forwarded-proto") or "").split(",")[0].strip().lower()
        encrypted = {"https": True, "http": False}.get(proto)
        return Transport(channel=TransportChannel.HTTP, encrypted=encrypted)
    return Transport.of(TransportChannel.HTTP)


def dicom_transport(config: PluginConfig) -> Transport:
    """The transport of an association Orthanc's DICOM server accepted."""
    if config.dicom_tls is None:
        return Transport.of(TransportChannel.UNKNOWN)
    return Transport.of(TransportChannel.DICOM_TLS if config.dicom_tls else TransportChannel.DICOM)
