"""The DIMSE handlers: each relays one operation to the PACS, answers what the PACS
answered, and records it.

Invariants:

* C-ECHO, C-FIND and C-STORE are recorded before the answer goes out: C-FIND responses
  are held (at most ``max_find_responses``) until the operation is recorded, so in
  fail-closed mode nothing is disclosed that is not recorded.
* C-GET and C-MOVE: see ``retrieve``.
* Statuses of the proxy's own (the rest is the PACS's, relayed): see
  docs/dicom-proxy.md, "Statuses".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import EventHandlerType

from integrations.dicomproxy.config import ProxyConfig
from integrations.dicomproxy.cutthrough import (
    StoreRelay,
    abandon_relays,
    enable_cut_through,
    take_relay,
)
from integrations.dicomproxy.identifiers import add_return_keys, strip_keys
from integrations.dicomproxy.operations import OperationKind
from integrations.dicomproxy.recording import Draft, Gate, Peer, identifier_of
from integrations.dicomproxy.retrieve import Retrieves
from integrations.dicomproxy.sopclasses import VERIFICATION
from integrations.dicomproxy.statuses import (
    BAD_DATASET,
    BAD_IDENTIFIER,
    PENDING,
    REFUSED_UNRECORDED,
    UPSTREAM_ERRORS,
    UPSTREAM_FAILED,
)
from integrations.dicomproxy.upstream import Upstream, UpstreamUnavailable

__all__ = ["Handlers"]

logger = logging.getLogger(__name__)


class Handlers:
    """The proxy's event handlers, bound to every inbound association."""

    def __init__(self, config: ProxyConfig, upstream: Upstream, gate: Gate) -> None:
        self._config = config
        self._up = upstream
        self._gate = gate
        self.retrieves = Retrieves(config, upstream, gate)
        # An ended association fires EVT_ABORTED and EVT_CONN_CLOSE, from two threads:
        # one at a time, so the second cannot release the PACS association the first is
        # still aborting (an A-RELEASE-RQ after half a data set, then the A-ABORT).
        self._ending = threading.RLock()

    def bindings(self) -> list[EventHandlerType]:
        return [
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_GET, self.retrieves.on_get),
            (evt.EVT_C_MOVE, self.retrieves.on_move),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_DIMSE_SENT, self.retrieves.on_sent),
            (evt.EVT_RELEASED, self.on_end),
            (evt.EVT_ABORTED, self.on_end),
            (evt.EVT_CONN_CLOSE, self.on_end),
        ]

    def prepare(self, assoc: Any) -> None:
        """Set up a new inbound association: C-STOREs are relayed as they arrive."""
        enable_cut_through(assoc, self._relay_store)

    # C-ECHO ---------------------------------------------------------------------------
    def on_echo(self, event: Any) -> Any:
        draft = Draft(OperationKind.ECHO, VERIFICATION, Peer.of(event.assoc))
        try:
            status = self._up.shared(event.assoc).send_c_echo(msg_id=event.request.MessageID)
            if not status:
                raise UpstreamUnavailable("no C-ECHO response from the PACS")
        except UPSTREAM_ERRORS as exc:
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
        identifier = identifier_of(event)
        draft = Draft(OperationKind.FIND, model, Peer.of(event.assoc)).request(identifier)
        if identifier is None:
            draft.proxy_error = "bad_identifier"
            self._gate.admit(draft.finish(BAD_IDENTIFIER))
            yield BAD_IDENTIFIER, None
            return
        try:
            answers, final = self._find_upstream(event, model, identifier, draft)
        except UPSTREAM_ERRORS as exc:
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
        # A shallow copy: only top-level return keys are added, and a deep copy of a
        # Dataset was a tenth of the proxy's CPU per C-FIND.
        query = Dataset({elem.tag: elem for elem in identifier.elements()})
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
            if cancelled or len(answers) >= limit or event.is_cancelled:
                if not cancelled:  # drain what the PACS sends until its final response
                    up.send_c_cancel(msg_id, query_model=model)
                cancelled = True
                continue
            draft.result(answer)
            if answer is not None:
                strip_keys(answer, added)
            answers.append((code, answer))
        raise UpstreamUnavailable("the PACS C-FIND ended without a final response")

    # C-STORE --------------------------------------------------------------------------
    def _relay_store(
        self, inbound: Any, context_id: int, command: bytes, msg_id: int
    ) -> StoreRelay | None:
        """Open the cut-through relay of a C-STORE whose command set just arrived, on the
        PACS association's context with the same abstract and transfer syntax; None when
        there is none (the instance is then stored and forwarded)."""
        try:
            up = self._up.shared(inbound)
        except UPSTREAM_ERRORS:
            return None
        theirs = _relay_contexts(inbound, up).get(context_id)
        if theirs is None:
            return None
        relay = StoreRelay(up, theirs)
        try:
            relay.open(command)
        except Exception:
            up.abort()  # part of a command may have gone: nothing may follow it
            raise
        return relay

    def on_store(self, event: Any) -> Any:
        draft = Draft(OperationKind.STORE, str(event.context.abstract_syntax), Peer.of(event.assoc))
        request = event.request
        relay = take_relay(event.assoc, request.MessageID)
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            draft.result(dataset)
        except Exception as exc:
            # The exception's type only: its text may quote element values (PHI).
            logger.warning(
                "C-STORE: undecodable dataset from %s (%s)", draft.peer.address, type(exc).__name__
            )
            draft.proxy_error = "bad_dataset"
            if relay is None:  # not forwarded
                self._gate.admit(draft.finish(BAD_DATASET))
                return BAD_DATASET
            dataset = None  # forwarded already: the PACS answers it
        try:
            if relay is not None:
                status = relay.result()
            else:
                status = self._up.shared(event.assoc).send_c_store(
                    dataset,
                    msg_id=request.MessageID,
                    originator_aet=request.MoveOriginatorApplicationEntityTitle or None,
                    originator_id=request.MoveOriginatorMessageID,
                )
            if not status:
                raise UpstreamUnavailable("no C-STORE response from the PACS")
        except UPSTREAM_ERRORS as exc:
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
        """Release the PACS association kept for this one (abort it if a C-STORE relay was
        left half-sent); record what was left open."""
        with self._ending:
            abandon_relays(event.assoc)
            self._up.drop(event.assoc)
            self.retrieves.abandon(event.assoc)


def _relay_contexts(inbound: Any, up: Any) -> dict[int, int]:
    """Inbound context id -> the PACS association's context id with the same abstract
    and transfer syntax; worked out once per pair of associations (building
    ``accepted_contexts`` validates every UID again)."""
    cached = getattr(inbound, "_relay_contexts", None)
    if cached is not None and cached[0] is up:
        return cast(dict[int, int], cached[1])
    theirs = {
        (str(cx.abstract_syntax), str(cx.transfer_syntax[0])): cx.context_id
        for cx in up.accepted_contexts
    }
    mapping = {
        cx.context_id: theirs[key]
        for cx in inbound.accepted_contexts
        if (key := (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))) in theirs
    }
    inbound._relay_contexts = (up, mapping)
    return mapping
