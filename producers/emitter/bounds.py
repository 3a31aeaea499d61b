"""The in-flight bounds: how many events, and how old, the emitter may hold in memory
unacknowledged by Kafka before it spools them.

Invariant: pure decisions, no state and no I/O: ``full`` once ``max_events`` events are in
flight (the next one must not join them in memory), ``overdue`` once the oldest of them
is older than ``max_age_seconds``. The emitter spools on either (docs/design/emitter.md,
"In-flight bounds").
"""

from __future__ import annotations

from dataclasses import dataclass

from producers.emitter.config import EmitterConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class InFlightBounds:
    max_events: int
    max_age_seconds: float

    @classmethod
    def of(cls, config: EmitterConfig) -> InFlightBounds:
        return cls(
            max_events=config.max_inflight_events, max_age_seconds=config.spool_after_seconds
        )

    @property
    def check_every_seconds(self) -> float:
        """How often the age is checked: a quarter of the bound, between 50 ms and 1 s."""
        return max(0.05, min(1.0, self.max_age_seconds / 4))

    def full(self, inflight: int) -> bool:
        """Another event would take the count past the bound."""
        return inflight >= self.max_events

    def overdue(self, oldest_created_ms: int | None, now_ms: int) -> float | None:
        """The oldest in-flight event's age in seconds when it exceeds the bound, else None."""
        if oldest_created_ms is None:
            return None
        age = (now_ms - oldest_created_ms) / 1000
        return age if age > self.max_age_seconds else None
