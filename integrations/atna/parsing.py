"""Parse and map a batch of ATNA syslog messages: the pure, CPU-bound half of the receiver.

``parse_batch(raws, senders, default_facility, codec, policy)`` turns each raw syslog
message (RFC 5424 or RFC 3164, with any MSGID whose MSG is a DICOM AuditMessage:
``syslog``), received from the authenticated ``sender`` (``senders``: ``tls:<CN>`` or
``udp``), into either the events it maps to, validated and encoded but for their producer
stamp
(``Parsed.events``, ``Codec.prepare``: the event loop only stamps and sends them), or the
reason it must be kept (``Parsed.reason``, ``detail``, ``field``), in the order given. It
does no I/O and keeps no state, so the receiver runs it in a worker process
(``concurrent.futures.ProcessPoolExecutor``) or in its own event loop, with identical
results; arguments and results are plain picklable data (the codec's schemas hold
``MappingProxyType`` values, pickled as dicts and rebuilt as ``MappingProxyType`` by
``multiprocessing``'s pickler, see below).

A message whose events are not all valid is kept whole (all or nothing: no event of it is
emitted). A message its sender may not send (``senders.SenderPolicy.refusal``: an
AuditSourceID not listed for the sender, or one that names the ledger itself) is kept
with that reason before any event is made. Each event's id is namespaced by its sender
(``senders.sender_event_id``) and its ``details`` (where the kind has them) carry the
sender as ``atna_sender``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from multiprocessing.reduction import ForkingPickler
from types import MappingProxyType

from integrations.atna.dicom_audit import MSGID, MappedEvent, map_audit_message
from integrations.atna.senders import SenderPolicy, sender_event_id
from integrations.atna.syslog import audit_message, parse_any
from integrations.errors import AtnaParseError, AtnaUnmappableError
from producers import AuditLogUsed, Codec, EventValidationError, PreparedEvent

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


def _namespaced(event: MappedEvent, sender: str) -> MappedEvent:
    event_id = sender_event_id(sender, event.event_id)
    if isinstance(event, AuditLogUsed):
        return replace(event, event_id=event_id)
    details = MappingProxyType({**event.details, "atna_sender": sender})
    return replace(event, event_id=event_id, details=details)


def parse_one(
    raw: bytes,
    sender: str,
    default_facility: str | None,
    codec: Codec,
    policy: SenderPolicy,
) -> Parsed:
    try:
        message = parse_any(raw)
        audit, xml = audit_message(message)
        events = map_audit_message(audit, xml, default_facility=default_facility, check=False)
        refused = policy.refusal(sender, audit.source_id, {e.facility.id for e in events})
        if refused is not None:
            return Parsed(reason=refused[0], detail=refused[1], field="AuditSourceID")
        # All or nothing: every event is validated (prepared) before any is emitted.
        prepared: list[PreparedEvent] = []
        for index, event in enumerate(events):
            try:
                prepared.append(codec.prepare(_namespaced(event, sender)))
            except EventValidationError as exc:
                detail = str(exc) if len(events) == 1 else f"event {index}: {exc}"
                return Parsed(reason="invalid_event", detail=detail, field=exc.field)
    except (AtnaParseError, AtnaUnmappableError) as exc:
        return Parsed(reason=exc.reason, detail=str(exc), field=getattr(exc, "field", None))
    except Exception as exc:  # a bug: the receiver keeps the message, never loses it
        return Parsed(reason="internal_error", detail=repr(exc)[:500])
    return Parsed(events=tuple(prepared))


def parse_batch(
    raws: Sequence[bytes | None],
    senders: Sequence[str],
    default_facility: str | None,
    codec: Codec,
    policy: SenderPolicy,
) -> list[Parsed]:
    """``parse_one`` of each message; ``None`` (a message already refused) gives a
    placeholder ``Parsed()`` the caller ignores."""
    return [
        Parsed() if raw is None else parse_one(raw, sender, default_facility, codec, policy)
        for raw, sender in zip(raws, senders, strict=True)
    ]


def warm_up() -> Mapping[str, str]:
    """Run in a fresh worker so its imports happen at start, not on the first message."""
    return MappingProxyType({"ready": MSGID})
