"""``ledger rules run``: the rules evaluator process, wired to PostgreSQL.

Invariant: it reads the appended ledger and writes alerts as ledger_appender; it never
touches Kafka or the consumer, so ingestion never waits on a rule. One pass evaluates
every log from its cursor to its current end; the loop repeats passes every interval
until SIGTERM/SIGINT, keeping each log's window state in memory between passes; in the
loop, a pass that finds PostgreSQL unavailable is logged and retried at the next one.
Each pass reads the registry's log(s) first (LEDGER_REGISTRY_TOPIC), then the audit logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ledger.audit.rules import (
    Evaluator,
    PassSummary,
    RulesConfig,
    build_rules,
    parse_config,
)
from ledger.audit.rules.registrywatch import RegistryWatch
from ledger.audit.rules.watchlist import MAX_FILE_BYTES as WATCHLIST_MAX_BYTES
from ledger.audit.rules.watchlist import parse_watchlist
from ledger.errors import MalformedInputError
from ledger.pg.compliance import DEFAULT_REGISTRY_TOPIC, PostgresRulesStore
from ledgerctl.passes import run_passes


def load_rules_config(path: str | None) -> RulesConfig:
    """The rules' configuration from ``path`` (TOML), or every default when None; with
    the watch list it names read and parsed (a relative path is the config file's)."""
    if not path:
        return RulesConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MalformedInputError(f"cannot read rules configuration {path}: {exc}") from exc
    config = parse_config(text)
    if config.privacy.file is None:
        return config
    listed = Path(path).parent / Path(config.privacy.file).expanduser()
    watchlist = parse_watchlist(str(listed), _read_capped(listed, WATCHLIST_MAX_BYTES))
    return replace(config, privacy=replace(config.privacy, watchlist=watchlist))


def _read_capped(path: Path, most: int) -> bytes:
    """At most ``most`` + 1 bytes of ``path`` (the parser refuses more than ``most``)."""
    try:
        with path.open("rb") as f:
            return f.read(most + 1)
    except OSError as exc:
        raise MalformedInputError(f"cannot read the watch list {path}: {exc}") from exc


async def run_rules(
    *,
    dsn: str,
    config: RulesConfig,
    once: bool,
    interval: float,
    report: Callable[[PassSummary], None],
    registry_topic: str = DEFAULT_REGISTRY_TOPIC,
) -> None:
    """One pass (``once``) or passes every ``interval`` seconds until a signal; the
    registry rules read the logs of ``registry_topic``."""
    async with PostgresRulesStore(dsn=dsn, registry_topic=registry_topic) as store:
        registry = RegistryWatch(store, config)
        evaluator = Evaluator(store, build_rules(config), registry=registry)
        await run_passes(
            evaluator.run_pass, what="rules", once=once, interval=interval, report=report
        )
