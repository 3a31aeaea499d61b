"""The plugin's settings: the ``PhiLedger`` section of Orthanc's JSON configuration.

Invariant: ``parse_config`` either returns a complete ``PluginConfig`` or raises
``ConfigError`` naming the bad key (``PhiLedger.FacilityId``); it never reads anything
but the mapping it is given. The keys ``Relay``, ``RelayIdle``, ``RelayNice`` and
``RelayPython`` are read as their new names ``Pipe...`` (when those are absent) and
listed in ``deprecated_keys``, which the plugin logs once when it starts. Keys follow
Orthanc's PascalCase style::

    "PhiLedger": {
      "KafkaBootstrap": "127.0.0.1:19092",       // required
      "ProducerId": "orthanc-main",              // required, unique per Orthanc
      "FacilityId": "stmarys-boston",            // required
      "FacilityName": "St Mary's Boston",
      "AccessTopic": "phi-access", "RelayTopic": "critical-result-relay",
      "SpoolDirectory": "/var/lib/orthanc/phi-spool",   // strongly recommended
      "BlockSeconds": 0.05,        // longest an Orthanc thread waits to hand over an event
      "MaxPending": 10000,         // events queued in memory before push-back
      "FailClosed": false,         // true: refuse (403) a PHI request that cannot be audited
      "DefaultRole": "orthanc-user",
      "Users": {"dr.alice": {"Role": "radiologist", "Name": "Alice Ng", "Npi": "1234567893",
                             "Organization": "..."}},
      "PurposeOfUse": "TREAT",     // default HL7 PurposeOfUse; header X-Purpose-Of-Use wins
      "DefaultPatientIdIssuer": "stmarys-boston",  // when IssuerOfPatientID is empty
      "CacheSize": 10000, "CacheSeconds": 300,
      "DeleteWaitSeconds": 2.0,
      "ResolveLimit": 5000,        // resources resolved per query, listing or archive answer
      "ArchiveMaxBytes": 268435456,  // largest synchronous archive the plugin buffers (0: any)
      "WrapRestMove": false,       // record REST C-MOVE (never with moves into this Orthanc)
      "TrustedProxies": ["127.0.0.1"], "UserHeader": "X-Forwarded-User",
      "PythonPath": ["/opt/phi-ledger/site-packages"],
      "SecurityProtocol": "SASL_SSL",          // default PLAINTEXT (docs/kafka.md)
      "SslCaFile": "/etc/orthanc/kafka-ca.crt", "SslCertFile": null, "SslKeyFile": null,
      "SaslMechanism": "SCRAM-SHA-512", "SaslUsername": "ledger-orthanc",
      "SaslPasswordFile": "/etc/orthanc/kafka-password",   // mode 600; never the password
      "MaxBlockSeconds": 2.0, "StopTimeoutSeconds": 10.0,
      "GilSwitchIntervalSeconds": 0.0002,
      "Pipe": true,                // send events through a pipe process (see docs/orthanc.md)
      "PipeIdle": true,            // the pipe process uses only CPU that nothing else wants
      "PipeNice": 10, "PipePython": "/usr/bin/python3.11",
      "Enabled": true
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from producers import PURPOSES_OF_USE, EmitterConfig, KafkaSecurity, KafkaSettingsError

SECTION: Final = "PhiLedger"


class ConfigError(ValueError):
    """The ``PhiLedger`` section is missing or invalid; the message names the key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInfo:
    """What the ledger records about an Orthanc user besides the login name."""

    role: str
    name: str | None = None
    npi: str | None = None
    organization: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginConfig:
    bootstrap_servers: str
    producer_id: str
    facility_id: str
    facility_name: str | None = None
    access_topic: str = "phi-access"
    relay_topic: str = "critical-result-relay"
    spool_dir: str | None = None
    block_seconds: float = 0.05
    max_pending: int = 10_000
    fail_closed: bool = False
    #: Replace Orthanc's C-FIND SCP with the audited one (docs/orthanc.md, "C-FIND").
    audit_dicom_find: bool = True
    default_role: str = "orthanc-user"
    users: Mapping[str, UserInfo] = field(default_factory=lambda: MappingProxyType({}))
    purpose_of_use: str | None = None
    default_issuer: str | None = None
    cache_size: int = 10_000
    cache_seconds: float = 300.0
    delete_wait_seconds: float = 2.0
    #: Resources of one answer (query, listing, archive) resolved to their patients.
    resolve_limit: int = 5000
    #: Largest synchronous archive or media download (Orthanc's disk size of its
    #: resources) the wrapper buffers; larger ones are refused (0: no bound).
    archive_max_bytes: int = 256 * 1024 * 1024
    #: Wrap ``POST /modalities/{m}/move`` (REST C-MOVE): only safe when no move brings
    #: instances into this Orthanc (docs/orthanc.md, "Wrapped routes").
    wrap_rest_move: bool = False
    trusted_proxies: frozenset[str] = frozenset()
    user_header: str | None = None
    python_path: tuple[str, ...] = ()
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    max_block_seconds: float = 2.0
    stop_timeout_seconds: float = 10.0
    #: The embedded interpreter's GIL switch interval (``sys.setswitchinterval``): the
    #: longest an Orthanc thread entering a Python callback waits for the plugin's
    #: background threads. Python's default, 5 ms, would be the p99 Orthanc pays.
    gil_switch_seconds: float = 0.0002
    #: Emit through a pipe process (``producers.pipe``) that owns the Kafka client,
    #: validation and encoding, instead of in Orthanc's interpreter (``SyncEmitter``).
    pipe: bool = True
    #: Run the pipe process at idle CPU priority (``SCHED_IDLE``); one starved of CPU is
    #: replaced by one at ``pipe_nice`` until it keeps up (``producers.pipe``).
    pipe_idle: bool = True
    pipe_nice: int = 10
    #: The pipe process's interpreter (default: the system's python of Orthanc's version).
    pipe_python: str | None = None
    enabled: bool = True
    #: Deprecated keys the section used, as (old, new) pairs: the plugin logs each once.
    deprecated_keys: tuple[tuple[str, str], ...] = ()
    #: This Orthanc's producer key (``ledger producer add``): its events are signed with it.
    producer_key_file: str | None = None
    #: Orthanc's own ``SslEnabled`` (its REST API serves HTTPS) and ``DicomTlsEnabled``
    #: (its DICOM server accepts TLS associations only); None: unreadable, recorded as
    #: transport UNKNOWN (integrations/orthanc/transport.py).
    http_tls: bool | None = None
    dicom_tls: bool | None = None

    def emitter_config(self) -> EmitterConfig:
        return EmitterConfig(
            bootstrap_servers=self.bootstrap_servers,
            producer_id=self.producer_id,
            access_topic=self.access_topic,
            relay_topic=self.relay_topic,
            spool_dir=self.spool_dir,
            max_block_seconds=self.max_block_seconds,
            stop_timeout_seconds=self.stop_timeout_seconds,
            kafka_security=self.kafka_security,
            producer_key_file=self.producer_key_file,
        )

    def user(self, login: str) -> UserInfo:
        return self.users.get(login) or UserInfo(role=self.default_role)


def _key(name: str) -> str:
    return f"{SECTION}.{name}"


#: Keys renamed once the pipe process stopped sharing its name with critical-result
#: relays: new name -> old name, still read when the new one is absent.
RENAMED_KEYS: Final[Mapping[str, str]] = MappingProxyType(
    {"Pipe": "Relay", "PipeIdle": "RelayIdle", "PipeNice": "RelayNice", "PipePython": "RelayPython"}
)


def _renamed(section: Mapping[str, object], name: str, used: list[tuple[str, str]]) -> str:
    """The key to read for setting ``name``: itself, or its old name if only that is set
    (noted in ``used`` as (old, new))."""
    old = RENAMED_KEYS[name]
    if name not in section and old in section:
        used.append((old, name))
        return old
    return name


def _str(section: Mapping[str, object], name: str, default: str | None = None) -> str | None:
    value = section.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{_key(name)} must be a non-empty string")
    return value


def _required(section: Mapping[str, object], name: str) -> str:
    value = _str(section, name)
    if value is None:
        raise ConfigError(f"{_key(name)} is required")
    return value


def _number(section: Mapping[str, object], name: str, default: float, *, low: float) -> float:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
        raise ConfigError(f"{_key(name)} must be a number >= {low}")
    return float(value)


def _int(section: Mapping[str, object], name: str, default: int, *, low: int) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{_key(name)} must be an integer >= {low}")
    return value


def _bool(section: Mapping[str, object], name: str, default: bool) -> bool:
    value = section.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{_key(name)} must be true or false")
    return value


def _strings(section: Mapping[str, object], name: str) -> tuple[str, ...]:
    value = section.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{_key(name)} must be a list of strings")
    return tuple(value)


def _users(section: Mapping[str, object]) -> Mapping[str, UserInfo]:
    raw = section.get("Users", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{_key('Users')} must be an object of user name -> settings")
    users: dict[str, UserInfo] = {}
    for login, info in raw.items():
        if not isinstance(info, dict):
            raise ConfigError(f"{_key('Users')}.{login} must be an object")
        where = f"Users.{login}"
        role = info.get("Role")
        if not isinstance(role, str) or not role.strip():
            raise ConfigError(f"{_key(where)}.Role must be a non-empty string")
        extras = {}
        for key in ("Name", "Npi", "Organization"):
            value = info.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{_key(where)}.{key} must be a non-empty string")
            extras[key.lower()] = value
        users[str(login)] = UserInfo(
            role=role, name=extras["name"], npi=extras["npi"], organization=extras["organization"]
        )
    return MappingProxyType(users)


def _kafka_security(section: Mapping[str, object]) -> KafkaSecurity:
    try:
        return KafkaSecurity(
            protocol=_str(section, "SecurityProtocol", "PLAINTEXT") or "PLAINTEXT",
            ca_file=_str(section, "SslCaFile"),
            cert_file=_str(section, "SslCertFile"),
            key_file=_str(section, "SslKeyFile"),
            sasl_mechanism=_str(section, "SaslMechanism"),
            sasl_username=_str(section, "SaslUsername"),
            sasl_password_file=_str(section, "SaslPasswordFile"),
        )
    except KafkaSettingsError as exc:
        raise ConfigError(f"{SECTION} Kafka security settings: {exc}") from exc


def _orthanc_flag(configuration: Mapping[str, object], name: str) -> bool | None:
    """A boolean of Orthanc's own configuration: absent is Orthanc's default (false), a
    value that is not a boolean is unknown (None)."""
    value = configuration.get(name, False)
    return value if isinstance(value, bool) else None


def parse_config(configuration: Mapping[str, object]) -> PluginConfig:
    """The plugin's settings from Orthanc's whole configuration (``GetConfiguration``)."""
    section = configuration.get(SECTION)
    if not isinstance(section, dict):
        raise ConfigError(f"the {SECTION} section is missing from Orthanc's configuration")
    purpose = _str(section, "PurposeOfUse")
    if purpose is not None and purpose not in PURPOSES_OF_USE:
        raise ConfigError(f"{_key('PurposeOfUse')} {purpose!r} is not an HL7 PurposeOfUse code")
    renamed: list[tuple[str, str]] = []
    return PluginConfig(
        bootstrap_servers=_required(section, "KafkaBootstrap"),
        producer_id=_required(section, "ProducerId"),
        facility_id=_required(section, "FacilityId"),
        facility_name=_str(section, "FacilityName"),
        access_topic=_str(section, "AccessTopic", "phi-access") or "phi-access",
        relay_topic=_str(section, "RelayTopic", "critical-result-relay") or "critical-result-relay",
        spool_dir=_str(section, "SpoolDirectory"),
        block_seconds=_number(section, "BlockSeconds", 0.05, low=0.0),
        max_pending=_int(section, "MaxPending", 10_000, low=1),
        fail_closed=_bool(section, "FailClosed", False),
        audit_dicom_find=_bool(section, "AuditDicomFind", True),
        default_role=_str(section, "DefaultRole", "orthanc-user") or "orthanc-user",
        users=_users(section),
        purpose_of_use=purpose,
        default_issuer=_str(section, "DefaultPatientIdIssuer"),
        cache_size=_int(section, "CacheSize", 10_000, low=1),
        cache_seconds=_number(section, "CacheSeconds", 300.0, low=0.0),
        delete_wait_seconds=_number(section, "DeleteWaitSeconds", 2.0, low=0.0),
        resolve_limit=_int(section, "ResolveLimit", 5000, low=1),
        archive_max_bytes=_int(section, "ArchiveMaxBytes", 256 * 1024 * 1024, low=0),
        wrap_rest_move=_bool(section, "WrapRestMove", False),
        trusted_proxies=frozenset(_strings(section, "TrustedProxies")),
        user_header=_str(section, "UserHeader"),
        python_path=_strings(section, "PythonPath"),
        kafka_security=_kafka_security(section),
        max_block_seconds=_number(section, "MaxBlockSeconds", 2.0, low=0.001),
        stop_timeout_seconds=_number(section, "StopTimeoutSeconds", 10.0, low=0.001),
        gil_switch_seconds=_number(section, "GilSwitchIntervalSeconds", 0.0002, low=0.000001),
        pipe=_bool(section, _renamed(section, "Pipe", renamed), True),
        pipe_idle=_bool(section, _renamed(section, "PipeIdle", renamed), True),
        pipe_nice=_int(section, _renamed(section, "PipeNice", renamed), 10, low=0),
        pipe_python=_str(section, _renamed(section, "PipePython", renamed)),
        enabled=_bool(section, "Enabled", True),
        deprecated_keys=tuple(renamed),
        producer_key_file=_str(section, "ProducerKeyFile"),
        http_tls=_orthanc_flag(configuration, "SslEnabled"),
        dicom_tls=_orthanc_flag(configuration, "DicomTlsEnabled"),
    )
