"""The proxy's configuration: a frozen dataclass, read from a TOML file.

Invariant: a ``ProxyConfig`` that exists is valid: AE titles are 1-16 printable ASCII
characters without a backslash, ports are 1-65535 (0 only for the listening port: any
free port), limits are positive and bounded, TLS files exist, and every bad value is
refused with a ``DicomProxyConfigError`` naming its TOML key (the ``[ledger]`` section:
``ledgerconfig``). Construction reads the TLS and key files' existence only; the
contexts are built by ``tls``. The file format is in docs/dicom-proxy.md.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from integrations.dicomproxy.errors import DicomProxyConfigError
from integrations.dicomproxy.ledgerconfig import LedgerConfig, parse_ledger

__all__ = [
    "Destination",
    "Limits",
    "ListenConfig",
    "ProxyConfig",
    "TlsFiles",
    "UpstreamConfig",
    "load_config",
    "parse_config",
]

#: Largest P-DATA PDU the proxy accepts and advertises, at most (64 MiB).
_MAX_PDU_CEILING: Final = 64 * 1024 * 1024
_MAX_TIMEOUT: Final = 24 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """PEM files of one TLS side: our certificate chain and key (required to listen,
    optional upstream: a client certificate), and the CA bundle that authenticates the
    peer (listening: clients must present a certificate it signed; upstream: the PACS)."""

    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = "LEDGERPROXY"
    #: Calling AE titles accepted; any other is rejected (A-ASSOCIATE-RJ, "calling AE
    #: title not recognised"). Never empty: there is no "accept anyone".
    allowed_calling_aets: tuple[str, ...] = ()
    tls: TlsFiles | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamConfig:
    host: str
    port: int
    ae_title: str
    tls: TlsFiles | None = None
    #: Name checked against the PACS certificate (default: ``host``).
    tls_server_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Where a C-MOVE destination AE title is."""

    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    max_associations: int = 10
    #: Largest P-DATA PDU accepted (advertised as Maximum Length); a PDU whose header
    #: announces more than this plus 64 KiB (room for an association request) is refused.
    max_pdu_bytes: int = 65536
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    connect_timeout: float = 10.0
    tls_handshake_timeout: float = 10.0
    #: Upstream C-GET and C-MOVE can take long: their own DIMSE timeout.
    retrieve_timeout: float = 600.0
    #: C-FIND responses held before relaying (the proxy records before it discloses).
    max_find_responses: int = 10000
    #: Instances a C-GET or C-MOVE may fetch through the proxy (held in memory).
    max_retrieve_instances: int = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    listen: ListenConfig
    upstream: UpstreamConfig
    destinations: Mapping[str, Destination] = field(default_factory=lambda: MappingProxyType({}))
    limits: Limits = field(default_factory=Limits)
    #: True: an operation the recorder cannot take is refused; False: it is answered.
    fail_closed: bool = True
    #: Where operations become ledger events (``ledger dicom-proxy serve`` needs it).
    ledger: LedgerConfig | None = None


def load_config(path: str | Path) -> ProxyConfig:
    """Read and validate a TOML configuration file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DicomProxyConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DicomProxyConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_config(data, base=Path(path).parent)


def parse_config(data: Mapping[str, Any], *, base: Path | None = None) -> ProxyConfig:
    """Validate a parsed TOML document; relative TLS paths are resolved against
    ``base`` (the file's directory)."""
    r = _Reader(data, "", base or Path.cwd())
    r.only({"listen", "upstream", "destinations", "limits", "recording", "ledger"})
    listen, upstream = r.table("listen"), r.table("upstream")
    listen.only({"host", "port", "ae_title", "allowed_calling_aets", "tls"})
    upstream.only({"host", "port", "ae_title", "tls", "tls_server_name"})
    destinations = r.table("destinations")
    limits_t, recording = r.table("limits"), r.table("recording")
    recording.only({"fail_closed"})
    default = Limits()
    limits_t.only(set(Limits.__dataclass_fields__))
    number = limits_t.integer
    limits = Limits(
        max_associations=number("max_associations", default.max_associations, 1, 1000),
        max_pdu_bytes=number("max_pdu_bytes", default.max_pdu_bytes, 4096, _MAX_PDU_CEILING),
        max_find_responses=number("max_find_responses", default.max_find_responses, 1, 10**6),
        max_retrieve_instances=number(
            "max_retrieve_instances", default.max_retrieve_instances, 1, 65535
        ),
        **{
            name: limits_t.seconds(name, getattr(default, name))
            for name in (
                "acse_timeout", "dimse_timeout", "network_timeout", "connect_timeout",
                "tls_handshake_timeout", "retrieve_timeout",
            )
        },
    )  # fmt: skip
    aets = listen.list_of_aets("allowed_calling_aets")
    return ProxyConfig(
        listen=ListenConfig(
            host=listen.string("host", "127.0.0.1"),
            port=listen.integer("port", 11112, 0, 65535),
            ae_title=listen.aet("ae_title", "LEDGERPROXY"),
            allowed_calling_aets=aets,
            tls=listen.tls(server=True),
        ),
        upstream=UpstreamConfig(
            host=upstream.string("host", None),
            port=upstream.integer("port", None, 1, 65535),
            ae_title=upstream.aet("ae_title", None),
            tls=upstream.tls(server=False),
            tls_server_name=upstream.optional_string("tls_server_name"),
        ),
        destinations=MappingProxyType(
            {aet: destinations.destination(aet) for aet in destinations.names()}
        ),
        limits=limits,
        fail_closed=recording.boolean("fail_closed", True),
        ledger=parse_ledger(r.table("ledger")) if r.has("ledger") else None,
    )


def check_aet(value: object, key: str) -> str:
    """An AE title: 1-16 printable ASCII characters, no backslash, not only spaces;
    returned without surrounding spaces."""
    if not isinstance(value, str):
        raise DicomProxyConfigError("must be a string (an AE title)", key=key)
    stripped = value.strip()
    if not 1 <= len(stripped) <= 16:
        raise DicomProxyConfigError(f"AE title {value!r} must have 1 to 16 characters", key=key)
    if not all(" " <= ch <= "~" for ch in stripped) or "\\" in stripped:
        raise DicomProxyConfigError(
            f"AE title {value!r} may hold printable ASCII only, no backslash", key=key
        )
    return stripped


class _Reader:
    """Typed access to one TOML table; every error names the dotted key."""

    __slots__ = ("_base", "_data", "_prefix")

    def __init__(self, data: Mapping[str, Any], prefix: str, base: Path) -> None:
        self._data, self._prefix, self._base = data, prefix, base

    def _key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def names(self) -> list[str]:
        return list(self._data)

    def only(self, allowed: set[str]) -> None:
        for name in self._data:
            if name not in allowed:
                raise DicomProxyConfigError(
                    f"unknown key (known: {', '.join(sorted(allowed))})", key=self._key(name)
                )

    def table(self, name: str) -> _Reader:
        value = self._data.get(name, {})
        if not isinstance(value, Mapping):
            raise DicomProxyConfigError("must be a table", key=self._key(name))
        return _Reader(value, f"{self._key(name)}.", self._base)

    def _required(self, name: str, default: Any) -> Any:
        if name in self._data:
            return self._data[name]
        if default is None:
            raise DicomProxyConfigError("is required", key=self._key(name))
        return default

    def string(self, name: str, default: str | None) -> str:
        value = self._required(name, default)
        if not isinstance(value, str) or not value.strip():
            raise DicomProxyConfigError("must be a non-empty string", key=self._key(name))
        return value.strip()

    def optional_string(self, name: str) -> str | None:
        return self.string(name, None) if name in self._data else None

    def integer(self, name: str, default: int | None, low: int, high: int) -> int:
        value = self._required(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise DicomProxyConfigError(
                f"must be an integer from {low} to {high}, not {value!r}", key=self._key(name)
            )
        return value

    def seconds(self, name: str, default: float) -> float:
        value = self._required(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DicomProxyConfigError(
                f"must be a number of seconds, not {value!r}", key=self._key(name)
            )
        if not 0 < value <= _MAX_TIMEOUT:
            raise DicomProxyConfigError(
                f"must be more than 0 and at most {_MAX_TIMEOUT:.0f} seconds", key=self._key(name)
            )
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._data.get(name, default)
        if not isinstance(value, bool):
            raise DicomProxyConfigError(
                f"must be true or false, not {value!r}", key=self._key(name)
            )
        return value

    def aet(self, name: str, default: str | None) -> str:
        return check_aet(self._required(name, default), self._key(name))

    def list_of_aets(self, name: str) -> tuple[str, ...]:
        value = self._data.get(name)
        if not isinstance(value, list) or not value:
            raise DicomProxyConfigError(
                "must be a non-empty list of AE titles (the proxy accepts no one else)",
                key=self._key(name),
            )
        return tuple(check_aet(v, f"{self._key(name)}[{i}]") for i, v in enumerate(value))

    def has(self, name: str) -> bool:
        return name in self._data

    def path(self, name: str, *, required: bool, is_file: bool = True) -> str | None:
        """A path, resolved against the configuration file's directory; a file must exist
        (``is_file``), a directory may not exist yet (it is created when used)."""
        if name not in self._data:
            if required:
                raise DicomProxyConfigError("is required", key=self._key(name))
            return None
        path = Path(self.string(name, None))
        path = path if path.is_absolute() else self._base / path
        if is_file and not path.is_file():
            raise DicomProxyConfigError(f"no such file: {path}", key=self._key(name))
        if not is_file and path.exists() and not path.is_dir():
            raise DicomProxyConfigError(f"not a directory: {path}", key=self._key(name))
        return str(path)

    def _file(self, table: _Reader, name: str) -> str | None:
        if name not in table._data:
            return None
        path = Path(table.string(name, None))
        path = path if path.is_absolute() else self._base / path
        if not path.is_file():
            raise DicomProxyConfigError(f"no such file: {path}", key=table._key(name))
        return str(path)

    def tls(self, *, server: bool) -> TlsFiles | None:
        if "tls" not in self._data:
            return None
        t = self.table("tls")
        t.only({"cert_file", "key_file", "ca_file"})
        files = TlsFiles(
            cert_file=self._file(t, "cert_file"),
            key_file=self._file(t, "key_file"),
            ca_file=self._file(t, "ca_file"),
        )
        if (files.cert_file is None) != (files.key_file is None):
            raise DicomProxyConfigError("cert_file and key_file go together", key=self._key("tls"))
        if server and files.cert_file is None:
            raise DicomProxyConfigError(
                "a TLS listener needs cert_file and key_file", key=self._key("tls")
            )
        if not server and files.ca_file is None:
            raise DicomProxyConfigError(
                "upstream TLS needs ca_file (the CA that signed the PACS certificate)",
                key=self._key("tls"),
            )
        return files

    def destination(self, aet: str) -> Destination:
        check_aet(aet, self._key(aet))
        if aet != aet.strip():
            raise DicomProxyConfigError("no surrounding spaces in an AE title", key=self._key(aet))
        d = self.table(aet)
        d.only({"host", "port"})
        return Destination(host=d.string("host", None), port=d.integer("port", None, 1, 65535))
