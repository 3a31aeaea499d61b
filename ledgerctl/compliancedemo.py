"""``ledger rules demo``: the compliance watch shown on the running stack.

Invariant: the demo's world is fixed by one seed, so its files (registry, watch list,
rules configuration) can be written before the stack's rules evaluator starts
(``--prepare``, run by ``make up``) and its events re-sent by every ``make demo`` are
duplicates the ledger absorbs. The demo emits as a producer of its own
(``compliance-demo``), waits until the ledger appended everything and the evaluator
passed it, then compares the alerts on its own events with its answer file.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from integrations.simplants import ComplianceSimulation
from ledger.errors import MalformedInputError, UnavailableError
from ledger.pg.answers import alert_triggers, events_present, unevaluated
from ledgerctl.answers import CheckResult, check_answers
from ledgerctl.settings import Settings
from ledgerctl.simregistry import RegistrySimulation, run_registry_simulation

DEMO_SEED: Final = 15
DEMO_EVENTS: Final = 3000
#: The demo's producer (its key is issued by `make up`): its events are told apart
#: from every other producer's when the alerts are checked.
DEMO_PRODUCER: Final = "compliance-demo"
#: The line of deploy/compliance-rules.toml that names the watch list, commented out.
WATCHLIST_LINE: Final = '# file = "privacy-watch-list.csv"'


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOutcome:
    simulation: RegistrySimulation
    check: CheckResult
    alert_ids: frozenset[int]


def prepare(directory: Path, template: Path) -> Path:
    """Write the demo's registry files, its watch list and the rules configuration that
    names it (``template`` with the watch list set); returns the configuration's path."""
    sim = ComplianceSimulation(seed=DEMO_SEED, events=DEMO_EVENTS)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in sim.registry_files().items():
        (directory / name).write_text(text, encoding="utf-8")
    watchlist = directory / "watchlist.csv"
    watchlist.write_text(sim.watchlist_file(), encoding="utf-8")
    base = template.read_text(encoding="utf-8")
    if base.count(WATCHLIST_LINE) != 1:
        raise MalformedInputError(f"{template} has no line {WATCHLIST_LINE!r} to fill in")
    rules = directory / "compliance-rules.toml"
    rules.write_text(base.replace(WATCHLIST_LINE, f'file = "{watchlist.name}"'), encoding="utf-8")
    return rules


async def run(settings: Settings, directory: Path, *, timeout: float) -> DemoOutcome:
    """Emit the registry and the planted stream, wait for the ledger and the evaluator,
    check the alerts against the answer file."""
    answers = directory / "answers.json"
    simulation = await run_registry_simulation(
        settings,
        events=DEMO_EVENTS,
        seed=DEMO_SEED,
        plant=True,
        answers=answers,
        producer_id=DEMO_PRODUCER,
        key_file=settings.compliance_demo_key_file,
    )
    dsn = settings.require("reader_url")
    ids = simulation.event_ids
    deadline = time.monotonic() + timeout
    while await events_present(dsn, ids) < len(ids) or await unevaluated(dsn, ids) > 0:
        if time.monotonic() > deadline:
            raise UnavailableError(
                f"the ledger or the rules evaluator did not catch up within {timeout:.0f} s "
                "(are `ledger consume` and `ledger rules run` running? `make up` starts both)"
            )
        await asyncio.sleep(0.5)
    check = await check_answers(dsn, answers)
    mine = frozenset(
        a.alert_id for a in await alert_triggers(dsn) if a.producer_id == DEMO_PRODUCER
    )
    return DemoOutcome(simulation=simulation, check=check, alert_ids=mine)
