"""What a read disclosed: canonical ranges, the AuditLogUsed v2 schema, the verifier's check."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.projection import event_index
from ledger.audit import disclosure
from ledger.audit.disclosure import (
    MAX_RANGES,
    Disclosure,
    LeafRange,
    coalesce,
    of_positions,
    whole_logs,
)
from ledger.audit.readlog import LedgerRead
from ledger.verify import verify_bundle
from ledger.verify.disclosures import disclosure_check
from ledger.verify.patients import patients_check
from ledger.verify.producers import producer_check
from ledger.verify.sealbounds import seal_bounds_check
from ledgerctl.readaudit import audit_event
from ledgerctl.verifying import event_checks
from producers.codec import Codec, load_shipped_schemas, to_record
from producers.errors import DecodeError, EventValidationError
from producers.events import (
    AUDIT_LOG_USED_SCHEMA_NAME,
    Actor,
    AuditLogUsed,
    DisclosedRange,
    Facility,
    LedgerQuery,
    Patient,
    validate,
)
from tests.unit.test_bundle_format_doc import _every_kind
from tests.unit.test_verify import KEY, export

V2 = "c99b86cb05106cbe"
V1 = "12d031c13ce628ed"


def r(origin: str, start: int, end: int) -> LeafRange:
    return LeafRange(origin=origin, start=start, end=end)


def read(**kw: object) -> AuditLogUsed:
    base = AuditLogUsed(
        facility=Facility(id="ledger"),
        actor=Actor(user_id="auditor", role="auditor"),
        query=LedgerQuery(method="GET", path="/v1/logs/1/index", status=200),
        event_time=datetime(2026, 1, 5, tzinfo=UTC),
        producer_id="api",
        producer_seq=1,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def ranges(*items: tuple[str, int, int]) -> tuple[DisclosedRange, ...]:
    return tuple(DisclosedRange(log=o, start=s, end=e) for o, s, e in items)


# ------------------------------------------------------------------ coalescing


def test_single_entries_coalesce_into_ranges_per_log() -> None:
    d = of_positions([("L/b", 7), ("L/a", 3), ("L/a", 4), ("L/a", 5), ("L/a", 9), ("L/a", 4)])
    assert d == Disclosure(ranges=(r("L/a", 3, 6), r("L/a", 9, 10), r("L/b", 7, 8)))
    assert not d.coarsened


def test_adjacent_and_overlapping_ranges_merge_empty_ones_vanish() -> None:
    d = coalesce([r("L", 0, 10), r("L", 10, 12), r("L", 5, 7), r("L", 20, 20), r("M", 10, 12)])
    assert d.ranges == (r("L", 0, 12), r("M", 10, 12))
    assert not coalesce([r("L", 5, 5)])


def test_whole_logs_is_one_range_per_log() -> None:
    """What `ledger export` records: every entry of each log up to its size."""
    d = whole_logs({"L/1": 1_000_000, "L/0": 5, "L/empty": 0})
    assert d.ranges == (r("L/0", 0, 5), r("L/1", 0, 1_000_000))


def test_past_the_cap_each_log_is_covered_by_one_range_and_flagged() -> None:
    scattered = [("L", 2 * i) for i in range(MAX_RANGES + 1)] + [("M", 1), ("M", 9)]
    d = of_positions(scattered)
    assert d.coarsened
    assert d.ranges == (r("L", 0, 2 * MAX_RANGES + 1), r("M", 1, 10))
    exactly = of_positions(("L", 2 * i) for i in range(MAX_RANGES))
    assert not exactly.coarsened
    assert len(exactly.ranges) == MAX_RANGES


def test_union_keeps_the_coarsened_flag() -> None:
    coarse = Disclosure(ranges=(r("L", 0, 9),), coarsened=True)
    assert of_positions([("L", 20)]).union(coarse) == Disclosure(
        ranges=(r("L", 0, 9), r("L", 20, 21)), coarsened=True
    )


@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 300)), max_size=400))
def test_coalescing_covers_exactly_the_positions(positions: list[tuple[str, int]]) -> None:
    d = of_positions(positions)
    covered = {(x.origin, i) for x in d.ranges for i in range(x.start, x.end)}
    assert covered == set(positions)
    for x, y in zip(d.ranges, d.ranges[1:], strict=False):
        assert (x.origin, x.end) < (y.origin, y.start)  # sorted, gaps between (canonical)


# ------------------------------------------------------------------ schema v2


def test_new_reads_are_written_with_v2_and_round_trip() -> None:
    codec = Codec()
    event = read(disclosed=ranges(("L/0", 0, 3), ("L/0", 5, 6), ("L/1", 2, 4)))
    data = codec.encode(event)
    assert data[2:10].hex() == V2
    assert codec.decode(data) == event
    coarse = read(disclosed=ranges(("L/0", 0, 99)), disclosed_coarsened=True)
    assert codec.decode(codec.encode(coarse)) == coarse


def test_v1_reads_still_decode_with_nothing_disclosed() -> None:
    v1_only = Codec(s for s in load_shipped_schemas() if s.fingerprint.hex() != V2)
    event = read(patient=Patient(id="MRN1"))
    old = v1_only.encode(event)
    assert old[2:10].hex() == V1
    decoded = Codec().decode(old)
    assert decoded == event
    assert isinstance(decoded, AuditLogUsed)
    assert decoded.disclosed == ()
    assert event_index(decoded).disclosed == ()


@pytest.mark.parametrize(
    ("disclosed", "field"),
    [
        (ranges(("L", 5, 5)), "disclosed[0].ranges[0]"),  # empty
        (ranges(("L", -1, 2)), "disclosed[0].ranges[0]"),
        (ranges(("L", 0, 2**62 + 1)), "disclosed[0].ranges[0]"),
        (ranges(("L", 4, 6), ("L", 0, 2)), "disclosed[0].ranges[1]"),  # unsorted
        (ranges(("L", 0, 2), ("L", 2, 4)), "disclosed[0].ranges[1]"),  # adjacent
        (ranges(("L", 0, 3), ("L", 2, 4)), "disclosed[0].ranges[1]"),  # overlapping
        (ranges(("M", 0, 1), ("L", 0, 1)), "disclosed[1].log"),  # logs unsorted
        (ranges(("", 0, 1)), "disclosed[0].log"),
        (ranges(*(("L", 2 * i, 2 * i + 1) for i in range(1001))), "disclosed"),
    ],
)
def test_non_canonical_disclosures_are_refused(
    disclosed: tuple[DisclosedRange, ...], field: str
) -> None:
    with pytest.raises(EventValidationError) as caught:
        validate(read(disclosed=disclosed))
    assert caught.value.field == field


def test_the_consumer_refuses_a_non_canonical_v2_record_too() -> None:
    """A producer that skips validation cannot make the projection differ from the leaf."""
    codec = Codec()
    good = codec.encode(read(disclosed=ranges(("L", 0, 2), ("L", 4, 6))))
    # Same length, second range now starts at the first one's end: adjacent, not canonical.
    bad = good.replace(b"\x00\x04\x08\x0c", b"\x00\x04\x04\x0c")
    assert bad != good
    with pytest.raises(DecodeError) as caught:
        codec.decode(bad)
    assert caught.value.reason == "invalid_event"


def test_the_api_read_maps_onto_the_event() -> None:
    d = of_positions([("L/0", 1), ("L/0", 2), ("L/1", 0)])
    when = datetime(2026, 1, 5, tzinfo=UTC)
    ledger_read = LedgerRead(
        read_id=uuid.uuid4(), at=when, subject="auditor", role="auditor", client=None,
        method="GET", path="/v1/logs/1/index", status=200, disclosed=d,
    )  # fmt: skip
    event = audit_event(ledger_read, ledger_name="ledger")
    assert event.disclosed == ranges(("L/0", 1, 3), ("L/1", 0, 1))
    stamped = event.stamped(producer_id="api", producer_seq=1)
    validate(stamped)
    assert event_index(stamped).disclosed == (("L/0", 1, 3), ("L/1", 0, 1))


# ------------------------------------------------------------------ the verifier's check


def _row(cell: object) -> dict[str, object]:
    return {disclosure.COLUMN: cell}


def test_check_accepts_exactly_the_leafs_ranges() -> None:
    record = to_record(read(disclosed=ranges(("L", 0, 2), ("M", 4, 6))))
    assert (
        disclosure.check(AUDIT_LOG_USED_SCHEMA_NAME, record, _row([["M", 4, 6], ["L", 0, 2]]))
        is None
    )
    assert disclosure.check("philedger.audit.PhiAccessEvent", {}, _row([])) is None
    assert disclosure.check("philedger.audit.PhiAccessEvent", {}, {}) is None  # old bundle


@pytest.mark.parametrize(
    ("cell", "says"),
    [
        ([["L", 0, 2]], "1 missing"),
        ([["L", 0, 2], ["M", 4, 6], ["N", 0, 1]], "1 extra"),
        ([["L", 0, 3], ["M", 4, 6]], "1 missing, 1 extra"),
        ([["L", 0, 2], ["M", 4, 6], ["M", 4, 6]], "1 duplicated"),
        ([], "2 missing"),
        (None, "2 missing"),
        ("[]", "malformed"),
        ([["L", "0", 2]], "malformed"),
    ],
)
def test_check_reports_missing_extra_and_malformed_rows(cell: object, says: str) -> None:
    record = to_record(read(disclosed=ranges(("L", 0, 2), ("M", 4, 6))))
    problem = disclosure.check(AUDIT_LOG_USED_SCHEMA_NAME, record, _row(cell))
    assert problem is not None
    assert says in problem
    assert "L" not in problem.replace("disclosed", "")  # counts only, never origins


def test_check_reports_ranges_pinned_on_an_event_that_is_no_read() -> None:
    problem = disclosure.check("philedger.audit.PhiAccessEvent", {}, _row([["L", 0, 1]]))
    assert problem is not None
    assert "1 extra" in problem


def test_the_check_plugs_into_the_verifier_and_needs_the_index(tmp_path: Path) -> None:
    """As an ``EventCheck`` (``checks=``): a bundle with a read whose ranges were dropped
    from its row is a ``disclosure_mismatch`` at that leaf; a clean one verifies; and it
    runs only with the index (the CLI's ``event_checks`` gives it exactly then)."""
    log = _every_kind()
    [leaf] = [i for i, row in enumerate(log.rows) if row["disclosed"]]
    clean = export(log, tmp_path / "clean")
    [ok] = verify_bundle(clean, [KEY.verifier], checks=[disclosure_check])
    assert ok.ok, ok.findings
    log.rows[leaf]["disclosed"] = log.rows[leaf]["disclosed"][1:]  # hide one range
    log.rows[0]["disclosed"] = [["test.ledger/phi-access/0", 0, 1]]  # pin one on an access
    tampered = export(log, tmp_path / "tampered")
    [bad] = verify_bundle(tampered, [KEY.verifier], checks=[disclosure_check])
    assert sorted((f.kind, f.leaf_index) for f in bad.findings) == [
        ("disclosure_mismatch", 0),
        ("disclosure_mismatch", leaf),
    ]
    assert all("test.ledger" not in f.detail for f in bad.findings)  # counts, no values
    [without] = verify_bundle(tampered, [KEY.verifier])
    assert without.ok, "the check is composed in, not built in"
    assert event_checks(check_index=True) == (
        producer_check, seal_bounds_check, disclosure_check, patients_check,
    )  # fmt: skip
    assert event_checks(check_index=False) == (producer_check, seal_bounds_check)


def test_a_full_page_of_scattered_entries_fits_in_a_leaf() -> None:
    """1000 single entries over 8 logs at leaf indexes past 2^40: the read event stays far
    below the 65,535-byte leaf limit (the consumer quarantines a larger record)."""
    origins = [f"hospital.example.org/phi-access/{p}" for p in range(8)]
    d = of_positions((origins[i % 8], 2**40 + 3 * i) for i in range(MAX_RANGES))
    assert len(d.ranges) == MAX_RANGES
    assert not d.coarsened
    event = read(disclosed=tuple(DisclosedRange(log=x.origin, start=x.start, end=x.end)
                                 for x in d.ranges))  # fmt: skip
    assert len(Codec().encode(event)) < 32 * 1024


@given(
    st.lists(
        st.tuples(st.sampled_from(["L/a", "L/b", "M"]), st.integers(min_value=0, max_value=40)),
        max_size=120,
    )
)
def test_single_entries_disclose_what_their_one_leaf_ranges_do(
    positions: list[tuple[str, int]],
) -> None:
    """The run-finding path of ``of_positions`` equals coalescing one range per entry."""
    ranges = [LeafRange(origin=o, start=i, end=i + 1) for o, i in positions]
    assert of_positions(positions) == coalesce(ranges)
