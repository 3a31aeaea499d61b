"""The async emitter a PACS integration embeds to send audit events to Kafka.

Invariant: an event is validated and encoded before anything is sent, so an invalid
event raises ``EventValidationError`` in the caller and never reaches Kafka; every
accepted event is stamped with this producer's id and the next per-producer sequence
number, keyed by its patient, and sent by an idempotent ``acks=all`` producer; ``emit``
never waits on Kafka longer than ``EmitterConfig.max_block_seconds``; with a spool, no
accepted event is lost and the emit order is kept, whatever Kafka does.

``Emitter`` (``core``) coordinates small parts, each with its own state: ``config``
(settings and snapshots), ``stamping`` (sequence numbers and their persisted blocks),
``kafka`` and ``signedsend`` (the aiokafka producer, its send queue and its signing),
``sending`` (the healthy path), ``bounds`` (how many events, and how old, may be in
flight before they are spooled), ``spooling`` (the switch to the spool and its group
commit), ``draining`` (reconnecting and re-sending the spool) and ``deliveries`` (what is
still owed). This package imports only the rest of ``producers``. The design:
docs/design/emitter.md.
"""

from producers.emitter.config import (
    MAX_EVENT_BYTES,
    Delivery,
    EmitterConfig,
    EmitterHealth,
    EmitterState,
)
from producers.emitter.core import Emitter
from producers.emitter.stamping import SEQUENCE_BLOCK

__all__ = [
    "MAX_EVENT_BYTES",
    "SEQUENCE_BLOCK",
    "Delivery",
    "Emitter",
    "EmitterConfig",
    "EmitterHealth",
    "EmitterState",
]
