"""Parse and map a batch of ATNA syslog messages: the pure, CPU-bound half of the receiver.

``parse_batch(raws, default_facility, codec)`` turns each raw RFC 5424 message into
either the events it maps to, validated and encoded but for their producer stamp
(``Parsed.events``, ``Codec.prepare``: the event loop only stamps and sends them), or the
reason it must be kept (``Parsed.reason``, ``detail``, ``field``), in the order given. It
does no I/O and keeps no state, so the receiver runs it in a worker process
(``concurrent.futures.ProcessPoolExecutor``) or in its own event loop, with identical
results; arguments and results are plain picklable data (the codec's schemas hold
``MappingProxyType`` values, pickled as dicts and rebuilt as ``MappingProxyType`` by
``multiprocessing``'s pickler, see below).

A message whose events are not all valid is kept whole (all or nothing: no event of it is
emitted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from types import MappingProxyType

from producers.atna.dicom_audit import MSGID, events_from_dicom
from producers.atna.rfc5424 import parse_syslog
from producers.codec import Codec, PreparedEvent
from producers.errors import AtnaParseError, AtnaUnmappableError, EventValidationError

__all__ = ["Parsed", "parse_batch", "warm_up"]


@dataclass(frozen=True, slots=True)
class Parsed:
    """The events of one message, or why it is kept (``reason`` set, ``events`` empty)."""

    events: tuple[PreparedEvent, ...] = ()
    reason: str | None = None
    detail: str = ""
    field: str | None = None


def _mapping_proxy(items: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(items)


def _reduce_mapping_proxy(
    proxy: MappingProxyType[str, str],
) -> tuple[Callable[[dict[str, str]], Mapping[str, str]], tuple[dict[str, str]]]:
    return _mapping_proxy, (dict(proxy),)


def register_pickling() -> None:
    """Let multiprocessing pickle events (idempotent).

    Events carry read-only MappingProxyType fields, which the standard pickler refuses.
    This registers a reducer with multiprocessing's pickler only (not copyreg); the
    receiver calls it before starting its pool, and each worker as its initializer.
    """
    ForkingPickler.register(MappingProxyType, _reduce_mapping_proxy)


def parse_one(raw: bytes, default_facility: str | None, codec: Codec) -> Parsed:
    try:
        message = parse_syslog(raw)
        if message.msgid != MSGID:
            raise AtnaParseError(
                f"MSGID is {message.msgid!r}, not {MSGID!r} (an IHE ATNA audit record)",
                reason="unexpected_msgid",
            )
        events = events_from_dicom(message.msg, default_facility=default_facility, check=False)
        # All or nothing: every event is validated (prepared) before any is emitted.
        prepared: list[PreparedEvent] = []
        for index, event in enumerate(events):
            try:
                prepared.append(codec.prepare(event))
            except EventValidationError as exc:
                detail = str(exc) if len(events) == 1 else f"event {index}: {exc}"
                return Parsed(reason="invalid_event", detail=detail, field=exc.field)
    except (AtnaParseError, AtnaUnmappableError) as exc:
        return Parsed(reason=exc.reason, detail=str(exc), field=getattr(exc, "field", None))
    except Exception as exc:  # a bug: the receiver keeps the message, never loses it
        return Parsed(reason="internal_error", detail=repr(exc)[:500])
    return Parsed(events=tuple(prepared))


def parse_batch(
    raws: Sequence[bytes | None], default_facility: str | None, codec: Codec
) -> list[Parsed]:
    """``parse_one`` of each message; ``None`` (a message already refused) gives a
    placeholder ``Parsed()`` the caller ignores."""
    return [Parsed() if raw is None else parse_one(raw, default_facility, codec) for raw in raws]


def warm_up() -> Mapping[str, str]:
    """Run in a fresh worker so its imports happen at start, not on the first message."""
    return MappingProxyType({"ready": MSGID})
