"""A bounded, fsynced, append-only local spool for events Kafka cannot take right now.

Invariant: once ``Spool.append`` has returned, each appended record is on disk and
``read`` returns it, in append order and across any number of restarts, until ``ack`` has
persisted a cursor past it; a damaged spool is repaired on ``open`` and never stops its
host. Delivery is at least once: the identical bytes sent again after a crash are a
duplicate the ledger recognises.

``Spool`` (``core``) composes ``format`` (segment headers and record framing),
``segments`` (the segment files), ``recovery`` (``open`` after a crash), ``markers``
(the cursor and sequence files), ``budget`` (the bound) and ``producers.files`` (fsync,
atomic replace, the directory lock). This package imports only the rest of ``producers``.
The on-disk layout: docs/design/spool.md.
"""

from producers.files import atomic_write
from producers.spool.core import DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES, Spool
from producers.spool.format import (
    FORMAT_VERSION,
    FRAME_LEN,
    HEADER_LEN,
    MAGIC,
    MAX_BODY_BYTES,
    SpoolEntry,
    SpoolPosition,
    SpoolRecord,
    encode_record,
    record_size,
)
from producers.spool.recovery import RecoveryReport

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_SEGMENT_BYTES",
    "FORMAT_VERSION",
    "FRAME_LEN",
    "HEADER_LEN",
    "MAGIC",
    "MAX_BODY_BYTES",
    "RecoveryReport",
    "Spool",
    "SpoolEntry",
    "SpoolPosition",
    "SpoolRecord",
    "atomic_write",
    "encode_record",
    "record_size",
]
