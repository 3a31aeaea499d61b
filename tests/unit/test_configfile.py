"""Settings from the TOML config file, the env file and the environment, in that order of
rising precedence, with ``*_FILE`` secrets; every bad file refused with a clear reason."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ledgerctl.configfile import (
    CONFIG_FILE_VAR,
    ConfigFileError,
    read_secret_file,
    secret_fields,
    toml_keys,
)
from ledgerctl.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "config" / "ledger.toml"
SECRETS = secret_fields(Settings)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting, secret file or config file from the caller's environment."""
    for field in Settings.model_fields.values():
        if field.alias:
            monkeypatch.delenv(field.alias, raising=False)
            monkeypatch.delenv(field.alias + "_FILE", raising=False)
    monkeypatch.delenv(CONFIG_FILE_VAR, raising=False)
    monkeypatch.delenv("LEDGER_ENV_FILE", raising=False)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def load(env_file: Path | None = None) -> Settings:
    return Settings(_env_file=env_file)  # type: ignore[call-arg]


def test_without_a_config_file_the_defaults_hold() -> None:
    settings = load()
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.spool_dir == ".local/spool"
    assert settings.appender_url is None


def test_the_config_file_overrides_the_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    toml = write(
        tmp_path / "ledger.toml",
        'kafka_bootstrap = "k1:9093,k2:9093"\nLEDGER_TOPIC_PARTITIONS = 12\n'
        'spool_dir = "/var/lib/philedger/spool"\n',
    )
    monkeypatch.setenv(CONFIG_FILE_VAR, str(toml))
    settings = load()
    assert settings.kafka_bootstrap == "k1:9093,k2:9093"  # by field name
    assert settings.partitions == 12  # by environment name
    assert settings.spool_dir == "/var/lib/philedger/spool"
    assert settings.consumer_group == "phi-ledger"  # not in the file: the default


def test_environment_over_env_file_over_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    toml = write(
        tmp_path / "ledger.toml",
        'kafka_bootstrap = "toml:1"\nconsumer_group = "toml-group"\nledger_name = "toml.example"\n',
    )
    env_file = write(
        tmp_path / "env", "KAFKA_BOOTSTRAP=envfile:1\nLEDGER_CONSUMER_GROUP=envfile-group\n"
    )
    monkeypatch.setenv(CONFIG_FILE_VAR, str(toml))
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "env:1")
    settings = load(env_file)
    assert settings.kafka_bootstrap == "env:1"
    assert settings.consumer_group == "envfile-group"
    assert settings.ledger_name == "toml.example"


def test_a_secret_file_in_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = write(tmp_path / "appender-url", "postgresql://app:s3cret@db/ledger\n")
    monkeypatch.setenv("LEDGER_APPENDER_URL_FILE", str(secret))
    settings = load()
    assert settings.require("appender_url") == "postgresql://app:s3cret@db/ledger"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(("name", "env"), sorted(SECRETS.items()))
def test_every_secret_setting_accepts_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, env: str
) -> None:
    secret = write(tmp_path / name, f"value-of-{name}")
    monkeypatch.setenv(env + "_FILE", str(secret))
    value = getattr(load(), name)
    assert value.get_secret_value() == f"value-of-{name}"
    monkeypatch.delenv(env + "_FILE")
    toml = write(tmp_path / "ledger.toml", f'{name}_file = "{secret}"\n')
    monkeypatch.setenv(CONFIG_FILE_VAR, str(toml))
    assert getattr(load(), name).get_secret_value() == f"value-of-{name}"


def test_secret_files_keep_the_precedence_of_their_level(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from_toml = write(tmp_path / "toml-secret", "postgresql://toml@db/l")
    from_env = write(tmp_path / "env-secret", "postgresql://env@db/l")
    toml = write(
        tmp_path / "ledger.toml",
        f'reader_url_file = "{from_toml}"\nappender_url = "postgresql://toml-inline@db/l"\n',
    )
    monkeypatch.setenv(CONFIG_FILE_VAR, str(toml))
    monkeypatch.setenv("LEDGER_APPENDER_URL_FILE", str(from_env))  # env file beats TOML value
    monkeypatch.setenv("LEDGER_READER_URL", "postgresql://env-inline@db/l")  # env beats TOML file
    settings = load()
    assert settings.require("appender_url") == "postgresql://env@db/l"
    assert settings.require("reader_url") == "postgresql://env-inline@db/l"


def test_a_secret_file_in_the_env_file(tmp_path: Path) -> None:
    secret = write(tmp_path / "token", "plt_abc\n")
    env_file = write(tmp_path / "env", f"LEDGER_API_TOKEN_FILE={secret}\n")
    token = load(env_file).api_token
    assert token is not None
    assert token.get_secret_value() == "plt_abc"


def test_a_value_and_its_file_at_one_level_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = write(tmp_path / "db", "postgresql://o@db/l")
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@db/l")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    with pytest.raises(ConfigFileError, match="DATABASE_URL and DATABASE_URL_FILE are both set"):
        load()
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("DATABASE_URL_FILE")
    toml = write(
        tmp_path / "ledger.toml",
        f'database_url = "postgresql://x@db/l"\ndatabase_url_file = "{secret}"\n',
    )
    monkeypatch.setenv(CONFIG_FILE_VAR, str(toml))
    with pytest.raises(ConfigFileError, match="both set"):
        load()


def test_a_missing_secret_file_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LEDGER_READER_URL_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigFileError) as refused:
        load()
    assert str(refused.value) == (
        f"LEDGER_READER_URL_FILE: secret file {tmp_path / 'absent'} does not exist"
    )


@pytest.mark.parametrize(("content", "says"), [("", "is empty"), ("\n  \n", "is empty")])
def test_an_empty_secret_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, says: str
) -> None:
    monkeypatch.setenv("LEDGER_API_TOKEN_FILE", str(write(tmp_path / "token", content)))
    with pytest.raises(ConfigFileError, match=f"LEDGER_API_TOKEN_FILE: secret file .* {says}"):
        load()


def test_a_directory_is_not_a_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEDGER_API_TOKEN_FILE", str(tmp_path))
    with pytest.raises(ConfigFileError, match="is a directory"):
        load()


def test_an_unreadable_secret_file_is_refused(tmp_path: Path) -> None:
    """Read as another user where the tests run as root (root reads any file): a forked
    child drops to nobody and reports what it got."""
    secret = write(tmp_path / "appender-url", "postgresql://app:s3cret@db/ledger")
    secret.chmod(0o000)
    if os.geteuid() != 0:
        with pytest.raises(ConfigFileError) as refused:
            read_secret_file(str(secret), "LEDGER_APPENDER_URL_FILE")
        message = str(refused.value)
    else:
        for directory in (tmp_path, *tmp_path.parents):  # let nobody reach the file
            directory.chmod(directory.stat().st_mode | 0o001)
        message = _as_nobody(secret)
    assert message == (
        f"LEDGER_APPENDER_URL_FILE: secret file {secret} is not readable by this user (uid "
        f"{os.geteuid() or 65534})"
    )


def _as_nobody(secret: Path) -> str:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, try, report, exit without cleanup
        try:
            os.close(reader)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                read_secret_file(str(secret), "LEDGER_APPENDER_URL_FILE")
                said = "read it"
            except ConfigFileError as exc:
                said = str(exc)
            os.write(writer, said.encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    return said


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('kafka_bootstrapp = "x"\n', "unknown setting 'kafka_bootstrapp'"),
        ("kafka_bootstrap = \n", "not valid TOML"),
        ("appender_url_file = 3\n", "must be a path"),
        ("partitions = 4\nLEDGER_TOPIC_PARTITIONS = 5\n", "set twice"),
    ],
)
def test_a_bad_config_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, says: str
) -> None:
    monkeypatch.setenv(CONFIG_FILE_VAR, str(write(tmp_path / "ledger.toml", text)))
    with pytest.raises(ConfigFileError, match=says):
        load()


def test_a_missing_config_file_stops_the_command_with_one_line(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        CONFIG_FILE_VAR: str(tmp_path / "ledger.toml"),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "ledgerctl", "keygen"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert f"LEDGER_CONFIG_FILE: config file {tmp_path / 'ledger.toml'} does not exist" in (
        done.stdout + done.stderr
    )
    assert "Traceback" not in done.stderr


def test_secret_file_keys_collide_with_no_setting() -> None:
    names, files = toml_keys(Settings)
    assert not set(names) & set(files)


def test_the_example_config_names_only_known_settings() -> None:
    names, files = toml_keys(Settings)
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(data) <= set(names) | set(files), set(data) - set(names) - set(files)
    assert data["spool_dir"] == "/var/lib/philedger/spool"
    # No secret value in the example: every secret comes from a file.
    assert not set(data) & set(SECRETS) - set(files)
    assert not {k for k in data if names.get(k) in SECRETS}


def test_the_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_FILE_VAR, str(EXAMPLE))
    settings = load()
    assert settings.spool_dir == "/var/lib/philedger/spool"
    assert len(settings.kafka_bootstrap.split(",")) == 3
    assert settings.kafka_security_protocol == "SASL_SSL"
