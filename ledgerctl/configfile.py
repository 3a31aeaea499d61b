"""Where a setting's value comes from besides the environment: the TOML config file
(``LEDGER_CONFIG_FILE``) and secret files (``<NAME>_FILE``).

Invariant: precedence is environment > env file (``.local/env``) > TOML > defaults; at
each level a secret setting may instead name a file holding it (``DATABASE_URL_FILE``,
``database_url_file``), and naming both the value and its file at one level is refused.
A named config or secret file that is missing, unreadable or empty is refused with its
path and the setting named, never its contents. Unknown TOML keys are refused.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

#: The environment variable naming the TOML config file (production:
#: /etc/philedger/ledger.toml). Unset: no config file, only the environment.
CONFIG_FILE_VAR = "LEDGER_CONFIG_FILE"
FILE_SUFFIX = "_FILE"


class ConfigFileError(Exception):
    """A config file or secret file that cannot be used; the message names the path and
    the setting, never a secret."""


def is_secret(field: FieldInfo) -> bool:
    """A ``SecretStr`` setting (optional or not): the ones that accept ``<NAME>_FILE``."""
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def secret_fields(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Field name -> environment name of every secret setting."""
    return {
        name: field.alias or name.upper()
        for name, field in settings_cls.model_fields.items()
        if is_secret(field)
    }


def read_secret_file(path: str, setting: str) -> str:
    """The secret in ``path`` (surrounding whitespace, such as the final newline, removed)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigFileError(f"{setting}: secret file {file} does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigFileError(f"{setting}: {file} is a directory, not a secret file") from exc
    except PermissionError as exc:
        raise ConfigFileError(
            f"{setting}: secret file {file} is not readable by this user (uid {os.getuid()})"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{setting}: cannot read secret file {file}: {exc}") from exc
    value = text.strip()
    if not value:
        raise ConfigFileError(f"{setting}: secret file {file} is empty")
    return value


class SecretFileSource(PydanticBaseSettingsSource):
    """Secret settings named by ``<NAME>_FILE`` in one set of variables (the process
    environment, or the env file's), at that set's precedence."""

    def __init__(
        self, settings_cls: type[BaseSettings], variables: Mapping[str, str | None], origin: str
    ) -> None:
        super().__init__(settings_cls)
        self._variables = {k.upper(): v for k, v in variables.items() if v is not None}
        self._origin = origin

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ resolves every field at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, env in secret_fields(self.settings_cls).items():
            path = self._variables.get(env.upper() + FILE_SUFFIX)
            if not path:
                continue
            if self._variables.get(env.upper()):
                raise ConfigFileError(
                    f"{env} and {env}{FILE_SUFFIX} are both set in {self._origin}: keep one"
                )
            # Keyed as the environment source keys it (by alias), so precedence holds.
            key = self.settings_cls.model_fields[name].alias or name
            values[key] = read_secret_file(path, f"{env}{FILE_SUFFIX}")
        return values


def load_toml(path: str, settings_cls: type[BaseSettings]) -> dict[str, Any]:
    """The settings in a TOML config file, by field name, with ``*_file`` secrets read.

    Keys are field names (``kafka_bootstrap``) or environment names (``KAFKA_BOOTSTRAP``)."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigFileError(f"{CONFIG_FILE_VAR}: config file {file} does not exist") from exc
    except PermissionError as exc:
        raise ConfigFileError(
            f"{CONFIG_FILE_VAR}: config file {file} is not readable by this user "
            f"(uid {os.getuid()})"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{file}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigFileError(f"{CONFIG_FILE_VAR}: cannot read {file}: {exc}") from exc
    return _resolve_keys(data, settings_cls, file)


def toml_keys(settings_cls: type[BaseSettings]) -> tuple[dict[str, str], dict[str, str]]:
    """The keys a config file may hold: value keys and secret-file keys, each mapped to
    its field name."""
    names = {name: name for name in settings_cls.model_fields}
    for name, field in settings_cls.model_fields.items():
        if field.alias:
            names[field.alias] = name
    secrets = secret_fields(settings_cls)
    files = {f"{name}_file": name for name in secrets}
    files.update({env + FILE_SUFFIX: name for name, env in secrets.items()})
    return names, files


def _resolve_keys(
    data: Mapping[str, Any], settings_cls: type[BaseSettings], file: Path
) -> dict[str, Any]:
    names, files = toml_keys(settings_cls)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in files:
            name = files[key]
            if name in values:
                raise ConfigFileError(f"{file}: {key} and {name} are both set: keep one")
            if not isinstance(value, str):
                raise ConfigFileError(f"{file}: {key} must be a path (a string)")
            values[name] = read_secret_file(value, f"{file}: {key}")
        elif key in names:
            if names[key] in values:
                raise ConfigFileError(f"{file}: {key} is set twice (or with its _file)")
            values[names[key]] = value
        else:
            raise ConfigFileError(f"{file}: unknown setting {key!r}")
    return values


def config_sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    dotenv_settings: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """The sources of ``Settings``, highest precedence first."""
    dotenv_vars: Mapping[str, str | None] = getattr(dotenv_settings, "env_vars", {})
    sources: list[PydanticBaseSettingsSource] = [
        init_settings,
        SecretFileSource(settings_cls, os.environ, "the environment"),
        env_settings,
        SecretFileSource(settings_cls, dotenv_vars, "the env file"),
        dotenv_settings,
    ]
    config_file = os.environ.get(CONFIG_FILE_VAR)
    if config_file:
        sources.append(InitSettingsSource(settings_cls, load_toml(config_file, settings_cls)))
    return tuple(sources)
