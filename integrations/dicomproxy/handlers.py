"""The DIMSE handlers: each relays one operation to the PACS, answers what the PACS
answered, and records it.

Invariants:

* C-ECHO, C-FIND and C-STORE are recorded before the answer goes out: C-FIND responses
  are held (at most ``max_find_responses``) until the operation is recorded, so in
  fail-closed mode nothing is disclosed that is not recorded.
* C-GET and C-MOVE are recorded when pynetdicom is about to send their final response
  (``EVT_DIMSE_SENT``), with its exact status and sub-operation counts; the instances
  have gone out by then, so fail-closed can only withhold that final response (the
  association is aborted).
* An association that ends with an operation still open records it with no status
  (``proxy_error="aborted"``).
* Statuses of the proxy's own (the rest is the PACS's, relayed): see
  docs/dicom-proxy.md, "Statuses".
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator
from typing import Any, Final

from pydicom.dataset import Dataset
from pynetdicom import StoragePresentationContexts, build_context, evt
from pynetdicom.events import EventHandlerType

from integrations.dicomproxy.config import ProxyConfig
from integrations.dicomproxy.identifiers import add_return_keys, strip_keys
from integrations.dicomproxy.operations import OperationKind, SubOperations
from integrations.dicomproxy.recording import Draft, Gate, Peer
from integrations.dicomproxy.sopclasses import MOVE_TO_GET, VERIFICATION
from integrations.dicomproxy.upstream import Fetched, Upstream, UpstreamUnavailable

__all__ = ["Handlers"]

logger = logging.getLogger(__name__)

PENDING: Final = frozenset({0xFF00, 0xFF01})
#: Answered when the recorder refuses (fail-closed) a C-FIND or C-STORE: "Refused: Out
#: of Resources", a transient refusal the SCU may retry.
REFUSED_UNRECORDED: Final = 0xA700
#: Answered when the PACS cannot be reached or fails mid-operation: pynetdicom's own
#: "unable to process" failures (the C-GET/C-MOVE ones it sends when a handler raises).
UPSTREAM_FAILED: Final = {
    OperationKind.FIND: 0xC311,
    OperationKind.STORE: 0xC211,
    OperationKind.GET: 0xC411,
    OperationKind.MOVE: 0xC511,
}
_UPSTREAM_ERRORS: Final = (UpstreamUnavailable, ValueError, RuntimeError, OSError)


class Handlers:
    """The proxy's event handlers, bound to every inbound association."""

    def __init__(self, config: ProxyConfig, upstream: Upstream, gate: Gate) -> None:
        self._config = config
        self._up = upstream
        self._gate = gate
        self._lock = threading.Lock()
        self._open: dict[tuple[int, int], Draft] = {}

    def bindings(self) -> list[EventHandlerType]:
        return [
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_GET, self.on_get),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_DIMSE_SENT, self.on_sent),
            (evt.EVT_RELEASED, self.on_end),
            (evt.EVT_ABORTED, self.on_end),
            (evt.EVT_CONN_CLOSE, self.on_end),
        ]

    # C-ECHO ---------------------------------------------------------------------------
    def on_echo(self, event: Any) -> Any:
        draft = Draft(OperationKind.ECHO, VERIFICATION, Peer.of(event.assoc))
        try:
            status = self._up.shared(event.assoc).send_c_echo(msg_id=event.request.MessageID)
            if not status:
                raise UpstreamUnavailable("no C-ECHO response from the PACS")
        except _UPSTREAM_ERRORS as exc:
            logger.warning("C-ECHO: the PACS failed (%s): aborting the association", exc)
            self._up.drop(event.assoc)
            draft.proxy_error = "upstream_unavailable"
            self._gate.admit(draft.finish(None))
            event.assoc.abort()
            return 0x0000
        if not self._gate.admit(draft.finish(int(status.Status))):
            event.assoc.abort()
        return status

    # C-FIND ---------------------------------------------------------------------------
    def on_find(self, event: Any) -> Iterator[tuple[Any, Dataset | None]]:
        model = str(event.context.abstract_syntax)
        identifier = event.identifier
        draft = Draft(OperationKind.FIND, model, Peer.of(event.assoc)).request(identifier)
        try:
            answers, final = self._find_upstream(event, model, identifier, draft)
        except _UPSTREAM_ERRORS as exc:
            logger.warning("C-FIND: the PACS failed (%s)", exc)
            self._up.drop(event.assoc)
            draft.proxy_error = "upstream_unavailable"
            self._gate.admit(draft.finish(UPSTREAM_FAILED[OperationKind.FIND]))
            yield UPSTREAM_FAILED[OperationKind.FIND], None
            return
        code = int(final.Status)
        if not self._gate.admit(draft.finish(code)):
            yield REFUSED_UNRECORDED, None
            return
        for pending, answer in answers:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield pending, answer
        if code != 0x0000:
            yield final, None

    def _find_upstream(
        self, event: Any, model: str, identifier: Dataset, draft: Draft
    ) -> tuple[list[tuple[int, Dataset | None]], Dataset]:
        query = copy.deepcopy(identifier)
        added = add_return_keys(query)
        limit = self._config.limits.max_find_responses
        up = self._up.shared(event.assoc)
        msg_id = event.request.MessageID
        answers: list[tuple[int, Dataset | None]] = []
        cancelled = False
        for status, answer in up.send_c_find(query, model, msg_id=msg_id):
            if not status:
                raise UpstreamUnavailable("the PACS C-FIND failed, timed out or aborted")
            code = int(status.Status)
            if code not in PENDING:
                if len(answers) >= limit:
                    draft.proxy_error = "too_many_responses"
                    status = Dataset()
                    status.Status = REFUSED_UNRECORDED
                return answers, status
            if len(answers) >= limit or (event.is_cancelled and not cancelled):
                if not cancelled:
                    up.send_c_cancel(msg_id, query_model=model)
                cancelled = True
                continue
            draft.result(answer)
            if answer is not None:
                strip_keys(answer, added)
            answers.append((code, answer))
        raise UpstreamUnavailable("the PACS C-FIND ended without a final response")

    # C-GET and C-MOVE -----------------------------------------------------------------
    def on_get(self, event: Any) -> Iterator[Any]:
        model = str(event.context.abstract_syntax)
        draft = Draft(OperationKind.GET, model, Peer.of(event.assoc)).request(event.identifier)
        self._track(event, draft)
        storage = [
            build_context(str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
            for cx in event.assoc.accepted_contexts
            if cx.as_scu and str(cx.abstract_syntax) != model
        ]
        fetched = self._fetch(event, model, storage, draft)
        return self._relay(event, fetched)

    def on_move(self, event: Any) -> Iterator[Any]:
        model = str(event.context.abstract_syntax)
        draft = Draft(OperationKind.MOVE, model, Peer.of(event.assoc)).request(event.identifier)
        destination_aet = str(event.move_destination).strip()
        draft.move_destination = destination_aet
        self._track(event, draft)
        destination = self._config.destinations.get(destination_aet)
        if destination is None:
            logger.warning("C-MOVE to unknown destination %r: 0xA801", destination_aet)
            draft.proxy_error = "move_destination_unknown"
            return iter([(None, None)])
        get_model = MOVE_TO_GET.get(model)
        if get_model is None:
            draft.proxy_error = "unsupported_model"
            raise UpstreamUnavailable(f"no C-GET model for C-MOVE model {model}")
        fetched = self._fetch(event, get_model, StoragePresentationContexts, draft)
        pairs = {
            (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in fetched.datasets
        }
        contexts = [build_context(sop, ts) for sop, ts in sorted(pairs)] or [
            build_context(VERIFICATION)
        ]
        return self._relay_move(event, (destination.host, destination.port, contexts), fetched)

    def _fetch(self, event: Any, model: str, storage: Any, draft: Draft) -> Fetched:
        try:
            fetched = self._up.fetch(
                event.identifier, model, storage, cancelled=lambda: event.is_cancelled
            )
        except _UPSTREAM_ERRORS:
            draft.proxy_error = "upstream_unavailable"
            raise  # pynetdicom answers 0xC411 / 0xC511; on_sent records it
        for ds in fetched.datasets:
            draft.result(ds)
        return fetched

    def _relay_move(
        self, event: Any, where: tuple[str, int, list[Any]], fetched: Fetched
    ) -> Iterator[Any]:
        host, port, contexts = where
        yield host, port, {"contexts": contexts}
        yield from self._relay(event, fetched)

    @staticmethod
    def _relay(event: Any, fetched: Fetched) -> Iterator[Any]:
        """Count, instances, then the PACS's own failure or warning if it had one (the
        PACS's failed sub-operations are kept as "remaining", which pynetdicom reports
        as failed along with that status)."""
        code = fetched.final_status
        extra = fetched.upstream_failed or (0 if code == 0x0000 else 1)
        yield len(fetched.datasets) + extra
        for ds in fetched.datasets:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, ds
        if extra:
            yield fetched.status, fetched.identifier

    def on_sent(self, event: Any) -> None:
        """Record a C-GET or C-MOVE when its final response is about to be sent."""
        message = event.message
        if type(message).__name__ not in ("C_GET_RSP", "C_MOVE_RSP"):
            return
        command = message.command_set
        code = int(command.Status)
        if code in PENDING:
            return
        with self._lock:
            draft = self._open.pop((id(event.assoc), int(command.MessageIDBeingRespondedTo)), None)
        if draft is None:
            return
        counts = [
            command.get(f"NumberOf{k}Suboperations") for k in ("Completed", "Failed", "Warning")
        ]
        subs = None
        if any(c is not None for c in counts):
            done, failed, warned = (int(c or 0) for c in counts)
            subs = SubOperations(completed=done, failed=failed, warning=warned)
        if not self._gate.admit(draft.finish(code, subs)):
            event.assoc.abort()

    def _track(self, event: Any, draft: Draft) -> None:
        with self._lock:
            self._open[(id(event.assoc), int(event.request.MessageID))] = draft

    # C-STORE --------------------------------------------------------------------------
    def on_store(self, event: Any) -> Any:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        draft = Draft(OperationKind.STORE, str(event.context.abstract_syntax), Peer.of(event.assoc))
        draft.result(dataset)
        request = event.request
        try:
            status = self._up.shared(event.assoc).send_c_store(
                dataset,
                msg_id=request.MessageID,
                originator_aet=request.MoveOriginatorApplicationEntityTitle or None,
                originator_id=request.MoveOriginatorMessageID,
            )
            if not status:
                raise UpstreamUnavailable("no C-STORE response from the PACS")
        except _UPSTREAM_ERRORS as exc:
            logger.warning("C-STORE: the PACS failed (%s)", exc)
            self._up.drop(event.assoc)
            draft.proxy_error = "upstream_unavailable"
            code = UPSTREAM_FAILED[OperationKind.STORE]
            self._gate.admit(draft.finish(code))
            return code
        if not self._gate.admit(draft.finish(int(status.Status))):
            return REFUSED_UNRECORDED
        return status

    # association end ------------------------------------------------------------------
    def on_end(self, event: Any) -> None:
        """Release the PACS association kept for this one; record what was left open."""
        self._up.drop(event.assoc)
        key = id(event.assoc)
        with self._lock:
            left = [k for k in self._open if k[0] == key]
            drafts = [self._open.pop(k) for k in left]
        for draft in drafts:
            draft.proxy_error = draft.proxy_error or "aborted"
            self._gate.admit(draft.finish(None))
