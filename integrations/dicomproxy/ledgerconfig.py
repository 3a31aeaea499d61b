"""The ``[ledger]`` section of the proxy's TOML file: where its operations become ledger
events (Kafka, topic, producer identity and key, facility, spool).

Invariant: a ``LedgerConfig`` that exists is valid: every required key is present, the
Kafka security settings are consistent (``KafkaSecurity``'s own rules), the producer key
and TLS files exist, bounds hold; every bad value is refused with a
``DicomProxyConfigError`` naming its dotted key (``ledger.kafka.protocol``). Nothing here
connects or reads a key: ``emitter_config`` only builds the emitter's settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from integrations.dicomproxy.errors import DicomProxyConfigError
from producers import EmitterConfig, KafkaSecurity, KafkaSettingsError

if TYPE_CHECKING:
    from integrations.dicomproxy.config import _Reader

__all__ = ["LedgerConfig", "parse_ledger"]

_KEYS: Final = frozenset(
    {
        "bootstrap_servers", "topic", "producer_id", "producer_key_file", "facility_id",
        "facility_name", "spool_dir", "spool_max_bytes", "max_pending",
        "stalled_after_seconds", "kafka",
    }
)  # fmt: skip
_KAFKA_KEYS: Final = frozenset(
    {"protocol", "ca_file", "cert_file", "key_file", "sasl_mechanism", "sasl_username",
     "sasl_password_file"}
)  # fmt: skip
_DEFAULT_SPOOL_BYTES: Final = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerConfig:
    bootstrap_servers: str
    #: The access-event topic (the ledger's LEDGER_ACCESS_TOPIC).
    topic: str = "phi-access"
    producer_id: str
    #: The producer's Ed25519 key (``ledger producer add``): every event is signed with it.
    producer_key_file: str
    facility_id: str
    facility_name: str | None = None
    #: The emitter's fsynced spool: events wait here while Kafka is away.
    spool_dir: str
    spool_max_bytes: int = _DEFAULT_SPOOL_BYTES
    #: Events accepted and not yet handed to the emitter, at most; more are refused.
    max_pending: int = 10_000
    #: Events waiting this long without the emitter taking any (the spool is full or
    #: unwritable, and Kafka away) make the recorder refuse new operations.
    stalled_after_seconds: float = 10.0
    kafka: KafkaSecurity = field(default_factory=KafkaSecurity)

    def emitter_config(self) -> EmitterConfig:
        return EmitterConfig(
            bootstrap_servers=self.bootstrap_servers,
            producer_id=self.producer_id,
            access_topic=self.topic,
            max_block_seconds=2.0,
            kafka_security=self.kafka,
            spool_dir=self.spool_dir,
            spool_max_bytes=self.spool_max_bytes,
            producer_key_file=self.producer_key_file,
        )


def parse_ledger(t: _Reader) -> LedgerConfig:
    """Validate the ``[ledger]`` table (``t``, a reader of ``config``)."""
    t.only(set(_KEYS))
    return LedgerConfig(
        bootstrap_servers=t.string("bootstrap_servers", None),
        topic=t.string("topic", "phi-access"),
        producer_id=_text(t, "producer_id", None),
        producer_key_file=_required(t.path("producer_key_file", required=True)),
        facility_id=_text(t, "facility_id", None),
        facility_name=_text(t, "facility_name", "") or None,
        spool_dir=_required(t.path("spool_dir", required=True, is_file=False)),
        spool_max_bytes=t.integer("spool_max_bytes", _DEFAULT_SPOOL_BYTES, 1024, 2**40),
        max_pending=t.integer("max_pending", 10_000, 1, 10**6),
        stalled_after_seconds=t.seconds("stalled_after_seconds", 10.0),
        kafka=_kafka(t.table("kafka")),
    )


def _required(value: str | None) -> str:
    if value is None:  # pragma: no cover - ``path(required=True)`` raised already
        raise DicomProxyConfigError("is required")
    return value


def _text(t: _Reader, name: str, default: str | None) -> str:
    """An identifier the ledger stores (at most 256 characters, ASCII printable)."""
    if default == "" and not t.has(name):
        return ""
    value = t.string(name, default)
    if len(value) > 256 or not value.isprintable():
        raise DicomProxyConfigError(
            "must be at most 256 printable characters", key=f"ledger.{name}"
        )
    return value


def _kafka(k: _Reader) -> KafkaSecurity:
    k.only(set(_KAFKA_KEYS))
    try:
        return KafkaSecurity(
            protocol=k.string("protocol", "PLAINTEXT").upper(),
            ca_file=k.path("ca_file", required=False),
            cert_file=k.path("cert_file", required=False),
            key_file=k.path("key_file", required=False),
            sasl_mechanism=k.optional_string("sasl_mechanism"),
            sasl_username=k.optional_string("sasl_username"),
            sasl_password_file=k.path("sasl_password_file", required=False),
        )
    except KafkaSettingsError as exc:
        raise DicomProxyConfigError(str(exc), key="ledger.kafka") from exc
