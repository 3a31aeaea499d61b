"""Log line formats of the ledger's processes: ``text`` (one human line) or ``json`` (one
JSON object per line: time, level, logger, message, service, version, pid).

Invariant: the format changes how a line is written, never what is logged: the same
messages, so the same rule holds in both (no PHI, no secrets). python-json-logger is
imported only when JSON is asked for. docs/observability.md.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib import metadata
from typing import TextIO

#: The environment variable every process reads (also a ``ledgerctl`` setting).
LOG_FORMAT_ENV = "LEDGER_LOG_FORMAT"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_format(value: str | None = None) -> str:
    """``value``, else LEDGER_LOG_FORMAT, else "text"; ValueError for any other word."""
    chosen = (value if value is not None else os.environ.get(LOG_FORMAT_ENV, "text")) or "text"
    chosen = chosen.strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"{LOG_FORMAT_ENV} must be text or json, not {chosen!r}")
    return chosen


def formatter(fmt: str, *, service: str, text: str = TEXT_FORMAT) -> logging.Formatter:
    """The formatter of ``fmt`` ("text" or "json") for a process named ``service``."""
    if fmt == "text":
        return logging.Formatter(text)
    from pythonjsonlogger.json import JsonFormatter

    try:
        version = metadata.version("phi-audit-ledger")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"service": service, "version": version, "pid": os.getpid()},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def configure(
    *,
    level: int,
    fmt: str | None = None,
    service: str,
    stream: TextIO | None = None,
    text: str = TEXT_FORMAT,
) -> None:
    """Route the root logger to ``stream`` (stderr) in the chosen format, replacing any
    handler set before (a command that configures twice keeps one handler)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format(fmt), service=service, text=text))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
