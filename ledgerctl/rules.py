"""``ledger rules run``: the rules evaluator process, wired to PostgreSQL.

Invariant: it reads the appended ledger and writes alerts as ledger_appender; it never
touches Kafka or the consumer, so ingestion never waits on a rule. One pass evaluates
every log from its cursor to its current end; the loop repeats passes every interval
until SIGTERM/SIGINT, keeping each log's window state in memory between passes; in the
loop, a pass that finds PostgreSQL unavailable is logged and retried at the next one.
Each pass reads the registry's log(s) first (LEDGER_REGISTRY_TOPIC), then the audit logs.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Final

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
from ledger.pg.status import unready_reason
from ledgerctl.passes import run_passes
from producers.ops import OpsConfig, OpsServer, OpsState

#: prctl(2) option: the signal a child gets when its parent dies.
PR_SET_PDEATHSIG: Final = 1


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
    shard: tuple[int, int] = (0, 1),
    ops: OpsConfig | None = None,
) -> None:
    """One pass (``once``) or passes every ``interval`` seconds until a signal; the
    registry rules read the logs of ``registry_topic``. With ``shard`` (index, count),
    this process evaluates the audit logs whose id is index modulo count, and only
    shard 0 writes the registry logs' cursors and late-change evidence. With ``ops``, an
    ops listener serves the passes' counters and the database's readiness."""
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(
            PostgresRulesStore(dsn=dsn, registry_topic=registry_topic)
        )
        if ops is not None:
            state = OpsState()
            report = _counting(report, state)
            state.checks["database"] = functools.partial(unready_reason, store.pool)
            await stack.enter_async_context(OpsServer(ops, state))
        registry = RegistryWatch(store, config, writer=shard[0] == 0)
        evaluator = Evaluator(store, build_rules(config), registry=registry, shard=shard)
        await run_passes(
            evaluator.run_pass, what="rules", once=once, interval=interval, report=report
        )


def _counting(
    report: Callable[[PassSummary], None], state: OpsState
) -> Callable[[PassSummary], None]:
    """``report``, counting each pass's summary on ``state``'s registry first."""
    from prometheus_client import Counter

    registry = state.registry
    passes = Counter("ledger_rules_passes", "Evaluation passes done", registry=registry)
    leaves = Counter("ledger_rules_leaves_evaluated", "Leaves evaluated", registry=registry)
    raised = Counter("ledger_rules_alerts_raised", "Compliance alerts raised", registry=registry)
    undecodable = Counter(
        "ledger_rules_undecodable_leaves", "Leaves the rules could not decode", registry=registry
    )

    def counted(summary: PassSummary) -> None:
        passes.inc()
        leaves.inc(summary.leaves)
        raised.inc(summary.raised)
        undecodable.inc(summary.undecodable)
        report(summary)

    return counted


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N), 0 <= I < N."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError as exc:
        raise MalformedInputError(f"--shard must be I/N, not {text!r}") from exc
    if not 0 <= i < n <= 16:
        raise MalformedInputError(f"--shard must be I/N with 0 <= I < N <= 16, not {text!r}")
    return i, n


class Shards:
    """The evaluator processes started for shares 1..N-1 (this process is share 0)."""

    def __init__(self, children: list[subprocess.Popen[bytes]]) -> None:
        self._children = children

    def wait_all(self) -> int:
        """Wait for every child; the first non-zero exit status, else 0."""
        codes = [child.wait() for child in self._children]
        return next((c for c in codes if c != 0), 0)

    def stop(self) -> None:
        for child in self._children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self._children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """A share must not outlive the process that started it (even SIGKILLed)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def spawn_shards(workers: int, extra: list[str]) -> Iterator[Shards]:
    """Start ``ledger rules run --shard i/N`` for i in 1..N-1 with this process's
    environment; on leaving, stop any still running."""
    command = [sys.executable, "-m", "ledgerctl", "rules", "run", *extra]
    children = [
        subprocess.Popen(  # noqa: S603 - our own command, with our own arguments
            [*command, "--shard", f"{i}/{workers}"],
            preexec_fn=_die_with_parent,
        )
        for i in range(1, workers)
    ]
    shards = Shards(children)
    try:
        yield shards
    finally:
        shards.stop()
