"""Periods (time shards of a log) and seals: pure rules, strict formats."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from ledger.errors import MalformedInputError, VerificationError
from ledger.log.checkpoint import Checkpoint, format_checkpoint, parse_checkpoint
from ledger.log.note import generate_signer, parse_signer_key, parse_verifier_key
from ledger.log.periods import (
    Period,
    PeriodLength,
    parse_label,
    period_of,
    period_of_ms,
    split_origin,
)
from ledger.log.seal import SEAL_HEADER, Seal, format_seal, open_seal, parse_seal, sign_seal
from ledger.log.types import RootHash
from ledger.verify.events import log_position

HEAD = Checkpoint(origin="l.example/t/0/2026-11", size=4, root_hash=RootHash(b"\x07" * 32))
SEAL = Seal(checkpoint=HEAD, next_origin="l.example/t/0/2026-12", next_first_offset=4)


@pytest.mark.parametrize(
    ("instant", "length", "label", "end"),
    [
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), PeriodLength.MONTH, "2026-12",
         date(2027, 1, 1)),
        (datetime(2027, 1, 1, tzinfo=UTC), PeriodLength.MONTH, "2027-01", date(2027, 2, 1)),
        (datetime(2028, 2, 29, 12, tzinfo=UTC), PeriodLength.DAY, "2028-02-29", date(2028, 3, 1)),
        # 2026-12-01 00:30 at UTC+1 is still November in UTC: periods are UTC.
        (datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), PeriodLength.MONTH,
         "2026-11", date(2026, 12, 1)),
    ],
)  # fmt: skip
def test_period_of_an_instant(
    instant: datetime, length: PeriodLength, label: str, end: date
) -> None:
    period = period_of(instant, length)
    assert (period.label, period.end) == (label, end)
    assert period.contains(instant)
    assert not period.contains(datetime.combine(end, datetime.min.time(), UTC))
    assert parse_label(label) == period
    ms = int(instant.timestamp() * 1000)
    assert period_of_ms(ms, length) == period


def test_periods_refuse_what_is_not_one() -> None:
    with pytest.raises(MalformedInputError):
        period_of(datetime(2026, 1, 1), PeriodLength.MONTH)  # naive: whose midnight?
    with pytest.raises(MalformedInputError):
        Period(start=date(2026, 1, 2), length=PeriodLength.MONTH)
    for text in ("2026-13", "2026-02-30", "2026-1", "26-01", "2026-01-01T00", ""):
        with pytest.raises(MalformedInputError):
            parse_label(text)


def test_a_seal_round_trips_and_never_parses_as_a_checkpoint() -> None:
    text = format_seal(SEAL)
    assert text.splitlines()[0] == SEAL_HEADER
    assert parse_seal(text) == SEAL
    with pytest.raises(MalformedInputError):
        parse_checkpoint(text)  # line 2 (the origin) is not a size
    with pytest.raises(MalformedInputError):
        parse_seal(format_checkpoint(HEAD))


def test_a_seal_verifies_only_with_the_logs_key() -> None:
    signer, verifier = generate_signer("l.example")
    _, other_verifier = generate_signer("l.example")
    note = sign_seal(SEAL, [parse_signer_key(signer)])
    assert open_seal(note, [parse_verifier_key(verifier)]) == SEAL
    with pytest.raises(VerificationError):
        open_seal(note, [parse_verifier_key(other_verifier)])
    tampered = note.replace("\n4\n", "\n5\n", 1)
    with pytest.raises(VerificationError):
        open_seal(tampered, [parse_verifier_key(verifier)])


@pytest.mark.parametrize(
    "text",
    [
        f"{SEAL_HEADER}\nl/t/0\n4\n{'B' * 43}=\nl/t/1\n",  # no offset line
        f"{SEAL_HEADER}\nl/t/0\n4\n{'B' * 43}=\nl/t/1\n04\n",  # leading zero
        f"{SEAL_HEADER}\nl/t/0\n4\n{'B' * 43}=\nl/t/0\n4\n",  # next log = itself
        f"{SEAL_HEADER}\nl/t/0\n4\n{'B' * 43}=\nl t/1\n4\n",  # bad origin
        f"other\nl/t/0\n4\n{'B' * 43}=\nl/t/1\n4\n",  # wrong header
        f"{SEAL_HEADER}\nl/t/0\n4\n{'B' * 43}=\nl/t/1\n4",  # no final newline
    ],
)
def test_malformed_seals_are_refused(text: str) -> None:
    with pytest.raises(MalformedInputError):
        parse_seal(text)


@pytest.mark.parametrize(
    ("origin", "base", "label", "position"),
    [
        ("l.example/phi-access/3/2027-01", "l.example/phi-access/3", "2027-01", ("phi-access", 3)),
        ("l.example/phi-access/3/2027-01-31", "l.example/phi-access/3", "2027-01-31",
         ("phi-access", 3)),
        ("l.example/phi-access/3", "l.example/phi-access/3", None, ("phi-access", 3)),
        ("l.example/2027-01", "l.example", "2027-01", None),  # no topic or partition
        ("l.example/t/x/2027-01", "l.example/t/x", "2027-01", None),
    ],
)  # fmt: skip
def test_an_origin_names_its_partition_with_or_without_a_period(
    origin: str, base: str, label: str | None, position: tuple[str, int] | None
) -> None:
    """Before logs were sharded an origin ended at the partition; the verifier's check that
    every leaf records its log's partition must hold for both (it silently stopped for
    sharded origins until this was fixed)."""
    assert split_origin(origin) == (base, label)
    assert log_position(origin) == position
