"""``access.unusual_hours``: a user's access in an hour of the day they rarely work.

Invariant: a user's baseline is made only of that user's successful PHI accesses
appended earlier to the same log whose UTC hour lies in the ``baseline`` (28 days) up to
the latest access time seen for that user (counted by the hour: an access leaves the
baseline when its whole UTC hour has). An access is judged against the baseline before
it joins it: once the baseline holds ``min_events`` accesses on ``min_days`` calendar
days, an access whose hour of the day (in the rules' time zone) holds less than
``min_share`` of the baseline raises one finding, at most one per (user, calendar day).
Nothing depends on the wall clock, so replay decides the same way at the same leaf.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Final
from zoneinfo import ZoneInfo

from ledger.audit.records import JsonValue
from ledger.audit.rules.access import (
    facility_id,
    is_access,
    local_time,
    named_patient,
    succeeded,
    user_id,
)
from ledger.audit.rules.config import UnusualHoursConfig
from ledger.audit.rules.model import AppendedEvent, Evidence, Finding, Severity

_SECONDS_PER_HOUR: Final = 3600
#: (UTC hour since the epoch, local hour of the day, local calendar day): an hour may
#: fall on two local hours in a zone whose offset is not whole hours.
_Bucket = tuple[int, int, date]


@dataclass(slots=True)
class _UserBaseline:
    clock_hour: int | None = None
    buckets: dict[_Bucket, int] = field(default_factory=dict)
    #: Every bucket key, earliest UTC hour first (each pushed once, when created).
    order: list[_Bucket] = field(default_factory=list)
    by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    by_day: Counter[date] = field(default_factory=Counter)
    total: int = 0

    def add(self, bucket: _Bucket) -> None:
        if bucket not in self.buckets:
            self.buckets[bucket] = 0
            heapq.heappush(self.order, bucket)
        self.buckets[bucket] += 1
        self.by_hour[bucket[1]] += 1
        self.by_day[bucket[2]] += 1
        self.total += 1

    def prune(self, oldest_hour: int) -> None:
        """Forget the buckets of UTC hours before ``oldest_hour``."""
        while self.order and self.order[0][0] < oldest_hour:
            bucket = heapq.heappop(self.order)
            n = self.buckets.pop(bucket)
            self.by_hour[bucket[1]] -= n
            self.by_day[bucket[2]] -= n
            if not self.by_day[bucket[2]]:
                del self.by_day[bucket[2]]
            self.total -= n


@dataclass(slots=True)
class HoursWindow:
    users: dict[str, _UserBaseline] = field(default_factory=dict)
    #: (user, local day) already alerted in this log: one entry per alert.
    alerted: set[tuple[str, date]] = field(default_factory=set)


class UnusualHours:
    """An access in an hour holding less than ``min_share`` of the user's baseline."""

    id: Final = "access.unusual_hours"
    version: Final = 1

    def __init__(self, config: UnusualHoursConfig, zone: ZoneInfo) -> None:
        self._config = config
        self._zone = zone
        self._hours = int(config.baseline.total_seconds()) // _SECONDS_PER_HOUR

    @property
    def severity(self) -> Severity:
        return self._config.severity

    def thresholds(self) -> Mapping[str, JsonValue]:
        c = self._config
        return {
            "baseline_days": c.baseline.days,
            "min_events": c.min_events,
            "min_days": c.min_days,
            "min_share": c.min_share,
            "timezone": self._zone.key,
        }

    def new_window(self) -> HoursWindow:
        return HoursWindow()

    def evaluate(self, event: AppendedEvent, window: HoursWindow) -> Sequence[Finding]:
        user = user_id(event)
        if user is None or not is_access(event) or not succeeded(event):
            return ()
        at = local_time(event, self._zone)
        utc_hour = int(at.timestamp() // _SECONDS_PER_HOUR)
        bucket: _Bucket = (utc_hour, at.hour, at.date())
        b = window.users.setdefault(user, _UserBaseline())
        if b.clock_hour is None or utc_hour > b.clock_hour:
            b.clock_hour = utc_hour
        b.prune(b.clock_hour - self._hours + 1)
        found = self._judge(event, user, b, bucket, window)
        b.add(bucket)
        return found

    def _judge(
        self,
        event: AppendedEvent,
        user: str,
        b: _UserBaseline,
        bucket: _Bucket,
        window: HoursWindow,
    ) -> Sequence[Finding]:
        c = self._config
        if b.total < c.min_events or len(b.by_day) < c.min_days:
            return ()
        in_hour = b.by_hour[bucket[1]]
        if in_hour >= c.min_share * b.total:
            return ()
        day = (user, bucket[2])
        if day in window.alerted:
            return ()
        window.alerted.add(day)
        return (self._finding(event, user, bucket, in_hour, b.total),)

    def _finding(
        self, event: AppendedEvent, user: str, bucket: _Bucket, in_hour: int, total: int
    ) -> Finding:
        hour, day = bucket[1], bucket[2]
        c = self._config
        return Finding(
            rule_id=self.id,
            rule_version=self.version,
            severity=self.severity,
            trigger=event.position,
            summary=(
                f"{user} accessed PHI on {day.isoformat()} between {hour:02d}:00 and "
                f"{(hour + 1) % 24:02d}:00 ({self._zone.key}), an hour holding {in_hour} of "
                f"their {total} accesses over the last {c.baseline.days} days (less than "
                f"{c.min_share:.2%}); later accesses that day raise no alert"
            ),
            facility_id=facility_id(event),
            user_id=user,
            patient=named_patient(event),
            evidence=(Evidence(position=event.position, role="trigger"),),
            thresholds=self.thresholds(),
        )
