"""Where compliance alerts go (webhooks and syslog receivers), from a TOML file
(LEDGER_ALERT_DELIVERY_FILE).

Invariant: a file with one bad value is refused whole, naming the key; a webhook's
secret is read from a file that neither group nor others may access (never from the TOML,
never logged: ``Destination.__repr__`` leaves it out); only ``https`` URLs are accepted,
and a syslog receiver is reached over TLS only.
"""

from __future__ import annotations

import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from ledger.errors import MalformedInputError

NAME: Final = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_KEYS: Final = frozenset(
    {"url", "secret_file", "ca_file", "include_patient", "timeout_seconds", "max_attempts",
     "backoff_seconds", "backoff_max_seconds", "batch"}
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """One receiver. ``include_patient`` is off by default: the payload then carries no
    patient id (a SIEM holding patient ids must be covered by a BAA; turn it on only then)."""

    name: str
    url: str
    secret: bytes = field(repr=False)
    ca_file: Path
    include_patient: bool = False
    timeout_seconds: float = 10.0
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    batch: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class SyslogDestination:
    """A SIEM's syslog receiver: RFC 5424 messages over TLS (RFC 5425 framing).
    ``include_patient`` as for a webhook; ``facility`` defaults to 13 (log audit)."""

    name: str
    host: str
    port: int = 6514
    ca_file: Path
    hostname: str = "-"
    facility: int = 13
    include_patient: bool = False
    timeout_seconds: float = 10.0
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    batch: int = 100


def parse_destinations(
    text: str, *, base: Path | None = None
) -> tuple[Destination | SyslogDestination, ...]:
    """Destinations from the TOML text (``[destination.<name>]`` webhook tables and
    ``[syslog.<name>]`` tables); relative file paths are taken from ``base``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MalformedInputError(f"alert delivery file: not TOML: {exc}") from exc
    extra = sorted(set(doc) - {"destination", "syslog"})
    if extra:
        raise MalformedInputError(f"alert delivery file: unknown key {extra[0]!r}")
    hooks, syslogs = doc.get("destination", {}), doc.get("syslog", {})
    for key, tables in (("destination", hooks), ("syslog", syslogs)):
        if not isinstance(tables, dict):
            raise MalformedInputError(f"alert delivery file: {key} is not a table")
    if not hooks and not syslogs:
        raise MalformedInputError(
            "alert delivery file: no [destination.<name>] or [syslog.<name>] table"
        )
    twice = sorted(set(hooks) & set(syslogs))
    if twice:
        raise MalformedInputError(f"syslog.{twice[0]}: the name of a destination too")
    where = base or Path.cwd()
    found: list[Destination | SyslogDestination] = [
        _destination(name, t, where) for name, t in sorted(hooks.items())
    ]
    found += [_syslog(name, t, where) for name, t in sorted(syslogs.items())]
    return tuple(found)


def load_destinations(path: str | Path) -> tuple[Destination | SyslogDestination, ...]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MalformedInputError(
            f"cannot read alert delivery file {file}: {exc.strerror}"
        ) from exc
    return parse_destinations(text, base=file.parent)


def _destination(name: str, t: Any, base: Path) -> Destination:
    where = f"destination.{name}"
    if not NAME.match(name):
        raise MalformedInputError(f"{where}: a name is [a-z][a-z0-9_-], at most 64 characters")
    if not isinstance(t, dict):
        raise MalformedInputError(f"{where}: not a table")
    unknown = sorted(set(t) - _KEYS)
    if unknown:
        raise MalformedInputError(f"{where}.{unknown[0]}: unknown key")
    url = _text(t, "url", where)
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise MalformedInputError(f"{where}.url: an https:// URL with a host and no userinfo")
    return Destination(
        name=name,
        url=url,
        secret=read_secret(base / _text(t, "secret_file", where), key=f"{where}.secret_file"),
        ca_file=_ca(base / _text(t, "ca_file", where), f"{where}.ca_file"),
        include_patient=_bool(t, "include_patient", where, False),
        timeout_seconds=_number(t, "timeout_seconds", where, 10.0, 0.1, 300.0),
        max_attempts=int(_number(t, "max_attempts", where, 5, 1, 20, integer=True)),
        backoff_seconds=_number(t, "backoff_seconds", where, 0.5, 0.0, 60.0),
        backoff_max_seconds=_number(t, "backoff_max_seconds", where, 30.0, 0.0, 3600.0),
        batch=int(_number(t, "batch", where, 100, 1, 10_000, integer=True)),
    )


_SYSLOG_KEYS: Final = frozenset(
    {"host", "port", "ca_file", "hostname", "facility", "include_patient", "timeout_seconds",
     "max_attempts", "backoff_seconds", "backoff_max_seconds", "batch"}
)  # fmt: skip
_HOST: Final = re.compile(r"^[A-Za-z0-9.:-]{1,253}$")
_PRINTUSASCII: Final = re.compile(r"^[!-~]{1,255}$")


def _syslog(name: str, t: Any, base: Path) -> SyslogDestination:
    where = f"syslog.{name}"
    if not NAME.match(name):
        raise MalformedInputError(f"{where}: a name is [a-z][a-z0-9_-], at most 64 characters")
    if not isinstance(t, dict):
        raise MalformedInputError(f"{where}: not a table")
    unknown = sorted(set(t) - _SYSLOG_KEYS)
    if unknown:
        raise MalformedInputError(f"{where}.{unknown[0]}: unknown key")
    host = _text(t, "host", where)
    if not _HOST.match(host):
        raise MalformedInputError(f"{where}.host: a host name or an IP address")
    hostname = t.get("hostname", "-")
    if not isinstance(hostname, str) or not _PRINTUSASCII.match(hostname):
        raise MalformedInputError(f"{where}.hostname: 1-255 printable ASCII characters")
    return SyslogDestination(
        name=name,
        host=host,
        port=int(_number(t, "port", where, 6514, 1, 65535, integer=True)),
        ca_file=_ca(base / _text(t, "ca_file", where), f"{where}.ca_file"),
        hostname=hostname,
        facility=int(_number(t, "facility", where, 13, 0, 23, integer=True)),
        include_patient=_bool(t, "include_patient", where, False),
        timeout_seconds=_number(t, "timeout_seconds", where, 10.0, 0.1, 300.0),
        max_attempts=int(_number(t, "max_attempts", where, 5, 1, 20, integer=True)),
        backoff_seconds=_number(t, "backoff_seconds", where, 0.5, 0.0, 60.0),
        backoff_max_seconds=_number(t, "backoff_max_seconds", where, 30.0, 0.0, 3600.0),
        batch=int(_number(t, "batch", where, 100, 1, 10_000, integer=True)),
    )


def read_secret(file: Path, *, key: str) -> bytes:
    """The HMAC secret in ``file`` (surrounding whitespace stripped, at least 32 bytes);
    refused when group or others may access the file. The secret is never echoed."""
    try:
        mode = file.stat().st_mode
        raw = file.read_bytes()
    except OSError as exc:
        raise MalformedInputError(f"{key}: cannot read {file}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MalformedInputError(
            f"{key}: refusing {file}: it is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 {file}"
        )
    secret = raw.strip()
    if len(secret) < 32:
        raise MalformedInputError(f"{key}: the secret in {file} is shorter than 32 bytes")
    return secret


def _ca(file: Path, key: str) -> Path:
    if not file.is_file():
        raise MalformedInputError(f"{key}: no such file {file}")
    return file


def _text(t: dict[str, Any], key: str, where: str) -> str:
    value = t.get(key)
    if not isinstance(value, str) or not value.strip():
        raise MalformedInputError(f"{where}.{key}: required, a non-empty string")
    return value


def _bool(t: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = t.get(key, default)
    if not isinstance(value, bool):
        raise MalformedInputError(f"{where}.{key}: true or false")
    return value


def _number(
    t: dict[str, Any], key: str, where: str, default: float, low: float, high: float,
    *, integer: bool = False,
) -> float:  # fmt: skip
    value = t.get(key, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise MalformedInputError(f"{where}.{key}: {kind} from {low:g} to {high:g}")
    return float(value)
