"""The detach procedure's rules: which months may leave the database, and when a bundle
matches what they hold. Each refusal is named; nothing partial."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest

from ledger.audit.retention import (
    BundleLog,
    DetachRefused,
    PeriodContents,
    PeriodLog,
    check_detachable,
    check_matches_bundle,
    months_between,
)
from ledger.errors import MalformedInputError
from ledgerctl.detaching import month_of

NOV = date(2025, 11, 1)
LOGS = (
    PeriodLog(log_id=7, origin="l/t/0/2025-11", size=4, sealed_size=4, seal_note="seal-0\n"),
    PeriodLog(log_id=8, origin="l/t/1/2025-11", size=0, sealed_size=0, seal_note="seal-1\n"),
)
CONTENTS = PeriodContents(
    month=NOV,
    logs=LOGS,
    events=4,
    first_event_time=datetime(2025, 10, 30, tzinfo=UTC),
    last_event_time=datetime(2025, 11, 30, tzinfo=UTC),
    states=frozenset(),
)
BUNDLE = [BundleLog(origin=g.origin, size=g.size, seal_note=g.seal_note) for g in LOGS]
TODAY = date(2026, 12, 6)


def test_a_sealed_old_month_may_leave_and_its_own_bundle_matches() -> None:
    check_detachable(CONTENTS, today=TODAY, live_months=13)
    check_matches_bundle(CONTENTS, BUNDLE, 4)


@pytest.mark.parametrize(
    ("contents", "live", "why"),
    [
        (dataclasses.replace(CONTENTS, states=frozenset({"archived", "detached"})), 13,
         "detached already"),
        (dataclasses.replace(CONTENTS, logs=()), 13, "holds no log"),
        (CONTENTS, 14, "within the 14 live months"),
        (dataclasses.replace(CONTENTS, logs=(dataclasses.replace(LOGS[0], sealed_size=None),)),
         13, "not sealed at its full size: l/t/0/2025-11"),
        # Sealed, then a leaf appeared past the seal (a fork): not detachable.
        (dataclasses.replace(CONTENTS, logs=(dataclasses.replace(LOGS[0], size=5),)), 13,
         "not sealed at its full size"),
    ],
)  # fmt: skip
def test_months_that_may_not_leave_are_refused(
    contents: PeriodContents, live: int, why: str
) -> None:
    with pytest.raises(DetachRefused, match=why):
        check_detachable(contents, today=TODAY, live_months=live)


@pytest.mark.parametrize(
    ("bundle", "events", "why"),
    [
        (BUNDLE[:1], 4, "missing from the bundle: l/t/1/2025-11"),
        ([*BUNDLE, BundleLog(origin="l/t/2/2025-11", size=1, seal_note="x\n")], 4,
         "not a log of 2025-11: l/t/2/2025-11"),
        ([dataclasses.replace(BUNDLE[0], size=3), BUNDLE[1]], 4, "3 entries in the bundle, 4 here"),
        ([dataclasses.replace(BUNDLE[0], seal_note="other\n"), BUNDLE[1]], 4,
         "seal differs"),
        (BUNDLE, 3, "3 index rows in the bundle, 4 here"),
    ],
)  # fmt: skip
def test_a_bundle_that_differs_from_the_database_is_refused(
    bundle: list[BundleLog], events: int, why: str
) -> None:
    with pytest.raises(DetachRefused, match=why):
        check_matches_bundle(CONTENTS, bundle, events)


def test_months_and_labels() -> None:
    assert months_between(date(2025, 11, 1), date(2026, 12, 6)) == 13
    assert months_between(date(2026, 12, 1), date(2026, 12, 31)) == 0
    assert month_of("2025-11") == NOV
    with pytest.raises(MalformedInputError, match="a month at a time"):
        month_of("2025-11-03")
    with pytest.raises(MalformedInputError):
        month_of("November")
