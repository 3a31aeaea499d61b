"""``ledger registry import``: registry files checked against the stored registry, then
emitted as RegistryChange events (docs/design/compliance-registry.md).

Invariant: nothing is emitted unless every line of every file passed the file checks
(``load_registry_files``, with the stored organizations and users as known ids) and the
checks against the stored registry (``stored_problems``); then every change is emitted
through the producer library (signed with the registry producer key, fsynced spool) and
flushed before ``submit_registry_changes`` returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from ledger.errors import UnavailableError
from ledger.log.leaf import decode_leaf
from ledgerctl.settings import KafkaRole, Settings
from producers.codec import Codec
from producers.emitter import Emitter, EmitterConfig
from producers.errors import DecodeError, ProducerError, RegistryProblem
from producers.registry import (
    Baa,
    Credential,
    KnownRegistryIds,
    Organization,
    OrganizationKind,
    RegistryChange,
    RegistryKind,
    RegistryOperation,
    RegistryRecord,
    StateLicense,
    WorkforceMember,
    kind_of,
    read_registry_file,
    registry_from_record,
)

#: How long an import waits for Kafka to take its changes before it reports them spooled.
SUBMIT_TIMEOUT_SECONDS: Final = 30.0
#: The spool of the command line's registry writes, under LEDGER_SPOOL_DIR (the API's
#: registry writes use a spool of their own: one spool per emitter).
CLI_SPOOL: Final = "registry-cli"

Identity = tuple[RegistryKind, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRegistry:
    """The registry's live records as stored: per identity, the change applied last
    (by event time, then position), unless it retired the record."""

    records: Mapping[Identity, RegistryRecord]

    def known(self) -> KnownRegistryIds:
        """The ids a file may name without defining them."""
        return KnownRegistryIds(
            organizations=frozenset(
                r.organization_id for r in self.records.values() if isinstance(r, Organization)
            ),
            users=frozenset(
                r.user_id for r in self.records.values() if isinstance(r, WorkforceMember)
            ),
        )

    def organization_kind(self, organization_id: str) -> OrganizationKind | None:
        found = self.records.get((RegistryKind.ORGANIZATION, organization_id))
        return found.organization_kind if isinstance(found, Organization) else None


def stored_registry(values: Iterable[bytes], codec: Codec | None = None) -> StoredRegistry:
    """The live records from stored RegistryChange messages, in the registry's order.

    Decoded without the event rules (the ledger accepted them when they arrived; a rule
    made stricter since must not hide a stored record); ``UnavailableError`` for a message
    that is no registry change (a damaged ledger: ``ledger verify`` names it)."""
    codec = codec or Codec()
    live: dict[Identity, RegistryRecord] = {}
    for value in values:
        try:
            _, record = codec.decode_record(value)
            change = registry_from_record(record)
        except (DecodeError, KeyError, TypeError, ValueError) as exc:
            raise UnavailableError(
                f"a stored registry change cannot be read ({type(exc).__name__}); "
                "run `ledger verify`"
            ) from exc
        identity = (change.kind, change.record.record_id)
        if change.operation is RegistryOperation.RETIRE:
            live.pop(identity, None)
        else:
            live[identity] = change.record
    return StoredRegistry(records=live)


async def load_stored_registry(settings: Settings) -> StoredRegistry:
    """The stored registry, read with the reader role (LEDGER_READER_URL)."""
    from ledger.pg.registry import stored_registry_leaves

    leaves = await stored_registry_leaves(settings.require("reader_url"))
    return stored_registry(decode_leaf(leaf.leaf).value for leaf in leaves)


def _period(record: RegistryRecord) -> tuple[tuple[object, ...], str, date, date, str] | None:
    """(overlap key, start column, start, end or date.max, what the key means)."""
    if isinstance(record, Baa):
        key: tuple[object, ...] = ("baa", record.facility_id, record.business_associate_id)
        end = record.effective_to or date.max
        same = "the same facility and business associate"
        return key, "effective_from", record.effective_from, end, same
    if isinstance(record, StateLicense):
        key = ("license", record.user_id, record.state)
        end = record.valid_to or date.max
        return key, "valid_from", record.valid_from, end, "the same user and state"
    if isinstance(record, Credential):
        key = ("credential", record.user_id, record.facility_id, record.privilege)
        end = record.valid_to or date.max
        same = "the same user, facility and privilege"
        return key, "valid_from", record.valid_from, end, same
    return None


def _kind_problem(
    record: RegistryRecord, stored: StoredRegistry, defined: set[str]
) -> tuple[str, str] | None:
    """A BAA or credential naming a stored organization of the wrong kind (one this
    import defines is the file checks' to judge)."""
    wanted = {OrganizationKind.FACILITY, OrganizationKind.COVERED_ENTITY}
    names: list[tuple[str, str, set[OrganizationKind]]] = []
    if isinstance(record, Baa):
        names = [
            ("facility_id", record.facility_id, wanted),
            ("business_associate_id", record.business_associate_id,
             {OrganizationKind.BUSINESS_ASSOCIATE}),
        ]  # fmt: skip
    elif isinstance(record, Credential):
        names = [("facility_id", record.facility_id, wanted)]
    for column, org_id, kinds in names:
        kind = None if org_id in defined else stored.organization_kind(org_id)
        if kind is not None and kind not in kinds:
            what = " or ".join(sorted(k.value.lower() for k in kinds))
            return column, f"{org_id!r} is a {kind.value.lower()} in the registry, not a {what}"
    return None


def stored_problems(
    changes: Sequence[RegistryChange],
    lines: Mapping[Identity, tuple[str, int]],
    stored: StoredRegistry,
) -> list[RegistryProblem]:
    """Every change the stored registry makes wrong: a retire of a record it does not
    hold, a period overlapping a stored one of the same key (unless this import retires
    or replaces that record), a reference to a stored organization of the wrong kind.
    ``lines`` names each change's line (``lines_of``)."""
    touched = {(c.kind, c.record.record_id) for c in changes}
    periods: dict[tuple[object, ...], list[RegistryRecord]] = {}
    for identity, record in stored.records.items():
        found = _period(record)
        if found is not None and identity not in touched:
            periods.setdefault(found[0], []).append(record)
    # The organizations this import defines decide their own kind (the file checks).
    defined = {c.record.record_id for c in changes if c.kind is RegistryKind.ORGANIZATION}
    problems = []
    for change in changes:
        file, line = lines.get((change.kind, change.record.record_id), ("<import>", 0))
        problems += [
            RegistryProblem(file=file, line=line, field=field, reason=reason)
            for field, reason in _change_problems(change, stored, periods, defined)
        ]
    problems.sort(key=lambda p: (p.file, p.line))
    return problems


def _change_problems(
    change: RegistryChange,
    stored: StoredRegistry,
    periods: Mapping[tuple[object, ...], Sequence[RegistryRecord]],
    defined: set[str],
) -> list[tuple[str, str]]:
    """(field, reason) of each problem of one change against the stored registry."""
    what = change.kind.value.lower()
    record_id = change.record.record_id
    if change.operation is RegistryOperation.RETIRE:
        if (change.kind, record_id) in stored.records:
            return []
        return [("operation", f"retires {what} {record_id!r}, which the registry does not hold")]
    out = []
    found = _period(change.record)
    if found is not None:
        key, start, begins, ends, same = found
        for other in periods.get(key, ()):
            theirs = _period(other)
            if theirs is not None and begins <= theirs[3] and theirs[2] <= ends:
                out.append((start, f"overlaps the stored {what} {other.record_id!r} for {same}"))
    bad_kind = _kind_problem(change.record, stored, defined)
    if bad_kind is not None:
        out.append(bad_kind)
    return out


def lines_of(paths: Sequence[Path]) -> dict[Identity, tuple[str, int]]:
    """Where each record of the files is (file, line), to name a line in a problem."""
    out: dict[Identity, tuple[str, int]] = {}
    for path in paths:
        rows, _ = read_registry_file(path)
        for row in rows:
            out.setdefault((kind_of(row.record), row.record.record_id), (row.file, row.line))
    return out


def registry_producer(settings: Settings) -> tuple[str, str]:
    """(producer id, key file) registry changes are signed with; ``UnavailableError``
    without a usable LEDGER_REGISTRY_PRODUCER_KEY_FILE (the ledger would quarantine an
    unsigned change)."""
    from producers.signing import load_producer_key

    key_file = settings.registry_producer_key_file
    if not key_file:
        raise UnavailableError(
            "LEDGER_REGISTRY_PRODUCER_KEY_FILE is not set (`ledger producer add "
            "registry-local --out FILE` issues one); nothing was emitted"
        )
    try:
        return load_producer_key(key_file).producer_id, key_file
    except ProducerError as exc:
        raise UnavailableError(f"cannot sign registry changes: {exc}") from exc


async def submit_registry_changes(
    settings: Settings, changes: Sequence[RegistryChange], *, spool: str = CLI_SPOOL
) -> int:
    """Emit ``changes`` in order as the registry producer and wait until Kafka took them
    (or, while Kafka is away, until they are fsynced in the spool ``spool`` under
    LEDGER_SPOOL_DIR, from where the next emitter with that spool sends them); returns how
    many were emitted. Validation failures raise before anything is sent."""
    security = settings.kafka(KafkaRole.REGISTRY)
    producer_id, key_file = registry_producer(settings)
    config = EmitterConfig(
        bootstrap_servers=settings.kafka_bootstrap,
        kafka_security=security,
        producer_id=producer_id,
        producer_key_file=key_file,
        access_topic=settings.access_topic,
        relay_topic=settings.relay_topic,
        registry_topic=settings.registry_topic,
        spool_dir=str(Path(settings.spool_dir) / spool),
        # Rising across runs and processes that sign as the same producer.
        first_sequence=time.time_ns() // 1000,
    )
    codec = Codec()
    for change in changes:  # every change checked before the first is sent
        codec.prepare(change)
    async with Emitter(config) as emitter:
        for change in changes:
            await emitter.emit(change)
        try:
            async with asyncio.timeout(SUBMIT_TIMEOUT_SECONDS):
                await emitter.flush()
        except TimeoutError as exc:
            raise UnavailableError(
                f"Kafka at {settings.kafka_bootstrap} did not take the {len(changes)} "
                f"change(s) within {SUBMIT_TIMEOUT_SECONDS:.0f} s; they are in the spool "
                f"{config.spool_dir} and are sent by the next import"
            ) from exc
    return len(changes)
