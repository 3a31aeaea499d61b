"""How the topics `ledger topics` creates are replicated.

Invariant: ``min_insync`` never exceeds ``factor`` (an acks=all write could never succeed).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicReplication:
    """A topic's replication factor and its ``min.insync.replicas``."""

    factor: int = 1
    min_insync: int = 1

    def __post_init__(self) -> None:
        if self.factor < 1 or self.min_insync < 1:
            raise ValueError("replication factor and min.insync.replicas must be at least 1")
        if self.min_insync > self.factor:
            raise ValueError(
                f"min.insync.replicas {self.min_insync} exceeds the replication factor "
                f"{self.factor}: no acks=all write could ever succeed"
            )

    def topic_configs(self) -> dict[str, str]:
        """The per-topic settings of a created topic (retention is the ledger's job)."""
        return {"retention.ms": "-1", "min.insync.replicas": str(self.min_insync)}
