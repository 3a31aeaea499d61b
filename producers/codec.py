"""Avro single-object encoding of audit events.

Invariant: every message this codec writes is ``C3 01`` + the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form + the Avro
binary body, so each message names its writer schema. ``decode(encode(e)) == e``
for every valid event, and ``decode`` either returns a validated event or raises
``DecodeError`` with a stable ``reason`` code (never another exception type).

``prepare(e)`` validates and encodes an event once, before it is stamped, where the CPU
is cheapest for the host (a parse worker, the calling thread); the emitter then only
splices its producer id and sequence number in: for every valid unstamped event,
``prepare(e).encode_with(p, n) == encode(e.stamped(producer_id=p, producer_seq=n))``
(Avro's binary encoding of a record is its fields' encodings in order, and every
shipped schema has ``producer_id`` and ``producer_seq`` right after ``event_id`` and
``event_time``; ``Codec`` checks that of each schema it writes with).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

import fastavro

from producers.avrogen import Decoder, Encoder, compile_schema
from producers.errors import DecodeError, EventValidationError, RegistryValidationError
from producers.events import (
    MAX_FUTURE_SKEW,
    AuditEvent,
    CriticalResultRelay,
    Record,
    event_key,
    from_record,
    schema_name,
    to_record,
    validate_record,
    validated_record,
)
from producers.registry import (
    REGISTRY_SCHEMA_NAME,
    RegistryChange,
    registry_from_record,
    validate_registry_record,
    validated_registry_record,
)
from producers.writerschemas import (
    WriterSchema,
    load_shipped_schemas,
    schema_fingerprint,
    stamp_in_place,
)

#: Avro single-object encoding marker.
MAGIC: Final = b"\xc3\x01"
HEADER_LEN: Final = 10

# Stable reason codes carried by DecodeError (and by quarantine rows).
REASON_TOO_SHORT: Final = "too_short"
REASON_BAD_MAGIC: Final = "bad_magic"
REASON_UNKNOWN_SCHEMA: Final = "unknown_schema"
REASON_MALFORMED_AVRO: Final = "malformed_avro"
REASON_TRAILING_BYTES: Final = "trailing_bytes"
REASON_INVALID_EVENT: Final = "invalid_event"
REASON_INVALID_UTF8: Final = "invalid_utf8"
REASON_TIME_OUT_OF_RANGE: Final = "time_out_of_range"

#: Event fields holding instants; a bad value there gets REASON_TIME_OUT_OF_RANGE.
_TIME_FIELDS: Final = ("event_time", "identified_at", "communicated_at", "acknowledged_at")

__all__ = [
    "Codec",
    "PreparedEvent",
    "WriterSchema",
    "from_record",
    "load_shipped_schemas",
    "registry_codec",
    "schema_fingerprint",
    "to_record",
]

#: What stands for a stamp while an unstamped event is validated (a valid producer id).
_PROBE_STAMP: Final = ("prepared", 0)


def _zigzag(n: int) -> bytes:
    """Avro's encoding of a long: zig-zag, then base-128 varint, low group first."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _skip_long(data: bytes, pos: int) -> int:
    while data[pos] & 0x80:
        pos += 1
    return pos + 1


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedEvent:
    """One event validated and Avro-encoded but for its producer stamp (``Codec.prepare``).

    ``head`` is the single-object header with ``event_id`` and ``event_time``; ``tail``
    every field after ``producer_seq``. ``producer_id``/``producer_seq`` are the stamp
    the event already carried, if any (the emitter keeps it, as ``Emitter.emit`` does).
    Plain bytes and strings: cheap to pickle across processes. Make them with
    ``Codec.prepare`` only: the emitter sends ``head`` and ``tail`` as they are (and the
    consumer still validates every message it reads).
    """

    event_id: str
    #: A CriticalResultRelay (the relay topic); every other kind goes to the access topic.
    relay: bool
    #: The Kafka key (``event_key``; a registry change's record id), UTF-8.
    key: bytes
    head: bytes
    tail: bytes
    producer_id: str | None = None
    producer_seq: int | None = None
    #: A RegistryChange: it goes to the registry topic.
    registry: bool = False

    def stamped_as(self, *, producer_id: str, producer_seq: int) -> PreparedEvent:
        """The same event carrying this stamp (a re-send keeps its first number)."""
        return replace(self, producer_id=producer_id, producer_seq=producer_seq)

    def encode_with(self, producer_id: str, producer_seq: int) -> bytes:
        """The message ``Codec.encode`` writes for the event stamped with these."""
        if not 0 <= producer_seq < 2**63:
            raise EventValidationError(
                "producer_seq: must be a non-negative 64-bit integer", field="producer_seq"
            )
        pid = producer_id.encode("utf-8")
        return b"".join((self.head, _zigzag(len(pid)), pid, _zigzag(producer_seq), self.tail))

    def encoded_size(self, producer_id: str, producer_seq: int) -> int:
        pid = len(producer_id.encode("utf-8"))
        return (
            len(self.head) + len(_zigzag(pid)) + pid + len(_zigzag(producer_seq)) + len(self.tail)
        )


class Codec:
    """Encodes events with the newest shipped schema of their type; decodes any known one."""

    __slots__ = (
        "_by_fingerprint",
        "_decoders",
        "_encoders",
        "_fastavro",
        "_preparable",
        "_writer_for",
    )

    def __init__(
        self, writer_schemas: Iterable[WriterSchema] | None = None, *, generated: bool = True
    ) -> None:
        """``generated=False`` leaves every message to fastavro (the generated code's
        reference, measured beside it by ``benchmarks/codec.py``)."""
        known = tuple(writer_schemas) if writer_schemas is not None else load_shipped_schemas()
        self._by_fingerprint: dict[bytes, WriterSchema] = {s.fingerprint: s for s in known}
        # The last schema listed for a name is the one new events are written with.
        self._writer_for: dict[str, WriterSchema] = {s.full_name: s for s in known}
        # fastavro wants a plain dict; copy each parsed schema once, not per message.
        self._fastavro: dict[bytes, dict[str, object]] = {
            s.fingerprint: dict(s.parsed) for s in known
        }
        # The fast path: code generated per schema; fastavro answers whatever it refuses.
        self._encoders: dict[bytes, Encoder] = {}
        self._decoders: dict[bytes, Decoder] = {}
        for s in known if generated else ():
            if (compiled := compile_schema(self._fastavro[s.fingerprint])) is not None:
                self._encoders[s.fingerprint], self._decoders[s.fingerprint] = compiled
        # Writer schemas whose fields 2 and 3 are the stamp: prepare() can split them.
        self._preparable: frozenset[bytes] = frozenset(
            s.fingerprint for s in self._writer_for.values() if stamp_in_place(s.parsed)
        )

    def __reduce__(self) -> tuple[Callable[..., Codec], tuple[tuple[WriterSchema, ...], bool]]:
        """Pickled as its schemas (a parse worker rebuilds the generated code)."""
        return _codec_of, (self.schemas, bool(self._encoders))

    @property
    def schemas(self) -> tuple[WriterSchema, ...]:
        return tuple(self._by_fingerprint.values())

    def writer_schema(self, event: AuditEvent | RegistryChange) -> WriterSchema:
        name = REGISTRY_SCHEMA_NAME if isinstance(event, RegistryChange) else schema_name(event)
        schema = self._writer_for.get(name)
        if schema is None:
            raise EventValidationError(
                f"this codec has no writer schema for {name}", field="<event>"
            )
        return schema

    def encode(self, event: AuditEvent | RegistryChange) -> bytes:
        """Validate and encode one event or registry change; raises ``EventValidationError``
        (``RegistryValidationError`` for a change) when invalid."""
        if isinstance(event, RegistryChange):
            return self._write(self.writer_schema(event), validated_registry_record(event))
        record = validated_record(event)  # type checks, then the record rules
        return self._write(self.writer_schema(event), record)

    def _write(self, schema: WriterSchema, record: Record) -> bytes:
        """The single-object message of a validated record."""
        encode = self._encoders.get(schema.fingerprint)
        if encode is not None:
            try:
                return b"".join((MAGIC, schema.fingerprint, encode(record)))
            except Exception:  # noqa: S110 - fastavro's own answer (bytes or its error) follows
                pass
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(schema.fingerprint)
        try:
            fastavro.schemaless_writer(buf, self._fastavro[schema.fingerprint], record)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise EventValidationError(f"cannot encode event: {exc}", field="<event>") from exc
        return buf.getvalue()

    def prepare(self, event: AuditEvent | RegistryChange) -> PreparedEvent:
        """Validate and encode an event (or a registry change) but for its stamp; raises
        ``EventValidationError`` (``RegistryValidationError`` for a change).

        An unstamped event is validated as it will be stamped (any valid producer id, a
        sequence number in range: the emitter checks its own id once).
        """
        stamp = None
        if event.producer_id is not None and event.producer_seq is not None:
            stamp = (event.producer_id, event.producer_seq)
        probe = None if stamp else _PROBE_STAMP
        if isinstance(event, RegistryChange):
            record = validated_registry_record(event, stamp=probe)
            key = event.record.record_id
        else:
            record = validated_record(event, stamp=probe)
            key = event_key(event)
        schema = self.writer_schema(event)
        if schema.fingerprint not in self._preparable:
            raise EventValidationError(
                f"{schema.full_name} does not have the stamp fields in place",
                field="<event>",
            )
        record["producer_id"], record["producer_seq"] = "", 0
        data = self._write(schema, record)
        length, pos = _read_long(data, HEADER_LEN)  # event_id: a string
        pos = _skip_long(data, pos + length)  # event_time: a long
        if data[pos : pos + 2] != b"\x00\x00":  # "" and 0, as written just above
            raise EventValidationError("cannot locate the stamp fields", field="<event>")
        return PreparedEvent(
            event_id=str(event.event_id),
            relay=isinstance(event, CriticalResultRelay),
            registry=isinstance(event, RegistryChange),
            key=key.encode("utf-8"),
            head=data[:pos],
            tail=data[pos + 2 :],
            producer_id=None if stamp is None else stamp[0],
            producer_seq=None if stamp is None else stamp[1],
        )

    def decode_record(self, data: bytes) -> tuple[WriterSchema, Record]:
        """Decode the Avro body to a plain record, without event validation."""
        if len(data) < HEADER_LEN:
            raise DecodeError(
                f"message is {len(data)} bytes, shorter than the {HEADER_LEN}-byte header",
                reason=REASON_TOO_SHORT,
            )
        if data[:2] != MAGIC:
            raise DecodeError(
                f"message starts with {data[:2].hex()}, not the single-object marker c301",
                reason=REASON_BAD_MAGIC,
            )
        fp = bytes(data[2:HEADER_LEN])
        schema = self._by_fingerprint.get(fp)
        if schema is None:
            raise DecodeError(
                f"unknown writer schema fingerprint {fp.hex()}", reason=REASON_UNKNOWN_SCHEMA
            )
        decode = self._decoders.get(fp)
        if decode is not None:
            try:
                fast, end = decode(data, HEADER_LEN)
                if end == len(data):
                    return schema, fast
            except Exception:  # noqa: S110 - fastavro's own answer (record or error) follows
                pass
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)
        try:
            record = fastavro.schemaless_reader(buf, self._fastavro[fp], None)
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"a string in the {schema.full_name} body is not valid UTF-8 "
                f"(byte {exc.start} of that string)",
                reason=REASON_INVALID_UTF8,
            ) from exc
        except (OverflowError, OSError) as exc:  # absurd timestamps do not fit a datetime
            raise DecodeError(
                f"a timestamp in the {schema.full_name} body is out of range: {exc}"[:500],
                reason=REASON_TIME_OUT_OF_RANGE,
            ) from exc
        except Exception as exc:  # fastavro raises many kinds on hostile bytes
            raise DecodeError(
                f"malformed Avro body for {schema.full_name}: {type(exc).__name__}: {exc}"[:500],
                reason=REASON_MALFORMED_AVRO,
            ) from exc
        if buf.tell() != len(data):
            raise DecodeError(
                f"{len(data) - buf.tell()} trailing bytes after the Avro body",
                reason=REASON_TRAILING_BYTES,
            )
        if not isinstance(record, dict):
            raise DecodeError("Avro body is not a record", reason=REASON_MALFORMED_AVRO)
        return schema, record

    def decode_valid(
        self,
        data: bytes,
        *,
        now: datetime | None = None,
        max_future_skew: timedelta = MAX_FUTURE_SKEW,
    ) -> tuple[WriterSchema, Record]:
        """Decode and validate one message, as a plain record (the consumer's hot path).

        Raises ``DecodeError`` with a reason code; event times later than ``now`` plus
        ``max_future_skew`` are ``time_out_of_range``.
        """
        schema, record = self.decode_record(data)
        check = (
            _validate_registry_named
            if schema.full_name == REGISTRY_SCHEMA_NAME
            else validate_record
        )
        try:
            check(schema.full_name, record, now=now, max_future_skew=max_future_skew)
        except EventValidationError as exc:
            reason = REASON_INVALID_EVENT
            if exc.field.split("[")[0] in _TIME_FIELDS or exc.field.endswith("].at"):
                reason = REASON_TIME_OUT_OF_RANGE
            raise DecodeError(str(exc), reason=reason) from exc
        return schema, record

    def decode(self, data: bytes, *, now: datetime | None = None) -> AuditEvent:
        """Decode and validate one message; raises ``DecodeError`` with a reason code."""
        schema, record = self.decode_valid(data, now=now)
        if schema.full_name == REGISTRY_SCHEMA_NAME:
            raise DecodeError(
                "the message is a registry change, not an audit event (decode_change)",
                reason=REASON_INVALID_EVENT,
            )
        try:
            return from_record(schema.full_name, record)
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(
                f"record does not map to an event: {exc}", reason=REASON_INVALID_EVENT
            ) from exc

    def decode_change(self, data: bytes, *, now: datetime | None = None) -> RegistryChange:
        """Decode and validate one registry change; raises ``DecodeError`` with a reason
        code (``invalid_event`` for an audit event: decode that with ``decode``)."""
        schema, record = self.decode_valid(data, now=now)
        if schema.full_name != REGISTRY_SCHEMA_NAME:
            raise DecodeError(
                f"the message is a {schema.full_name}, not a registry change",
                reason=REASON_INVALID_EVENT,
            )
        try:
            return registry_from_record(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(
                f"record does not map to a registry change: {exc}", reason=REASON_INVALID_EVENT
            ) from exc


def _codec_of(writer_schemas: tuple[WriterSchema, ...], generated: bool) -> Codec:
    return Codec(writer_schemas, generated=generated)


def registry_codec() -> Codec:
    """A codec that reads and writes registry changes as well as every audit event: the
    default ``Codec()``, which knows every shipped schema (kept for its callers)."""
    return Codec()


def _validate_registry_named(
    full_name: str, record: Record, *, now: datetime | None, max_future_skew: timedelta
) -> None:
    """``validate_registry_record`` in the shape of ``validate_record`` (full name first)."""
    if full_name != REGISTRY_SCHEMA_NAME:
        raise RegistryValidationError(f"no registry change for schema {full_name}", field="<event>")
    validate_registry_record(record, now=now, max_future_skew=max_future_skew)
