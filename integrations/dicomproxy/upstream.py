"""The proxy's side towards the PACS: associations, one per inbound association for
C-ECHO, C-FIND and C-STORE, and a fetch by C-GET for C-GET and C-MOVE.

Invariants: every upstream association uses the proxy's AE title as calling AE, the
configured PACS AE title as called AE, TLS when configured (the PACS certificate is
verified); a shared association is released when its inbound association ends and is
re-opened when the PACS dropped it; a fetch holds at most ``max_retrieve_instances``
datasets in memory and answers the PACS "out of resources" (0xA700) for the others,
which the PACS then reports as failed sub-operations.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydicom.dataset import Dataset
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext

from integrations.dicomproxy.config import ProxyConfig
from integrations.dicomproxy.errors import DicomProxyError
from integrations.dicomproxy.tls import client_context
from integrations.dicomproxy.transport import no_delay

__all__ = ["Fetched", "Upstream", "UpstreamUnavailable"]

logger = logging.getLogger(__name__)

#: A presentation context per association request, at most (PS3.8 9.3.2.2: IDs 1-255,
#: odd only).
MAX_CONTEXTS: Final = 128
_PENDING: Final = frozenset({0xFF00, 0xFF01})


class UpstreamUnavailable(DicomProxyError):
    """The PACS could not be associated with, or failed or timed out mid-operation."""


@dataclass(slots=True)
class Fetched:
    """What a C-GET to the PACS brought back: the datasets and its final response."""

    datasets: list[Dataset] = field(default_factory=list)
    status: Dataset | None = None
    identifier: Dataset | None = None
    refused: int = 0

    @property
    def final_status(self) -> int:
        return int(self.status.Status) if self.status is not None else 0xC000

    @property
    def upstream_failed(self) -> int:
        if self.status is None:
            return 0
        return int(self.status.get("NumberOfFailedSuboperations", 0) or 0)


def contexts_like(accepted: Iterable[PresentationContext]) -> list[PresentationContext]:
    """Requested contexts for the PACS mirroring what an inbound association accepted
    (same abstract syntax, its negotiated transfer syntax), at most ``MAX_CONTEXTS``."""
    out: dict[tuple[str, str], PresentationContext] = {}
    for cx in accepted:
        syntax = str(cx.abstract_syntax)
        ts = str(cx.transfer_syntax[0])
        out.setdefault((syntax, ts), build_context(syntax, ts))
    return list(out.values())[:MAX_CONTEXTS]


class Upstream:
    """Opens and keeps the proxy's associations with the PACS."""

    def __init__(self, ae: AE, config: ProxyConfig) -> None:
        self._ae = ae
        self._config = config
        up = config.upstream
        self._tls_args: tuple[Any, str] | None = None
        if up.tls is not None:
            self._tls_args = (client_context(up.tls), up.tls_server_name or up.host)
        self._lock = threading.Lock()
        #: Keyed by the inbound association itself (not its id: ids are reused).
        self._shared: dict[Association, Association] = {}

    def associate(self, contexts: Sequence[PresentationContext], **kwargs: Any) -> Association:
        """A new association with the PACS; ``UpstreamUnavailable`` if not established."""
        up = self._config.upstream
        if self._tls_args is not None:
            kwargs["tls_args"] = self._tls_args
        assoc = self._ae.associate(
            up.host,
            up.port,
            contexts=list(contexts)[:MAX_CONTEXTS],
            ae_title=up.ae_title,
            max_pdu=self._config.limits.max_pdu_bytes,
            **kwargs,
        )
        if not assoc.is_established:
            raise UpstreamUnavailable(f"no association with {up.ae_title}@{up.host}:{up.port}")
        raw = getattr(assoc.dul.socket, "socket", None)
        if raw is not None:
            no_delay(raw)
        return assoc

    def shared(self, inbound: Association) -> Association:
        """The association kept for ``inbound`` (opened with contexts like its own)."""
        with self._lock:
            assoc = self._shared.get(inbound)
        if assoc is not None and assoc.is_established:
            return assoc
        assoc = self.associate(contexts_like(inbound.accepted_contexts))
        with self._lock:
            self._shared[inbound] = assoc
        return assoc

    def drop(self, inbound: Association) -> None:
        """Release the association kept for ``inbound``, if any (idempotent)."""
        with self._lock:
            assoc = self._shared.pop(inbound, None)
        if assoc is not None and assoc.is_established:
            assoc.release()

    def close(self) -> None:
        with self._lock:
            kept, self._shared = list(self._shared.values()), {}
        for assoc in kept:
            if assoc.is_established:
                assoc.abort()

    def fetch(
        self,
        identifier: Dataset,
        get_model: str,
        storage: Sequence[PresentationContext],
        cancelled: Any = None,
    ) -> Fetched:
        """C-GET ``identifier`` from the PACS, keeping the instances it sends."""
        got = Fetched()
        limit = self._config.limits.max_retrieve_instances

        def keep(event: Any) -> int:
            if len(got.datasets) >= limit:
                got.refused += 1
                return 0xA700
            ds = event.dataset
            ds.file_meta = event.file_meta
            got.datasets.append(ds)
            return 0x0000

        storage = list(storage)[: MAX_CONTEXTS - 1]
        assoc = self.associate(
            [build_context(get_model), *storage],
            ext_neg=[build_role(str(cx.abstract_syntax), scp_role=True) for cx in storage],
            evt_handlers=[(evt.EVT_C_STORE, keep)],
        )
        assoc.dimse_timeout = self._config.limits.retrieve_timeout
        try:
            for status, ident in assoc.send_c_get(identifier, get_model):
                if not status:
                    raise UpstreamUnavailable("the PACS C-GET failed, timed out or aborted")
                if cancelled is not None and cancelled():
                    assoc.send_c_cancel(1, query_model=get_model)
                if int(status.Status) not in _PENDING:
                    got.status, got.identifier = status, ident
        finally:
            if assoc.is_established:
                assoc.release()
        return got
