"""Kafka client security settings: refused when inconsistent, password only from a file."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import pytest

from integrations.orthanc.config import ConfigError, parse_config
from ledgerctl.settings import KafkaRole, Settings, kafka_security
from producers.errors import KafkaSettingsError
from producers.kafka_security import KafkaSecurity, client_kwargs, read_password


def secret_file(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_the_default_is_plaintext_with_nothing_else() -> None:
    assert client_kwargs(KafkaSecurity()) == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"protocol": "TLS"}, "not one of"),
        ({"protocol": "SASL_SSL", "sasl_username": "u", "sasl_password_file": "f"}, "mechanism"),
        ({"protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u",
          "sasl_password_file": "f"}, "mechanism"),
        ({"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u"},
         "password file"),
        ({"protocol": "SSL", "sasl_username": "u"}, "SASL settings given"),
        ({"protocol": "PLAINTEXT", "ca_file": "ca.crt"}, "TLS files given"),
        ({"protocol": "SSL", "cert_file": "c.crt"}, "needs its key"),
    ],
)  # fmt: skip
def test_inconsistent_settings_are_refused(settings: dict[str, str], says: str) -> None:
    with pytest.raises(KafkaSettingsError, match=says):
        KafkaSecurity(**settings)


def test_the_password_comes_from_its_file_only_when_connecting(tmp_path: Path) -> None:
    file = tmp_path / "pw"
    security = KafkaSecurity(
        protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="ledger-api",
        sasl_password_file=str(file),
    )
    assert "hunter2" not in repr(security)
    secret_file(file, "hunter2\n")
    assert client_kwargs(security) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ledger-api",
        "sasl_plain_password": "hunter2",
    }
    secret_file(file, "rotated\n")  # the next connection uses the new password
    assert client_kwargs(security)["sasl_plain_password"] == "rotated"


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    file = secret_file(tmp_path / "pw", "hunter2", mode=0o644)
    with pytest.raises(KafkaSettingsError, match="chmod 600") as info:
        read_password(file)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("text", ["", "\n", "  \n"])
def test_an_empty_password_file_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(KafkaSettingsError, match="empty"):
        read_password(secret_file(tmp_path / "pw", text))


def test_a_missing_password_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(KafkaSettingsError, match="cannot read Kafka password file"):
        read_password(str(tmp_path / "absent"))


def test_tls_loads_the_ca_and_the_client_certificate(tmp_path: Path) -> None:
    key, cert = tmp_path / "c.key", tmp_path / "c.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=ledger-api", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    kwargs = client_kwargs(
        KafkaSecurity(protocol="SSL", ca_file=str(cert), cert_file=str(cert), key_file=str(key))
    )
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "ledger-api"),),)]


def test_unusable_tls_files_are_refused_by_name(tmp_path: Path) -> None:
    bad = secret_file(tmp_path / "ca.crt", "not a certificate")
    with pytest.raises(KafkaSettingsError, match=r"ca\.crt"):
        client_kwargs(KafkaSecurity(protocol="SSL", ca_file=bad))


def test_each_command_authenticates_as_its_own_principal(tmp_path: Path) -> None:
    common = {"protocol": "SASL_SSL", "ca_file": "ca.crt", "sasl_mechanism": "SCRAM-SHA-512"}
    consumer = kafka_security(KafkaRole.CONSUMER, credentials_dir=str(tmp_path), **common)
    assert consumer.sasl_username == "ledger-consumer"
    assert consumer.sasl_password_file == str(tmp_path / "ledger-consumer")
    # An explicit user and password file are the process's identity in every role.
    one = kafka_security(
        KafkaRole.CONSUMER,
        credentials_dir=str(tmp_path),
        sasl_username="svc",
        sasl_password_file="/run/secrets/kafka",
        **common,
    )
    assert (one.sasl_username, one.sasl_password_file) == ("svc", "/run/secrets/kafka")
    assert kafka_security(KafkaRole.CONSUMER, credentials_dir=str(tmp_path)) == KafkaSecurity()


def test_settings_read_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SSL_CA_FILE": "/etc/kafka/ca.crt",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": "atna-1",
        "KAFKA_SASL_PASSWORD_FILE": "/etc/kafka/atna-1.password",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.kafka(KafkaRole.ATNA) == KafkaSecurity(
        protocol="SASL_SSL",
        ca_file="/etc/kafka/ca.crt",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="atna-1",
        sasl_password_file="/etc/kafka/atna-1.password",
    )


def test_the_orthanc_plugin_takes_the_same_settings() -> None:
    section = {"KafkaBootstrap": "k:9093", "ProducerId": "o1", "FacilityId": "f"}
    secured = {
        **section,
        "SecurityProtocol": "SASL_SSL",
        "SslCaFile": "/etc/orthanc/kafka-ca.crt",
        "SaslMechanism": "SCRAM-SHA-512",
        "SaslUsername": "ledger-orthanc",
        "SaslPasswordFile": "/etc/orthanc/kafka-password",
    }
    config = parse_config({"PhiLedger": secured})
    assert config.emitter_config().kafka_security == KafkaSecurity(
        protocol="SASL_SSL",
        ca_file="/etc/orthanc/kafka-ca.crt",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="ledger-orthanc",
        sasl_password_file="/etc/orthanc/kafka-password",
    )
    assert parse_config({"PhiLedger": section}).kafka_security == KafkaSecurity()
    with pytest.raises(ConfigError, match="PhiLedger Kafka security settings"):
        parse_config({"PhiLedger": {**secured, "SaslPasswordFile": None}})
