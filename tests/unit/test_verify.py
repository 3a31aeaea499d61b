"""The offline verifier: a clean log verifies, and every tamper is detected and located."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import itertools
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from consumers.projection import event_index
from integrations.simulator import Simulator
from ledger.audit import disclosure
from ledger.audit.records import SchemaSet, StoredSchema
from ledger.errors import MalformedInputError, UnavailableError
from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.log.note import Signer, Verifier, generate_signer, parse_signer_key
from ledger.log.types import RootHash
from ledger.verify import (
    FINDING_KINDS,
    Finding,
    LogReport,
    build_full_tiles,
    project_event,
    verify_bundle,
    verify_log,
)
from ledger.verify.bundle import BundleWriter
from ledger.verify.patients import patients_problem
from producers.codec import Codec
from producers.events import (
    Actor,
    AuditLogUsed,
    DisclosedPatient,
    DisclosedRange,
    EventAction,
    EventOutcome,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    SecurityEvent,
    event_key,
)

LEDGER = "test.ledger"
TOPIC = "phi-access"
ORIGIN = f"{LEDGER}/{TOPIC}/0"
N = 1000  # three full level-0 tiles and a partial block of 232 leaves
SIZES = (100, 256, 300, 512, 700, 1000)


def _signer(name: str = LEDGER) -> Signer:
    return parse_signer_key(generate_signer(name)[0])


KEY = _signer()
OTHER_KEY = _signer()  # same name, different key: "unknown" to a verifier of KEY


@functools.cache
def _events(n: int) -> tuple[tuple[bytes, bytes], ...]:
    """(Avro value, patient key) per event: realistic values from the shipped schemas."""
    codec = Codec()
    out = []
    for i, event in enumerate(Simulator(seed=1).events(n)):
        stamped = event.stamped(producer_id="t", producer_seq=i)
        out.append((codec.encode(stamped), stamped.patient.key.encode()))
    return tuple(out)


@functools.cache
def _rows(n: int) -> tuple[Mapping[str, object], ...]:
    """The events-table rows the consumer would write for the same events."""
    out = []
    for i, event in enumerate(Simulator(seed=1).events(n)):
        row = dataclasses.asdict(event_index(event.stamped(producer_id="t", producer_seq=i)))
        row["leaf_index"] = i
        out.append(row)
    return tuple(out)


def _schemas() -> list[StoredSchema]:
    return [
        StoredSchema(fingerprint=s.fingerprint, full_name=s.full_name, schema_json=s.schema_json)
        for s in Codec().schemas
    ]


def _leaf(i: int, value: bytes, key: bytes | None = None, *, partition: int = 0) -> bytes:
    return encode_leaf(
        KafkaRecord(
            topic=TOPIC,
            partition=partition,
            offset=3 * i + 7,  # gaps, as quarantined records and markers leave them
            timestamp_ms=1_700_000_000_000 + i,
            timestamp_type=0,
            key=key,
            value=value,
        )
    )


def _hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _note(leaves: Sequence[bytes], size: int, signers: Sequence[Signer] = (KEY,)) -> str:
    root = merkle.root_from_leaves(leaves[:size])
    return sign_checkpoint(Checkpoint(origin=ORIGIN, size=size, root_hash=root), signers)


@dataclasses.dataclass
class Log:
    """One synthetic log, as stored; tests tamper with it before it is exported."""

    leaves: list[bytes]
    entries: list[tuple[int, bytes]]
    tiles: list[tuple[int, int, bytes]]
    checkpoints: list[tuple[int, str]]
    rows: list[dict[str, object]]
    size: int


def make_log(n: int = N, sizes: Sequence[int] = SIZES) -> Log:
    leaves = [_leaf(i, value, key) for i, (value, key) in enumerate(_events(n))]
    return Log(
        leaves=leaves,
        entries=list(enumerate(leaves)),
        tiles=list(build_full_tiles(map(_hash, leaves))),
        checkpoints=[(s, _note(leaves, s)) for s in sizes],
        rows=[dict(r) for r in _rows(n)],
        size=n,
    )


def export(log: Log, path: Path) -> Path:
    with BundleWriter(path, ledger_name=LEDGER) as bundle:
        bundle.write_schemas(Codec().schemas)
        with bundle.add_log(log_id=7, origin=ORIGIN, size=log.size) as out:
            out.add_entries(log.entries)
            out.add_tiles(log.tiles)
            out.add_checkpoints(log.checkpoints)
            out.add_index_rows(log.rows)
    return path


def check(
    log: Log,
    path: Path,
    verifiers: Sequence[Verifier] = (KEY.verifier,),
    *,
    check_index: bool = True,
) -> LogReport:
    reports = verify_bundle(export(log, path), verifiers, check_index=check_index)
    assert len(reports) == 1
    report = reports[0]
    assert report.origin == ORIGIN
    for finding in report.findings:
        assert finding.kind in FINDING_KINDS
        assert finding.log == ORIGIN
    return report


def of(report: LogReport, kind: str) -> list[Finding]:
    return [f for f in report.findings if f.kind == kind]


def leaf_indexes(report: LogReport, kind: str) -> list[int | None]:
    return [f.leaf_index for f in of(report, kind)]


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


# --------------------------------------------------------------------------------------------
# Clean logs
# --------------------------------------------------------------------------------------------


def test_clean_bundle_verifies_with_zero_findings(tmp_path: Path) -> None:
    report = check(make_log(), tmp_path / "b")
    assert report.findings == ()
    assert report.ok
    assert report.leaves_checked == N
    assert report.checkpoints_checked == len(SIZES)
    assert report.checkpoints_verified == len(SIZES)
    assert report.verified_size == N
    assert report.events_checked == N


def test_clean_bundle_without_index_check(tmp_path: Path) -> None:
    log = make_log()
    log.rows = []  # not read at all
    report = check(log, tmp_path / "b", check_index=False)
    assert report.ok
    assert report.events_checked == 0


@pytest.mark.parametrize("n", [0, 1, 2, 255, 256, 257, 511, 512, 513, 777])
def test_every_size_and_checkpoint_position_verifies(tmp_path: Path, n: int) -> None:
    sizes = sorted({0, *(s for s in (1, 2, 3, 128, 255, 256, 257, 300, 512, 513) if s <= n), n})
    report = check(make_log(n, sizes), tmp_path / "b")
    assert report.findings == ()
    assert report.checkpoints_verified == len(sizes)
    assert report.verified_size == n


def test_project_event_agrees_with_the_consumer_projection() -> None:
    schemas = SchemaSet(_schemas())
    for (value, _), row in zip(_events(120), _rows(120), strict=True):
        name, record = schemas.decode(value)
        projected = project_event(name, record)
        assert projected["kind"] == row["kind"]
        assert projected["user_id"] == row["user_id"]
        assert projected["study_uid"] == row["study_uid"]
        assert projected["dicom_event_id"] == row["dicom_event_id"]
    with pytest.raises(MalformedInputError):
        project_event("other.Schema", {"facility": {}, "patient": {}})


_WHEN = datetime(2026, 3, 9, 6, 58, 44, 913000, tzinfo=UTC)
_ACTOR = Actor(user_id="rad004.kowalski", role="radiologist", name="Ana K", organization="Org")
_SECURITY = SecurityEvent(
    event_id=uuid.UUID(int=1),
    event_time=_WHEN,
    facility=Facility(id="stmarys-boston"),
    actor=_ACTOR,
    dicom_event_id="110114",
    event_type_code="110122",
    outcome=EventOutcome.MINOR_FAILURE,
    network_address="198.51.100.23",
)
_READ = AuditLogUsed(
    event_id=uuid.UUID(int=3),
    event_time=_WHEN,
    facility=Facility(id="test.ledger"),
    actor=Actor(user_id="auditor.kim", role="auditor"),
    query=LedgerQuery(method="GET", path="/v1/users/x/accesses", status=200, results=2),
    network_address="127.0.0.1",
)
#: One event of every kind the index knows, with and without the optional patient.
EVERY_KIND = (
    *(e for e in Simulator(seed=1).events(30, relay_every=10)),
    _SECURITY,
    dataclasses.replace(
        _SECURITY,
        event_id=uuid.UUID(int=2),
        dicom_event_id="110113",
        event_type_code="110127",
        action=EventAction.EXECUTE,
        outcome=EventOutcome.SUCCESS,
        patient=Patient(id="MRN9900112", issuer="stmarys-boston", state="MA"),
        purpose_of_use="BTG",
    ),
    _READ,
    dataclasses.replace(_READ, event_id=uuid.UUID(int=4), patient=Patient(id="MRN1")),
    dataclasses.replace(
        _READ,
        event_id=uuid.UUID(int=5),
        disclosed=(
            DisclosedRange(log="test.ledger/a/0", start=0, end=2),
            DisclosedRange(log="test.ledger/a/0", start=5, end=9),
            DisclosedRange(log="test.ledger/b/1", start=3, end=4),
        ),
    ),
    # PhiAccessEvent v2: a query that returned two patients, and one that matched nobody.
    PhiAccessEvent(
        event_id=uuid.UUID(int=6),
        event_time=_WHEN,
        facility=Facility(id="stmarys-boston"),
        actor=_ACTOR,
        dicom_event_id="110112",
        action=EventAction.EXECUTE,
        patient=None,
        disclosed=(
            DisclosedPatient(id="MRN1", issuer="h", studies=("1.2.3",)),
            DisclosedPatient(id="MRN2", issuer="h", state="MA"),
        ),
    ),
    PhiAccessEvent(
        event_id=uuid.UUID(int=7),
        event_time=_WHEN,
        facility=Facility(id="stmarys-boston"),
        actor=_ACTOR,
        dicom_event_id="110112",
        action=EventAction.EXECUTE,
        patient=None,
    ),
)
#: Consumer policy rather than event fields for relays (see ledger.verify).
_RELAY_POLICY = frozenset({"action", "outcome", "purpose_of_use"})


@pytest.mark.parametrize("index", range(len(EVERY_KIND)))
def test_project_event_agrees_column_by_column_for_every_kind(index: int) -> None:
    """The verifier's projection of a leaf and the consumer's index row agree on every
    column, for every schema (verification compares exactly these)."""
    schemas = SchemaSet(_schemas())
    event = EVERY_KIND[index].stamped(producer_id="t", producer_seq=index)
    name, record = schemas.decode(Codec().encode(event))
    projected = project_event(name, record)
    row = dataclasses.asdict(event_index(event))
    # What a read disclosed is checked on its own (ledger.audit.disclosure.check).
    assert disclosure.check(name, record, row) is None
    assert patients_problem(name, record, row) is None
    del row["disclosed"], row["patients"]
    if row["kind"] == "critical_result_relay":
        assert set(row) - set(projected) == _RELAY_POLICY
    else:
        assert set(projected) == set(row)
    for column, want in projected.items():
        got = row[column]
        if column == "event_id":
            assert uuid.UUID(str(want)) == got
        elif column == "event_time":
            assert datetime.fromisoformat(str(want)) == got
        else:
            assert want == got, column
    if isinstance(event, SecurityEvent):
        assert projected["kind"] == "security_event"
        assert projected["dicom_event_id"] == event.dicom_event_id
        assert projected["patient_id"] == (event.patient.id if event.patient else None)


def test_security_events_verify_in_a_bundle(tmp_path: Path) -> None:
    """A log holding security events (with and without a patient) verifies, index included,
    and a changed index row of one is found."""
    codec = Codec()
    events = [e.stamped(producer_id="t", producer_seq=i) for i, e in enumerate(EVERY_KIND)]
    leaves = [_leaf(i, codec.encode(e), event_key(e).encode()) for i, e in enumerate(events)]
    rows = []
    for i, e in enumerate(events):
        row: dict[str, object] = dataclasses.asdict(event_index(e))
        row["leaf_index"] = i
        rows.append(row)
    log = Log(
        leaves=leaves,
        entries=list(enumerate(leaves)),
        tiles=list(build_full_tiles(map(_hash, leaves))),
        checkpoints=[(len(leaves), _note(leaves, len(leaves)))],
        rows=rows,
        size=len(leaves),
    )
    report = check(log, tmp_path / "clean")
    assert report.findings == ()
    assert report.events_checked == len(events)
    first = next(i for i, e in enumerate(events) if isinstance(e, SecurityEvent))
    log.rows[first] = {**log.rows[first], "dicom_event_id": "110113"}
    report = check(log, tmp_path / "tampered")
    assert [(f.kind, f.leaf_index) for f in report.findings] == [("index_mismatch", first)]


# --------------------------------------------------------------------------------------------
# Tampered leaves and entries
# --------------------------------------------------------------------------------------------


def test_flipped_byte_in_a_leaf_is_located(tmp_path: Path) -> None:
    log = make_log()
    log.entries[400] = (400, flip(log.leaves[400], len(log.leaves[400]) - 3))
    report = check(log, tmp_path / "b", check_index=False)

    [leaf] = of(report, "leaf_hash_mismatch")
    assert (leaf.leaf_index, leaf.checkpoint_size, leaf.tile) == (400, 512, (0, 1))
    # One finding for the three checkpoints it breaks (512, 700, 1000), not one each.
    [mismatched] = of(report, "checkpoint_root_mismatch")
    assert (mismatched.checkpoint_size, mismatched.leaf_index) == (512, 400)
    assert "3 checkpoints (sizes 512..1000)" in mismatched.detail
    assert "first altered leaf: 400" in mismatched.detail
    assert len(report.findings) == 2
    assert report.verified_size == 300
    assert report.checkpoints_verified == 3


def test_flipped_byte_beyond_the_last_full_tile_is_bounded_by_checkpoints(tmp_path: Path) -> None:
    log = make_log()
    log.entries[900] = (900, flip(log.leaves[900], 40))
    report = check(log, tmp_path / "b", check_index=False)
    [finding] = report.findings
    assert finding.kind == "checkpoint_root_mismatch"
    assert (finding.checkpoint_size, finding.leaf_index) == (1000, 700)
    assert "within leaves 700..999" in finding.detail


def test_flipped_byte_is_also_an_index_finding_when_events_are_checked(tmp_path: Path) -> None:
    log = make_log()
    leaf = log.leaves[400]
    # The count of ``disclosed`` (an access event's value ends with it, then
    # disclosed_truncated, disclosed_total and v3's transport).
    log.entries[400] = (400, flip(leaf, len(leaf) - 4))
    report = check(log, tmp_path / "b")
    assert leaf_indexes(report, "leaf_hash_mismatch") == [400]
    # The altered value either no longer decodes or no longer matches its row.
    assert {f.leaf_index for f in report.findings if f.kind.startswith(("index", "event"))} == {400}


def test_deleted_entry_inside_a_full_tile(tmp_path: Path) -> None:
    log = make_log()
    del log.entries[57]
    report = check(log, tmp_path / "b")
    assert leaf_indexes(report, "leaf_missing") == [57]
    assert leaf_indexes(report, "index_orphan") == [57]  # its row has no leaf any more
    # The stored tile still holds leaf 57's hash, so every checkpoint still verifies: the
    # deletion is proven to have removed a leaf that was signed.
    assert report.checkpoints_verified == len(SIZES)
    assert len(report.findings) == 2
    assert report.leaves_checked == N - 1


def test_deleted_entry_beyond_the_last_full_tile(tmp_path: Path) -> None:
    log = make_log()
    del log.entries[950]
    report = check(log, tmp_path / "b", check_index=False)
    assert leaf_indexes(report, "leaf_missing") == [950]
    [unverifiable] = of(report, "checkpoint_unverifiable")
    assert (unverifiable.checkpoint_size, unverifiable.leaf_index) == (1000, 950)
    assert report.verified_size == 700


def test_deleted_range_and_deleted_tail(tmp_path: Path) -> None:
    log = make_log()
    log.entries = log.entries[:10] + log.entries[20:990]
    report = check(log, tmp_path / "b", check_index=False)
    missing = of(report, "leaf_missing")
    assert [f.leaf_index for f in missing] == [10, 990]
    assert "10..19 (10)" in missing[0].detail
    assert "claims 1000" in missing[1].detail
    assert [f.checkpoint_size for f in of(report, "checkpoint_beyond_log")] == [1000]
    assert report.verified_size == 700


def test_two_swapped_entries_are_both_named(tmp_path: Path) -> None:
    log = make_log()
    log.entries[10] = (10, log.leaves[20])
    log.entries[20] = (20, log.leaves[10])
    report = check(log, tmp_path / "b")
    assert leaf_indexes(report, "leaf_hash_mismatch") == [10, 20]
    [mismatched] = of(report, "checkpoint_root_mismatch")  # all six, located at leaf 10
    assert (mismatched.checkpoint_size, mismatched.leaf_index) == (SIZES[0], 10)
    assert f"{len(SIZES)} checkpoints (sizes {SIZES[0]}..{SIZES[-1]})" in mismatched.detail
    assert {f.leaf_index for f in of(report, "index_mismatch")} == {10, 20}
    # offsets: leaf 10 now carries leaf 20's (above leaf 11's), leaf 20 leaf 10's
    assert leaf_indexes(report, "leaf_offset_order") == [11, 20]
    assert report.verified_size == 0


def test_entries_stored_out_of_order_are_reported_but_verify(tmp_path: Path) -> None:
    log = make_log()
    log.entries[20], log.entries[21] = log.entries[21], log.entries[20]
    report = check(log, tmp_path / "b")
    assert [(f.kind, f.leaf_index) for f in report.findings] == [("leaf_disorder", 20)]
    assert report.checkpoints_verified == len(SIZES)


def test_duplicate_entries(tmp_path: Path) -> None:
    log = make_log()
    log.entries.insert(31, (30, log.leaves[30]))  # identical copy
    log.entries.insert(600, (598, log.leaves[5]))  # a different leaf under an old index
    report = check(log, tmp_path / "b")
    dups = of(report, "leaf_duplicate")
    assert [f.leaf_index for f in dups] == [30, 598]
    assert len(report.findings) == 2
    assert report.checkpoints_verified == len(SIZES)


def test_leaf_of_another_partition_and_garbage_leaf(tmp_path: Path) -> None:
    for check_index in (False, True):
        log = make_log()
        value, key = _events(N)[3]
        log.entries[3] = (3, _leaf(3, value, key, partition=5))
        log.entries[4] = (4, b"\x07garbage")
        report = check(log, tmp_path / f"b{check_index}", check_index=check_index)
        assert leaf_indexes(report, "leaf_misplaced") == [3]
        assert leaf_indexes(report, "leaf_malformed") == [4]
        assert leaf_indexes(report, "leaf_hash_mismatch") == [3, 4]


def test_entry_far_beyond_the_log_is_not_waited_for(tmp_path: Path) -> None:
    log = make_log()
    log.entries.insert(500, (2**62, b"x"))
    report = check(log, tmp_path / "b", check_index=False)
    assert [(f.kind, f.leaf_index) for f in report.findings] == [("leaf_out_of_range", 2**62)]


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def test_forged_checkpoint_is_a_signature_finding(tmp_path: Path) -> None:
    log = make_log()
    size, note = log.checkpoints[3]
    text, _, signatures = note.partition("\n\n")
    origin, size_line, _root = text.split("\n")
    forged_root = base64.b64encode(bytes(32)).decode()
    log.checkpoints[3] = (size, f"{origin}\n{size_line}\n{forged_root}\n\n{signatures}")
    report = check(log, tmp_path / "b")
    [finding] = report.findings
    assert finding.kind == "checkpoint_signature"
    assert finding.checkpoint_size == 512
    assert "invalid signature" in finding.detail
    assert report.checkpoints_verified == len(SIZES) - 1


def test_checkpoint_signed_by_an_unknown_key_only(tmp_path: Path) -> None:
    log = make_log()
    log.checkpoints[2] = (300, _note(log.leaves, 300, [OTHER_KEY]))
    report = check(log, tmp_path / "b")
    assert [(f.kind, f.checkpoint_size) for f in report.findings] == [("checkpoint_signature", 300)]
    assert "no signature from a trusted key" in report.findings[0].detail


def test_checkpoint_origin_order_size_and_malformed_notes(tmp_path: Path) -> None:
    log = make_log()
    other = sign_checkpoint(
        Checkpoint(
            origin=f"{LEDGER}/{TOPIC}/1", size=100, root_hash=merkle.root_from_leaves(log.leaves)
        ),
        [KEY],
    )
    log.checkpoints.append((100, other))
    log.checkpoints.append((256, log.checkpoints[1][1]))  # listed again, after 1000
    log.checkpoints.append((999, log.checkpoints[0][1]))  # row size disagrees with its note
    log.checkpoints.append((5, "not a note"))
    huge = RootHash(bytes(32))
    log.checkpoints.append(
        (2000, sign_checkpoint(Checkpoint(origin=ORIGIN, size=2000, root_hash=huge), [KEY]))
    )
    report = check(log, tmp_path / "b")
    got = sorted((f.kind, f.checkpoint_size) for f in report.findings)
    assert got == [
        ("checkpoint_beyond_log", 2000),
        ("checkpoint_malformed", 5),
        ("checkpoint_malformed", 100),
        ("checkpoint_order", 100),
        ("checkpoint_order", 256),
        ("checkpoint_origin", 100),
    ]


def test_checkpoint_with_a_wrong_but_validly_signed_root(tmp_path: Path) -> None:
    log = make_log()
    wrong = sign_checkpoint(
        Checkpoint(origin=ORIGIN, size=300, root_hash=merkle.root_from_leaves(log.leaves[:299])),
        [KEY],
    )
    log.checkpoints[2] = (300, wrong)
    report = check(log, tmp_path / "b")
    [finding] = report.findings
    assert (finding.kind, finding.checkpoint_size, finding.leaf_index) == (
        "checkpoint_root_mismatch",
        300,
        256,
    )
    assert "within leaves 256..299" in finding.detail


def test_key_rotation(tmp_path: Path) -> None:
    old, new = _signer(), _signer()
    log = make_log()
    signers = {100: [old], 256: [old], 300: [old, new], 512: [old, new], 700: [new], 1000: [new]}
    log.checkpoints = [(s, _note(log.leaves, s, signers[s])) for s in SIZES]

    both = check(log, tmp_path / "both", [old.verifier, new.verifier])
    assert both.ok
    assert both.checkpoints_verified == len(SIZES)

    only_old = check(log, tmp_path / "old", [old.verifier])
    assert [(f.kind, f.checkpoint_size) for f in only_old.findings] == [
        ("checkpoint_signature", 700),
        ("checkpoint_signature", 1000),
    ]
    assert only_old.verified_size == 512

    only_new = check(log, tmp_path / "new", [new.verifier])
    assert [(f.kind, f.checkpoint_size) for f in only_new.findings] == [
        ("checkpoint_signature", 100),
        ("checkpoint_signature", 256),
    ]


def test_verifiers_are_required(tmp_path: Path) -> None:
    with pytest.raises(MalformedInputError):
        verify_bundle(export(make_log(10, (10,)), tmp_path / "b"), [])


# --------------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------------


def _retile(tiles: list[tuple[int, int, bytes]], key: tuple[int, int], entry: int) -> None:
    for k, (level, index, data) in enumerate(tiles):
        if (level, index) == key:
            at = entry * 32
            tiles[k] = (level, index, data[:at] + bytes(32) + data[at + 32 :])
            return
    raise AssertionError(f"no tile {key}")


def test_tampered_level0_tile_hash_is_blamed_on_the_tile(tmp_path: Path) -> None:
    log = make_log()
    _retile(log.tiles, (0, 1), 5)
    report = check(log, tmp_path / "b")
    [finding] = report.findings
    assert finding.kind == "tile_mismatch"
    assert (finding.tile, finding.leaf_index) == ((0, 1), 261)
    assert "the stored tile is wrong" in finding.detail
    assert report.checkpoints_verified == len(SIZES)


def test_tampered_tile_not_covered_by_a_checkpoint_is_a_leaf_hash_mismatch(
    tmp_path: Path,
) -> None:
    log = make_log(sizes=(100,))
    _retile(log.tiles, (0, 2), 0)
    report = check(log, tmp_path / "b", check_index=False)
    [finding] = report.findings
    assert (finding.kind, finding.leaf_index, finding.checkpoint_size) == (
        "leaf_hash_mismatch",
        512,
        None,
    )
    assert "no checkpoint covers it" in finding.detail


def test_missing_duplicate_malformed_and_extra_tiles(tmp_path: Path) -> None:
    log = make_log()
    level0 = [t for t in log.tiles if t[0] == 0]
    log.tiles = [level0[0], level0[0], level0[2], (0, 9, bytes(8192)), (9, 0, bytes(8192))]
    report = check(log, tmp_path / "b", check_index=False)
    got = sorted((f.kind, f.tile) for f in report.findings)
    assert got == [
        ("tile_beyond_log", (0, 9)),
        ("tile_duplicate", (0, 0)),
        ("tile_malformed", None),
        ("tile_missing", (0, 1)),
    ]


def _cheap_log(n: int, sizes: Sequence[int]) -> Log:
    """Many small synthetic leaves (values are not events: verify with check_index=False)."""
    leaves = [_leaf(i, i.to_bytes(8, "big")) for i in range(n)]
    return Log(
        leaves=leaves,
        entries=list(enumerate(leaves)),
        tiles=list(build_full_tiles(map(_hash, leaves))),
        checkpoints=[(s, _note(leaves, s)) for s in sizes],
        rows=[],
        size=n,
    )


def test_level1_tiles_are_checked_and_attributed(tmp_path: Path) -> None:
    n = 2 * 65536 + 300
    log = _cheap_log(n, (1000, 65536, 70000, n))
    assert sorted({(lv, i) for lv, i, _ in log.tiles if lv}) == [(1, 0), (1, 1)]
    assert check(log, tmp_path / "clean", check_index=False).ok

    _retile(log.tiles, (1, 1), 3)
    report = check(log, tmp_path / "tile", check_index=False)
    [finding] = report.findings
    assert (finding.kind, finding.tile, finding.leaf_index) == (
        "tile_mismatch",
        (1, 1),
        65536 + 3 * 256,
    )
    assert "the stored tile is wrong" in finding.detail


def test_consistently_rewritten_leaf_and_level0_tile_is_caught_by_level1(tmp_path: Path) -> None:
    n = 65536 + 10
    log = _cheap_log(n, (1000, 65536))
    victim = 40_000
    forged = _leaf(victim, b"rewritten")
    log.entries[victim] = (victim, forged)
    hashes = [_hash(leaf) for _, leaf in log.entries]
    fresh = {(lv, i): d for lv, i, d in build_full_tiles(hashes) if lv == 0}
    log.tiles = [(lv, i, fresh[(lv, i)] if lv == 0 else d) for lv, i, d in log.tiles]
    report = check(log, tmp_path / "b", check_index=False)
    [tile] = of(report, "tile_mismatch")
    assert tile.tile == (1, 0)
    assert tile.leaf_index == (victim // 256) * 256
    assert "leaves under it" in tile.detail
    [root] = of(report, "checkpoint_root_mismatch")
    assert root.checkpoint_size == 65536
    assert root.leaf_index == (victim // 256) * 256


def test_build_full_tiles_matches_the_merkle_tree() -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(256 * 256 + 300)]
    tiles = list(build_full_tiles(hashes))
    keys = [(level, index) for level, index, _ in tiles]
    assert keys.count((1, 0)) == 1
    assert [k for k in keys if k[0] == 0] == [(0, t) for t in range(257)]
    assert keys.index((1, 0)) == keys.index((0, 255)) + 1  # emitted as soon as complete
    level1 = dict(((lv, i), d) for lv, i, d in tiles)[(1, 0)]
    for j in (0, 1, 77, 255):
        expected = merkle.root_from_leaf_hashes(hashes[256 * j : 256 * j + 256])
        assert level1[32 * j : 32 * j + 32] == expected
    assert list(build_full_tiles(hashes[:255])) == []
    with pytest.raises(MalformedInputError):
        list(build_full_tiles([b"short"] * 256))


# --------------------------------------------------------------------------------------------
# Index rows
# --------------------------------------------------------------------------------------------


def test_index_row_with_changed_user_id(tmp_path: Path) -> None:
    log = make_log()
    log.rows[123]["user_id"] = "someone-else"
    report = check(log, tmp_path / "b")
    [finding] = report.findings
    assert (finding.kind, finding.leaf_index) == ("index_mismatch", 123)
    assert "user_id" in finding.detail
    assert "someone-else" not in finding.detail  # findings never echo values


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("event_id", "00000000-0000-4000-8000-000000000000"),
        ("event_time", "2001-01-01T00:00:00+00:00"),
        ("patient_id", "P-0"),
        ("patient_issuer", None),
        ("facility_id", "elsewhere"),
        ("study_uid", "1.2.3"),
        ("dicom_event_id", "110100"),
        ("network_address", "192.0.2.1"),
        ("producer_seq", 10**9),
        ("kind", "critical_result_relay"),
    ],
)
def test_each_compared_column(tmp_path: Path, column: str, value: object) -> None:
    log = make_log(40, (40,))
    row = log.rows[7]
    assert row["kind"] == "phi_access"
    row[column] = value
    report = check(log, tmp_path / "b")
    assert [(f.kind, f.leaf_index) for f in report.findings] == [("index_mismatch", 7)]
    assert column in report.findings[0].detail


def test_event_time_compares_as_an_instant(tmp_path: Path) -> None:
    log = make_log(40, (40,))
    row = log.rows[3]
    moment = row["event_time"]
    assert isinstance(moment, datetime)
    row["event_time"] = moment.astimezone(timezone(timedelta(hours=-5)))
    assert check(log, tmp_path / "b").ok
    row["event_time"] = moment + timedelta(microseconds=1)
    report = check(log, tmp_path / "c")
    assert [(f.kind, f.leaf_index) for f in report.findings] == [("index_mismatch", 3)]


def test_event_time_without_a_zone_never_matches() -> None:
    log = make_log(10, (10,))
    moment = log.rows[2]["event_time"]
    assert isinstance(moment, datetime)
    log.rows[2]["event_time"] = moment.replace(tzinfo=None).isoformat()
    report = verify_log(MemorySource(log), SchemaSet(_schemas()), [KEY.verifier])
    assert [(f.kind, f.leaf_index) for f in report.findings] == [("index_mismatch", 2)]


def test_relay_rows_use_the_sender(tmp_path: Path) -> None:
    log = make_log(60, (60,))
    relays = [i for i, r in enumerate(log.rows) if r["kind"] == "critical_result_relay"]
    assert relays
    log.rows[relays[0]]["user_id"] = "not-the-sender"
    report = check(log, tmp_path / "b")
    assert [(f.kind, f.leaf_index) for f in report.findings] == [("index_mismatch", relays[0])]


def test_orphan_missing_duplicate_and_malformed_rows(tmp_path: Path) -> None:
    log = make_log()
    orphan = dict(log.rows[5])
    orphan["leaf_index"] = N + 3
    log.rows.append(orphan)
    del log.rows[200]
    log.rows.insert(300, dict(log.rows[299]))  # a second row for leaf 300
    broken = dict(log.rows[0])
    broken["leaf_index"] = "zero"
    log.rows.append(broken)
    report = check(log, tmp_path / "b")
    assert leaf_indexes(report, "index_orphan") == [N + 3]
    assert leaf_indexes(report, "index_missing") == [200]
    assert leaf_indexes(report, "index_duplicate") == [300]
    assert len(of(report, "index_malformed")) == 1
    assert len(report.findings) == 4


def test_rows_slightly_out_of_order_are_matched(tmp_path: Path) -> None:
    log = make_log()
    log.rows[10], log.rows[11] = log.rows[11], log.rows[10]
    assert check(log, tmp_path / "b").ok


def test_undecodable_event_and_invalid_schema(tmp_path: Path) -> None:
    log = make_log(50, (50,))
    value, key = _events(50)[9]
    log.entries[9] = (9, _leaf(9, b"\xc3\x01" + bytes(8) + value[10:], key))
    log.checkpoints = [(50, _note([e[1] for e in log.entries], 50))]
    path = export(log, tmp_path / "b")
    schemas = path / "schemas.json"
    stored = json.loads(schemas.read_text())
    # The schema the access events are written with (PhiAccessEvent v2, listed last).
    broken = [s for s in stored if s["full_name"] == "philedger.audit.PhiAccessEvent"][-1]
    broken["schema_json"] = broken["schema_json"].replace('"event_id"', '"event_uuid"')
    schemas.write_text(json.dumps(stored))
    [report] = verify_bundle(path, [KEY.verifier])
    assert len(of(report, "schema_invalid")) == 1
    undecodable = {f.leaf_index for f in of(report, "event_undecodable")}
    assert 9 in undecodable
    assert len(undecodable) > 1  # the events of the dropped schema cannot be decoded either


# --------------------------------------------------------------------------------------------
# Everything at once, sources and progress
# --------------------------------------------------------------------------------------------


def test_several_tampers_are_all_reported(tmp_path: Path) -> None:
    log = make_log()
    log.entries[400] = (400, flip(log.leaves[400], len(log.leaves[400]) - 3))  # leaf
    del log.entries[57]  # deleted entry
    log.checkpoints[0] = (100, _note(log.leaves, 100, [OTHER_KEY]))  # unknown key
    _retile(log.tiles, (0, 0), 200)  # tile hash under a verified checkpoint
    log.rows[800]["user_id"] = "x"  # index
    orphan = dict(log.rows[1])
    orphan["leaf_index"] = N + 1
    log.rows.append(orphan)
    report = check(log, tmp_path / "b")

    got = {(f.kind, f.leaf_index, f.checkpoint_size) for f in report.findings}
    assert ("checkpoint_signature", None, 100) in got
    assert ("leaf_missing", 57, None) in got
    assert ("index_orphan", 57, None) in got
    assert ("tile_mismatch", 200, None) in got
    assert ("leaf_hash_mismatch", 400, 512) in got
    assert {s for k, i, s in got if k == "checkpoint_root_mismatch" and i == 400} == {512}
    assert ("index_mismatch", 800, None) in got
    assert ("index_orphan", N + 1, None) in got
    assert report.verified_size == 300


class MemorySource:
    """A minimal ``LogSource`` (what an API-backed source will look like)."""

    def __init__(self, log: Log, *, fail_after: int | None = None) -> None:
        self._log = log
        self._fail_after = fail_after

    @property
    def origin(self) -> str:
        return ORIGIN

    @property
    def size(self) -> int:
        return self._log.size

    def iter_entries(self) -> Iterator[tuple[int, bytes]]:
        for k, entry in enumerate(self._log.entries):
            if k == self._fail_after:
                raise UnavailableError("connection lost")
            yield entry

    def iter_tiles(self) -> Iterator[tuple[int, int, bytes]]:
        return iter(self._log.tiles)

    def checkpoints(self) -> Sequence[tuple[int, str]]:
        return self._log.checkpoints

    def iter_index_rows(self) -> Iterator[Mapping[str, object]]:
        return iter(self._log.rows)


def test_memory_source_and_progress() -> None:
    log = _cheap_log(120_000, (50_000, 120_000))
    calls: list[tuple[str, int, int]] = []
    report = verify_log(
        MemorySource(log),
        SchemaSet(()),
        [KEY.verifier],
        check_index=False,
        progress=lambda origin, done, total: calls.append((origin, done, total)),
    )
    assert report.ok
    assert report.verified_size == 120_000
    assert calls[0] == (ORIGIN, 0, 120_000)
    assert calls[-1] == (ORIGIN, 120_000, 120_000)
    done = [c[1] for c in calls][:-1]  # the final call reports the end, however close
    assert all(b - a >= 50_000 for a, b in itertools.pairwise(done))
    assert len(calls) <= 120_000 // 50_000 + 2


def test_a_failing_source_is_a_finding_not_a_crash() -> None:
    log = make_log()
    report = verify_log(MemorySource(log, fail_after=600), SchemaSet(_schemas()), [KEY.verifier])
    assert not report.ok
    [error] = of(report, "source_error")
    assert "connection lost" in error.detail
    assert leaf_indexes(report, "leaf_missing") == [600]
    assert report.leaves_checked == 600


def test_truncated_bundle_file_is_a_finding(tmp_path: Path) -> None:
    path = export(make_log(), tmp_path / "b")
    entries = path / "logs" / "7" / "entries.bin"
    entries.write_bytes(entries.read_bytes()[:-5])
    tiles = path / "logs" / "7" / "tiles.bin"
    tiles.write_bytes(tiles.read_bytes()[:-1])
    [report] = verify_bundle(path, [KEY.verifier])
    errors = of(report, "source_error")
    assert len(errors) == 2
    assert leaf_indexes(report, "leaf_missing") == [N - 1]
    assert report.leaves_checked == N - 1


def test_many_findings_are_counted_beyond_the_cap() -> None:
    log = make_log(300, (300,))
    for row in log.rows:
        row["user_id"] = "x"
    report = verify_log(
        MemorySource(log), SchemaSet(_schemas()), [KEY.verifier], max_findings_per_kind=10
    )
    assert len(of(report, "index_mismatch")) == 10
    [summary] = of(report, "findings_truncated")
    assert "290 more index_mismatch" in summary.detail


def test_reversed_entries_degrade_gracefully() -> None:
    log = _cheap_log(20_000, (20_000,))
    log.entries.reverse()
    report = verify_log(MemorySource(log), SchemaSet(()), [KEY.verifier], check_index=False)
    kinds = {f.kind for f in report.findings}
    assert kinds == {"leaf_missing", "leaf_disorder", "findings_truncated"}
    [missing] = of(report, "leaf_missing")
    assert missing.leaf_index == 0
    # Leaves that came too late are not verified in sequence, but the stored tiles still
    # carry their hashes, so the signed checkpoint is still reproduced.
    assert report.verified_size == 20_000
    assert report.leaves_checked < 20_000


def test_sparse_entries(tmp_path: Path) -> None:
    log = _cheap_log(2000, (1792, 1999))
    log.entries = log.entries[::2]
    report = check(log, tmp_path / "b", check_index=False)
    assert len(of(report, "leaf_missing")) == 1000
    assert report.verified_size == 1792  # the holes below are filled from full tiles
    [unverifiable] = of(report, "checkpoint_unverifiable")
    assert (unverifiable.checkpoint_size, unverifiable.leaf_index) == (1999, 1793)
