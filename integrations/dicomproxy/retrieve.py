"""C-GET and C-MOVE through the proxy: fetch from the PACS by C-GET, then send the
instances back (C-GET, same association) or to the destination (C-MOVE, a destination
from the proxy's own table; unknown ones get 0xA801 and nothing is fetched).

Invariants:

* pynetdicom needs the sub-operation count first, so the instances are fetched before
  the first is sent (at most ``max_retrieve_instances``, in memory).
* The PACS's own failures are kept: its failed sub-operations are added to the count and
  left "remaining", then its status is yielded, which pynetdicom answers with those
  counted as failed.
* The operation is recorded when every sub-operation is done and before pynetdicom
  sends the final response, with exactly that response's status and counts (taken from
  the pending responses it sent, ``EVT_DIMSE_SENT``). The instances have gone out by
  then: fail-closed can only withhold the final response (the association is aborted).
* A response that ends an operation some other way (0xA801, a failure, a cancel, no
  match) is recorded when it is sent; an association that ends with an operation still
  open records it with no status (``proxy_error="aborted"``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from pynetdicom import StoragePresentationContexts, build_context

from integrations.dicomproxy.config import ProxyConfig
from integrations.dicomproxy.operations import OperationKind, SubOperations
from integrations.dicomproxy.recording import Draft, Gate, Peer, identifier_of
from integrations.dicomproxy.sopclasses import MOVE_TO_GET, VERIFICATION
from integrations.dicomproxy.statuses import (
    ALL_SUB_OPERATIONS_FAILED,
    CANCEL,
    PENDING,
    SUB_OPERATIONS_WARNING,
    SUCCESS,
    UPSTREAM_ERRORS,
)
from integrations.dicomproxy.upstream import (
    MAX_CONTEXTS,
    Fetched,
    Upstream,
    UpstreamUnavailable,
)

__all__ = ["Retrieves"]

logger = logging.getLogger(__name__)


def _counts(command: Any) -> SubOperations | None:
    values = [command.get(f"NumberOf{k}Suboperations") for k in ("Completed", "Failed", "Warning")]
    if all(v is None for v in values):
        return None
    done, failed, warned = (int(v or 0) for v in values)
    return SubOperations(completed=done, failed=failed, warning=warned)


class Retrieves:
    """The C-GET and C-MOVE handlers and the bookkeeping of their open operations."""

    def __init__(self, config: ProxyConfig, upstream: Upstream, gate: Gate) -> None:
        self._config = config
        self._up = upstream
        self._gate = gate
        self._lock = threading.Lock()
        self._open: dict[tuple[int, int], Draft] = {}
        self._progress: dict[tuple[int, int], SubOperations] = {}

    def _open_draft(self, event: Any, kind: OperationKind) -> tuple[Draft, tuple[int, int]]:
        """Track a new operation, then read its identifier (an undecodable one raises:
        pynetdicom answers Cx11 and ``on_sent`` records it)."""
        draft = Draft(kind, str(event.context.abstract_syntax), Peer.of(event.assoc))
        key = self._track(event, draft)
        identifier = identifier_of(event)
        if identifier is None:
            draft.proxy_error = "bad_identifier"
            raise UpstreamUnavailable("undecodable identifier: not forwarded")
        draft.request(identifier)
        return draft, key

    def on_get(self, event: Any) -> Iterator[Any]:
        model = str(event.context.abstract_syntax)
        draft, key = self._open_draft(event, OperationKind.GET)
        storage = [
            build_context(str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
            for cx in event.assoc.accepted_contexts
            if cx.as_scu and str(cx.abstract_syntax) != model
        ]
        fetched = self._fetch(event, model, storage, draft)
        return self._relay(event, key, fetched)

    def on_move(self, event: Any) -> Iterator[Any]:
        model = str(event.context.abstract_syntax)
        draft, key = self._open_draft(event, OperationKind.MOVE)
        destination_aet = str(event.move_destination).strip()
        draft.move_destination = destination_aet
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
        contexts = [build_context(sop, ts) for sop, ts in sorted(pairs)][:MAX_CONTEXTS]
        where = (destination.host, destination.port, {"contexts": contexts or [
            build_context(VERIFICATION)
        ]})  # fmt: skip
        return self._relay(event, key, fetched, where)

    def _fetch(self, event: Any, model: str, storage: Any, draft: Draft) -> Fetched:
        try:
            fetched = self._up.fetch(
                event.identifier, model, storage, cancelled=lambda: event.is_cancelled
            )
        except UPSTREAM_ERRORS:
            draft.proxy_error = "upstream_unavailable"
            raise  # pynetdicom answers 0xC411 / 0xC511; on_sent records it
        for ds in fetched.datasets:
            draft.result(ds)
        return fetched

    def _relay(
        self,
        event: Any,
        key: tuple[int, int],
        fetched: Fetched,
        where: tuple[str, int, dict[str, Any]] | None = None,
    ) -> Iterator[Any]:
        """(Destination,) count, instances; then record, then the PACS's own failure or
        warning if it had one."""
        if where is not None:
            yield where
        code = fetched.final_status
        extra = fetched.upstream_failed or (0 if code == SUCCESS else 1)
        total = len(fetched.datasets) + extra
        yield total
        if total == 0:
            return
        for ds in fetched.datasets:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield 0xFF00, ds
        with self._lock:
            done = self._progress.get(key, SubOperations())
        if extra:
            final = code
            subs = SubOperations(
                completed=done.completed, failed=done.failed + extra, warning=done.warning
            )
        elif done.failed or done.warning:
            final = ALL_SUB_OPERATIONS_FAILED if done.failed == total else SUB_OPERATIONS_WARNING
            subs = done
        else:
            final, subs = SUCCESS, done
        if not self._settle(key, final, subs):
            event.assoc.abort()  # pynetdicom then sends no final response
            return
        if extra:
            yield fetched.status, fetched.identifier

    def on_sent(self, event: Any) -> None:
        """Follow C-GET/C-MOVE responses: counts from pending ones; a final one for an
        operation still open is recorded (nothing was disclosed: nothing to refuse)."""
        message = event.message
        if type(message).__name__ not in ("C_GET_RSP", "C_MOVE_RSP"):
            return
        command = message.command_set
        key = (id(event.assoc), int(command.MessageIDBeingRespondedTo))
        code = int(command.Status)
        if code in PENDING:
            counts = _counts(command)
            if counts is not None:
                with self._lock:
                    self._progress[key] = counts
            return
        self._settle(key, code, _counts(command))

    def _track(self, event: Any, draft: Draft) -> tuple[int, int]:
        key = (id(event.assoc), int(event.request.MessageID))
        with self._lock:
            self._open[key] = draft
            self._progress.pop(key, None)
        return key

    def _settle(self, key: tuple[int, int], status: int, subs: SubOperations | None) -> bool:
        """Record the open operation ``key``, if still open; True if it may be answered."""
        with self._lock:
            draft = self._open.pop(key, None)
            self._progress.pop(key, None)
        if draft is None:
            return True
        return self._gate.admit(draft.finish(status, subs))

    def abandon(self, assoc: Any) -> None:
        """Record, with no status, the operations of ``assoc`` left open."""
        with self._lock:
            keys = [k for k in self._open if k[0] == id(assoc)]
            drafts = [self._open.pop(k) for k in keys]
            for k in keys:
                self._progress.pop(k, None)
        for draft in drafts:
            draft.proxy_error = draft.proxy_error or "aborted"
            self._gate.admit(draft.finish(None))
