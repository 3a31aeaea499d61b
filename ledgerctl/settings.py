"""Process settings, read from the environment, ``.local/env`` and the TOML config file
``LEDGER_CONFIG_FILE`` (pydantic-settings; ``ledgerctl.configfile``).

Invariant: secrets (database URLs with passwords) are ``SecretStr`` and are never
printed or logged; the environment overrides the env file, which overrides the config
file, which overrides the defaults; every secret also accepts ``<NAME>_FILE``. Kafka
passwords are never settings at all, only the files that hold them (``KafkaSecurity``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ledger.log.periods import PeriodLength
from ledgerctl.client import Api
from ledgerctl.configfile import config_sources
from ledgerctl.replication import TopicReplication
from producers.kafka_security import KafkaSecurity

if TYPE_CHECKING:
    from ledger.pg.pool import PoolSettings


class KafkaRole(StrEnum):
    """Which Kafka principal a ``ledger`` command authenticates as (docs/kafka.md), when
    KAFKA_SASL_USERNAME does not name one for every command."""

    ADMIN = "ledger-admin"
    CONSUMER = "ledger-consumer"
    REPLAY = "ledger-replay"
    API = "ledger-api"
    ATNA = "ledger-atna"
    SIMULATOR = "ledger-simulator"
    #: The Orthanc plugin's relay (configured in Orthanc's "PhiLedger" section, not here).
    ORTHANC = "ledger-orthanc"
    #: The DICOM audit proxy (configured in its TOML file's [ledger.kafka], not here).
    DICOMPROXY = "ledger-dicomproxy"
    OPERATOR = "ledger-operator"
    #: ``ledger registry import`` (and the API's registry writes): WRITE on the registry
    #: topic only.
    REGISTRY = "ledger-registry"


class PgPool(StrEnum):
    """The PostgreSQL connection pools whose sizes and timeouts are settings."""

    APPENDER = "appender"
    READER = "reader"
    REPORTS = "reports"
    COMPLIANCE = "compliance"
    REGISTRY = "registry"


def kafka_security(
    role: KafkaRole,
    *,
    protocol: str = "PLAINTEXT",
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    sasl_password_file: str | None = None,
    credentials_dir: str | None = None,
) -> KafkaSecurity:
    """The client settings of ``role``: an explicit username and password file win; else,
    with SASL and a credentials directory, the role's own principal and its password file
    ``<credentials_dir>/<principal>`` (the local stack's layout)."""
    sasl = protocol.startswith("SASL_")
    if sasl and sasl_username is None and credentials_dir:
        sasl_username = role.value
        sasl_password_file = str(Path(credentials_dir) / role.value)
    return KafkaSecurity(
        protocol=protocol,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        sasl_mechanism=sasl_mechanism if sasl else None,
        sasl_username=sasl_username if sasl else None,
        sasl_password_file=sasl_password_file if sasl else None,
    )


def _env_file() -> str | None:
    explicit = os.environ.get("LEDGER_ENV_FILE")
    if explicit:
        return explicit
    local = Path(".local/env")
    return str(local) if local.is_file() else None


#: The environment variables of the Kafka client security settings (docs/kafka.md).
KAFKA_SECURITY_VARS = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SSL_CA_FILE",
    "KAFKA_SSL_CERT_FILE",
    "KAFKA_SSL_KEY_FILE",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD_FILE",
    "LEDGER_KAFKA_CREDENTIALS_DIR",
)


def kafka_security_from_env(env: Mapping[str, str], role: KafkaRole) -> KafkaSecurity:
    """``role``'s settings from KAFKA_SECURITY_VARS in ``env`` (e.g. a parsed .local/env),
    as ``Settings.kafka`` reads them: for tests and benchmarks."""
    return kafka_security(
        role,
        protocol=env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT",
        ca_file=env.get("KAFKA_SSL_CA_FILE") or None,
        cert_file=env.get("KAFKA_SSL_CERT_FILE") or None,
        key_file=env.get("KAFKA_SSL_KEY_FILE") or None,
        sasl_mechanism=env.get("KAFKA_SASL_MECHANISM") or None,
        sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
        sasl_password_file=env.get("KAFKA_SASL_PASSWORD_FILE") or None,
        credentials_dir=env.get("LEDGER_KAFKA_CREDENTIALS_DIR") or None,
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap: str = Field(default="127.0.0.1:19092", alias="KAFKA_BOOTSTRAP")
    #: Kafka client security (docs/kafka.md): PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    kafka_security_protocol: str = Field(default="PLAINTEXT", alias="KAFKA_SECURITY_PROTOCOL")
    kafka_ssl_ca_file: str | None = Field(default=None, alias="KAFKA_SSL_CA_FILE")
    kafka_ssl_cert_file: str | None = Field(default=None, alias="KAFKA_SSL_CERT_FILE")
    kafka_ssl_key_file: str | None = Field(default=None, alias="KAFKA_SSL_KEY_FILE")
    kafka_sasl_mechanism: str | None = Field(default=None, alias="KAFKA_SASL_MECHANISM")
    #: One principal for every command; unset: each command's own (``KafkaRole``).
    kafka_sasl_username: str | None = Field(default=None, alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password_file: str | None = Field(default=None, alias="KAFKA_SASL_PASSWORD_FILE")
    #: Directory of per-principal password files, named after the principal (make up).
    kafka_credentials_dir: str | None = Field(default=None, alias="LEDGER_KAFKA_CREDENTIALS_DIR")
    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")
    appender_url: SecretStr | None = Field(default=None, alias="LEDGER_APPENDER_URL")
    reader_url: SecretStr | None = Field(default=None, alias="LEDGER_READER_URL")
    #: Where the API inserts alert transitions (a role with INSERT on alert_transitions;
    #: `make up` gives ledger_appender's URL). Unset: the API refuses transitions (503).
    triage_url: SecretStr | None = Field(default=None, alias="LEDGER_TRIAGE_URL")
    api_url: str = Field(default="http://127.0.0.1:18080", alias="LEDGER_API_URL")
    #: The DICOM audit proxy `make up` starts (host:port and AE title), for its demo.
    dicomproxy_address: str = Field(default="127.0.0.1:11112", alias="LEDGER_DICOMPROXY_ADDRESS")
    dicomproxy_aet: str = Field(default="LEDGERPROXY", alias="LEDGER_DICOMPROXY_AET")
    #: Bearer token the CLI sends to the API (`ledger token create`; `make up` issues one).
    api_token: SecretStr | None = Field(default=None, alias="LEDGER_API_TOKEN")
    #: CA bundle the CLI trusts for an https LEDGER_API_URL (default: the system's).
    api_ca_file: str | None = Field(default=None, alias="LEDGER_API_CA_FILE")
    #: Direct TLS for `ledger serve` (deployments without a terminating proxy).
    tls_cert_file: str | None = Field(default=None, alias="LEDGER_TLS_CERT_FILE")
    tls_key_file: str | None = Field(default=None, alias="LEDGER_TLS_KEY_FILE")
    #: Base URL of the links the API writes (FHIR Bundle links, fullUrl), e.g. the
    #: proxy's https URL; default: the bind address. Never taken from Host/X-Forwarded-*.
    public_url: str | None = Field(default=None, alias="LEDGER_PUBLIC_URL")
    #: Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For,
    #: -Proto and -Host name the client (ledger.http.proxies); empty: nobody's.
    trusted_proxies: str = Field(default="", alias="LEDGER_TRUSTED_PROXIES")
    #: Key (>= 32 bytes, mode 600) that MACs page cursors; `make up` generates it. Without
    #: one each API process draws its own: cursors then die with the process.
    cursor_key_file: str | None = Field(default=None, alias="LEDGER_CURSOR_KEY_FILE")
    #: The covered entity's name and how a patient reaches its privacy office, printed at
    #: the top of `ledger disclosures` (the patient-facing accounting).
    facility_name: str | None = Field(default=None, alias="LEDGER_FACILITY_NAME")
    facility_contact: str | None = Field(default=None, alias="LEDGER_FACILITY_CONTACT")
    ledger_name: str = Field(default="philedger.localhost", alias="LEDGER_NAME")
    access_topic: str = Field(default="phi-access", alias="LEDGER_ACCESS_TOPIC")
    relay_topic: str = Field(default="critical-result-relay", alias="LEDGER_RELAY_TOPIC")
    #: The compliance registry's changes (one partition: one order of changes;
    #: docs/design/compliance-registry.md).
    registry_topic: str = Field(default="compliance-registry", alias="LEDGER_REGISTRY_TOPIC")
    partitions: int = Field(default=4, alias="LEDGER_TOPIC_PARTITIONS", ge=1, le=256)
    consumer_group: str = Field(default="phi-ledger", alias="LEDGER_CONSUMER_GROUP")
    signer_key_file: str | None = Field(default=None, alias="LEDGER_SIGNER_KEY_FILE")
    spool_dir: str = Field(default=".local/spool", alias="LEDGER_SPOOL_DIR")
    #: This process's producer key (`ledger producer add`): its events are signed with it
    #: and carry its producer id (docs/producer-auth.md).
    producer_key_file: str | None = Field(default=None, alias="LEDGER_PRODUCER_KEY_FILE")
    #: The API's FHIR feed (POST /fhir/AuditEvent) is a producer of its own.
    fhir_producer_key_file: str | None = Field(default=None, alias="LEDGER_FHIR_PRODUCER_KEY_FILE")
    #: The command line's records of its own reads (export, replay, ...) are signed with
    #: this key, as a producer of their own (`ledger producer add ledger-cli`).
    cli_producer_key_file: str | None = Field(default=None, alias="LEDGER_CLI_PRODUCER_KEY_FILE")
    #: Registry changes (`ledger registry import`, the API's registry writes) are signed
    #: with this key (`ledger producer add registry-local`).
    registry_producer_key_file: str | None = Field(
        default=None, alias="LEDGER_REGISTRY_PRODUCER_KEY_FILE"
    )
    #: `ledger rules demo` emits as a producer of its own (`compliance-demo`).
    compliance_demo_key_file: str | None = Field(
        default=None, alias="LEDGER_COMPLIANCE_DEMO_KEY_FILE"
    )
    #: The compliance rules' thresholds (TOML): `ledger rules run` and the API's
    #: compliance report read the same file (time zone, roles, relay deadlines).
    rules_file: str | None = Field(default=None, alias="LEDGER_RULES_FILE")
    #: The console (docs/console.md): a session unused this long ends.
    console_idle_minutes: float = Field(
        default=30.0, alias="LEDGER_CONSOLE_IDLE_MINUTES", gt=0, le=24 * 60
    )
    #: Console sign-in through OpenID Connect, when an issuer is set (docs/console.md).
    oidc_issuer: str | None = Field(default=None, alias="LEDGER_OIDC_ISSUER")
    oidc_client_id: str | None = Field(default=None, alias="LEDGER_OIDC_CLIENT_ID")
    oidc_client_secret_file: str | None = Field(
        default=None, alias="LEDGER_OIDC_CLIENT_SECRET_FILE"
    )
    oidc_role_claim: str = Field(default="roles", alias="LEDGER_OIDC_ROLE_CLAIM")
    #: ``claim value=role`` pairs, comma-separated; the first the claim holds decides.
    oidc_role_map: str = Field(default="", alias="LEDGER_OIDC_ROLE_MAP")
    oidc_subject_claim: str = Field(default="preferred_username", alias="LEDGER_OIDC_SUBJECT_CLAIM")
    verifier_key: str | None = Field(default=None, alias="LEDGER_VERIFIER_KEY")
    verifier_keys: str | None = Field(default=None, alias="LEDGER_VERIFIER_KEYS")
    checkpoint_every_leaves: int = Field(
        default=100_000, alias="LEDGER_CHECKPOINT_EVERY_LEAVES", ge=1
    )
    checkpoint_every_ms: int = Field(default=1000, alias="LEDGER_CHECKPOINT_EVERY_MS", ge=10)
    #: How long one log of a partition grows before it is sealed: ``month`` or ``day``
    #: (docs/design/periods.md). Changing it affects only logs opened afterwards.
    period: PeriodLength = Field(default=PeriodLength.MONTH, alias="LEDGER_PERIOD")
    #: Months that stay in the database whatever their state: `ledger archive detach`
    #: refuses a month younger than this (the current month is month 0).
    live_months: int = Field(default=13, alias="LEDGER_LIVE_MONTHS", ge=1, le=1200)
    consumer_instance_id: str | None = Field(default=None, alias="LEDGER_CONSUMER_INSTANCE_ID")
    consumer_max_batch: int = Field(
        default=10_000, alias="LEDGER_CONSUMER_MAX_BATCH", ge=1, le=100_000
    )
    session_timeout_ms: int = Field(
        default=10_000, alias="LEDGER_CONSUMER_SESSION_TIMEOUT_MS", ge=6000, le=300_000
    )
    max_clock_skew_seconds: float = Field(
        default=300.0, alias="LEDGER_MAX_CLOCK_SKEW_SECONDS", ge=0, le=86_400
    )
    # --- observability (#17) ---
    #: Log lines: "text" (one human line) or "json" (one JSON object per line).
    log_format: Literal["text", "json"] = Field(default="text", alias="LEDGER_LOG_FORMAT")
    #: The ops listener (/metrics, /livez, /readyz, /version) of a long-running process:
    #: off unless a port is given (each process of one host needs its own; 0: any free).
    ops_host: str = Field(default="127.0.0.1", alias="LEDGER_OPS_HOST")
    ops_port: int | None = Field(default=None, alias="LEDGER_OPS_PORT", ge=0, le=65535)

    # --- PostgreSQL as operators run it (#17) ---
    #: Each pool's sizes and timeouts (docs/postgres.md): LEDGER_PG_<POOL>_POOL_MIN/_MAX
    #: connections, _CONNECT_TIMEOUT and _COMMAND_TIMEOUT seconds. Pools: the consumer's
    #: APPENDER; the API's READER, REPORTS, COMPLIANCE (alerts and their triage) and
    #: REGISTRY. Short-lived commands keep their own small pools. TLS, replicas and
    #: failover are the DSN's (sslmode=verify-full&sslrootcert=..., host=a,b and
    #: target_session_attrs=read-write).
    pg_appender_pool_min: int = Field(default=1, alias="LEDGER_PG_APPENDER_POOL_MIN", ge=0, le=1000)
    pg_appender_pool_max: int = Field(default=4, alias="LEDGER_PG_APPENDER_POOL_MAX", ge=1, le=1000)
    pg_appender_connect_timeout: float = Field(
        default=10.0, alias="LEDGER_PG_APPENDER_CONNECT_TIMEOUT", gt=0, le=600
    )
    pg_appender_command_timeout: float = Field(
        default=60.0, alias="LEDGER_PG_APPENDER_COMMAND_TIMEOUT", gt=0, le=86_400
    )
    pg_reader_pool_min: int = Field(default=1, alias="LEDGER_PG_READER_POOL_MIN", ge=0, le=1000)
    pg_reader_pool_max: int = Field(default=8, alias="LEDGER_PG_READER_POOL_MAX", ge=1, le=1000)
    pg_reader_connect_timeout: float = Field(
        default=10.0, alias="LEDGER_PG_READER_CONNECT_TIMEOUT", gt=0, le=600
    )
    pg_reader_command_timeout: float = Field(
        default=30.0, alias="LEDGER_PG_READER_COMMAND_TIMEOUT", gt=0, le=86_400
    )
    pg_reports_pool_min: int = Field(default=1, alias="LEDGER_PG_REPORTS_POOL_MIN", ge=0, le=1000)
    pg_reports_pool_max: int = Field(default=2, alias="LEDGER_PG_REPORTS_POOL_MAX", ge=1, le=1000)
    pg_reports_connect_timeout: float = Field(
        default=10.0, alias="LEDGER_PG_REPORTS_CONNECT_TIMEOUT", gt=0, le=600
    )
    pg_reports_command_timeout: float = Field(
        default=120.0, alias="LEDGER_PG_REPORTS_COMMAND_TIMEOUT", gt=0, le=86_400
    )
    pg_compliance_pool_min: int = Field(
        default=1, alias="LEDGER_PG_COMPLIANCE_POOL_MIN", ge=0, le=1000
    )
    pg_compliance_pool_max: int = Field(
        default=2, alias="LEDGER_PG_COMPLIANCE_POOL_MAX", ge=1, le=1000
    )
    pg_compliance_connect_timeout: float = Field(
        default=10.0, alias="LEDGER_PG_COMPLIANCE_CONNECT_TIMEOUT", gt=0, le=600
    )
    pg_compliance_command_timeout: float = Field(
        default=60.0, alias="LEDGER_PG_COMPLIANCE_COMMAND_TIMEOUT", gt=0, le=86_400
    )
    pg_registry_pool_min: int = Field(default=1, alias="LEDGER_PG_REGISTRY_POOL_MIN", ge=0, le=1000)
    pg_registry_pool_max: int = Field(default=2, alias="LEDGER_PG_REGISTRY_POOL_MAX", ge=1, le=1000)
    pg_registry_connect_timeout: float = Field(
        default=10.0, alias="LEDGER_PG_REGISTRY_CONNECT_TIMEOUT", gt=0, le=600
    )
    pg_registry_command_timeout: float = Field(
        default=120.0, alias="LEDGER_PG_REGISTRY_COMMAND_TIMEOUT", gt=0, le=86_400
    )

    # --- Kafka cluster (#17) ---
    #: Replicas of every topic `ledger topics` creates: 1 on one broker, 3 on a cluster.
    topic_replication_factor: int = Field(
        default=1, alias="LEDGER_TOPIC_REPLICATION_FACTOR", ge=1, le=32
    )
    #: In-sync replicas an acks=all write needs (the topic's min.insync.replicas): 2 of 3
    #: keeps accepting writes with one broker down and never acknowledges a single copy.
    topic_min_insync_replicas: int = Field(
        default=1, alias="LEDGER_TOPIC_MIN_INSYNC_REPLICAS", ge=1, le=32
    )

    # --- monitor (#18) ---
    #: Where `ledger monitor` keeps the last verified checkpoint of every log (0600).
    monitor_state_file: str = Field(
        default=".local/monitor/state.json", alias="LEDGER_MONITOR_STATE_FILE"
    )
    #: The API endpoints it reads (comma-separated; default LEDGER_API_URL). With two or
    #: more, they must serve one history (a split view is a finding).
    monitor_endpoints: str | None = Field(default=None, alias="LEDGER_MONITOR_ENDPOINTS")
    #: Seconds between rounds in continuous mode.
    monitor_interval_seconds: float = Field(
        default=60.0, alias="LEDGER_MONITOR_INTERVAL_SECONDS", gt=0, le=86_400
    )
    #: How long a checkpoint may stay put while the API reports unsigned leaves.
    monitor_stall_after_seconds: float = Field(
        default=300.0, alias="LEDGER_MONITOR_STALL_AFTER_SECONDS", ge=0, le=30 * 86_400
    )

    # --- witnesses (#18) ---
    #: The witnesses (C2SP tlog-witness) the consumer submits every new checkpoint to and
    #: `ledger verify` trusts: `<URL> <witness verifier key>` entries, separated by commas
    #: or newlines. Empty (the default): nothing is submitted, no cosignature is required.
    witnesses: str = Field(default="", alias="LEDGER_WITNESSES")
    #: How many of them must cosign a log's newest checkpoint (k of n); unset: all of them.
    witness_threshold: int | None = Field(default=None, alias="LEDGER_WITNESS_THRESHOLD", ge=1)
    #: How often the consumer submits new checkpoints (and retries failed submissions).
    witness_submit_every_ms: int = Field(
        default=1000, alias="LEDGER_WITNESS_SUBMIT_EVERY_MS", ge=10, le=3_600_000
    )
    #: The total time one submission may take before it counts as failed.
    witness_timeout_seconds: float = Field(
        default=10.0, alias="LEDGER_WITNESS_TIMEOUT_SECONDS", gt=0, le=300
    )
    # --- history reads (#19) ---
    #: API worker processes sharing the port (SO_REUSEPORT; `ledger serve --workers`). Each
    #: has its own pools, read recorder (producer id and spool: worker k > 0 appends
    #: `-w<k>`, and its producer key file is LEDGER_PRODUCER_KEY_FILE with `-w<k>` before
    #: the suffix) and ops listener (LEDGER_OPS_PORT + k). With more than one, the console
    #: is not served (its sign-in sessions live in one process): docs/api.md.
    api_workers: int = Field(default=1, alias="LEDGER_API_WORKERS", ge=1, le=64)

    @model_validator(mode="after")
    def _min_insync_within_replicas(self) -> Settings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"LEDGER_TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) exceeds "
                f"LEDGER_TOPIC_REPLICATION_FACTOR ({self.topic_replication_factor}): "
                "no acks=all write could ever succeed"
            )
        return self

    @property
    def replication(self) -> TopicReplication:
        """How `ledger topics` replicates the topics it creates."""
        return TopicReplication(
            factor=self.topic_replication_factor,
            min_insync=self.topic_min_insync_replicas,
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment > env file > TOML config file > defaults, each with ``*_FILE``
        secrets (docs/operations.md, "Configuration")."""
        return config_sources(settings_cls, init_settings, env_settings, dotenv_settings)

    @classmethod
    def load(cls) -> Settings:
        return cls(_env_file=_env_file())  # type: ignore[call-arg]

    def api(self, url: str | None = None) -> Api:
        """The API endpoint the CLI talks to, with this environment's token."""
        token = None if self.api_token is None else self.api_token.get_secret_value()
        return Api(url=url or self.api_url, token=token, ca_file=self.api_ca_file)

    def require(self, name: str) -> str:
        """The value of a secret URL setting, or a clear error naming its variable."""
        value: SecretStr | None = getattr(self, name)
        if value is None:
            alias = type(self).model_fields[name].alias
            raise SystemExit(f"{alias} is not set (run `make up`, or export it)")
        return value.get_secret_value()

    def verifier_key_strings(self) -> list[str]:
        """Configured verifier keys: LEDGER_VERIFIER_KEYS (a list, for rotation) and/or
        LEDGER_VERIFIER_KEY."""
        return [k for k in (self.verifier_keys, self.verifier_key) if k]

    def kafka(self, role: KafkaRole) -> KafkaSecurity:
        """The Kafka client security settings this process uses in ``role``."""
        return kafka_security(
            role,
            protocol=self.kafka_security_protocol,
            ca_file=self.kafka_ssl_ca_file,
            cert_file=self.kafka_ssl_cert_file,
            key_file=self.kafka_ssl_key_file,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password_file=self.kafka_sasl_password_file,
            credentials_dir=self.kafka_credentials_dir,
        )

    def pg_pool(self, pool: PgPool) -> PoolSettings:
        """The sizes and timeouts of ``pool`` (LEDGER_PG_<POOL>_*); refused when the
        minimum exceeds the maximum."""
        from ledger.pg.pool import PoolSettings

        name = pool.value
        try:
            return PoolSettings(
                min_size=getattr(self, f"pg_{name}_pool_min"),
                max_size=getattr(self, f"pg_{name}_pool_max"),
                connect_timeout=getattr(self, f"pg_{name}_connect_timeout"),
                command_timeout=getattr(self, f"pg_{name}_command_timeout"),
            )
        except ValueError as exc:
            raise SystemExit(f"LEDGER_PG_{name.upper()}_POOL_MIN/_MAX: {exc}") from exc

    @property
    def event_topics(self) -> tuple[str, str]:
        """The audit event topics (``partitions`` partitions each)."""
        return (self.access_topic, self.relay_topic)

    @property
    def topics(self) -> tuple[str, str, str]:
        """Every topic the consumer reads: the event topics and the registry topic."""
        return (self.access_topic, self.relay_topic, self.registry_topic)
