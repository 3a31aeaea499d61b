"""How a Kafka client authenticates: TLS (CA, optional client certificate) and SASL.

Invariant: one frozen ``KafkaSecurity`` value describes a client's security settings, and
``client_kwargs`` is the only place that turns it into aiokafka arguments. The SASL
password is only ever read from a file (owner-only), when a client is about to connect, so
it is never an argument, a field, a repr or a log line, and a rotated password is used by
the next connection. An inconsistent combination (SASL without a user, a client
certificate without its key, TLS files on a plaintext protocol) is refused up front.

The default, ``KafkaSecurity()``, is PLAINTEXT: for library users who run their own broker
on a trusted network. Everything the local stack starts is SASL_SSL (docs/kafka.md).
"""

from __future__ import annotations

import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiokafka.helpers import create_ssl_context

from producers.errors import KafkaSettingsError

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaSecurity:
    """Kafka's standard client security settings (``security.protocol``, ``ssl.*``,
    ``sasl.*``); the password is named by its file, never held."""

    protocol: str = "PLAINTEXT"
    #: CA bundle (PEM) the broker's certificate must chain to; None: the system's CAs.
    ca_file: str | None = None
    #: Client certificate chain and its key (PEM), for brokers that ask for mutual TLS.
    cert_file: str | None = None
    key_file: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    #: File holding the SASL password (first line); must not be readable by group/others.
    sasl_password_file: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSettingsError(
                f"Kafka security protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}"
            )
        if self.sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise KafkaSettingsError(
                    f"{self.protocol} needs a SASL mechanism, one of {', '.join(SASL_MECHANISMS)}"
                )
            if not self.sasl_username or not self.sasl_password_file:
                raise KafkaSettingsError(f"{self.protocol} needs a SASL username and password file")
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password_file:
            raise KafkaSettingsError(f"SASL settings given, but the protocol is {self.protocol}")
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaSettingsError("a Kafka client certificate needs its key file, and back")
        if not self.tls and (self.ca_file or self.cert_file):
            raise KafkaSettingsError(f"TLS files given, but the protocol is {self.protocol}")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")


def read_password(path: str) -> str:
    """The first line of an owner-only password file."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KafkaSettingsError(
                f"Kafka password file {path} is readable by others (chmod 600 it)"
            )
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KafkaSettingsError(f"cannot read Kafka password file {path}: {exc.strerror}") from exc
    password = lines[0].strip() if lines else ""
    if not password:
        raise KafkaSettingsError(f"Kafka password file {path} is empty")
    return password


def client_kwargs(security: KafkaSecurity) -> dict[str, object]:
    """aiokafka keyword arguments (producer, consumer, admin client) for ``security``.

    Reads the CA, certificate, key and password files now: call it just before connecting.
    """
    kwargs: dict[str, object] = {"security_protocol": security.protocol}
    if security.tls:
        try:
            kwargs["ssl_context"] = create_ssl_context(
                cafile=security.ca_file, certfile=security.cert_file, keyfile=security.key_file
            )
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(
                f for f in (security.ca_file, security.cert_file, security.key_file) if f
            )
            raise KafkaSettingsError(f"cannot load Kafka TLS files ({files}): {exc}") from exc
    if security.sasl:
        if security.sasl_password_file is None:  # refused by __post_init__; for the types
            raise KafkaSettingsError(f"{security.protocol} needs a SASL password file")
        kwargs["sasl_mechanism"] = security.sasl_mechanism
        kwargs["sasl_plain_username"] = security.sasl_username
        kwargs["sasl_plain_password"] = read_password(security.sasl_password_file)
    return kwargs
