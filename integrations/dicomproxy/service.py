"""The proxy as a service: ``DicomProxy(config, recorder)`` with ``start()``/``stop()``
(or ``with``), and ``serve(config, recorder)`` that runs it until told to stop.

Invariants: construction does no I/O; ``start()`` binds the listening port (TLS when
configured) and serves on a daemon thread, one thread per association (pynetdicom's
model); ``stop()`` is idempotent, stops accepting, aborts the associations still open
(a connection still waiting for its A-ASSOCIATE-RQ has none: its transport is closed)
and releases the PACS associations. pynetdicom's logging of C-FIND/C-GET/C-MOVE
identifiers (PHI) is switched off for the whole process on ``start()``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from types import TracebackType
from typing import Self

from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts, _config
from pynetdicom.association import Association

from integrations.dicomproxy.config import ProxyConfig
from integrations.dicomproxy.errors import DicomProxyError
from integrations.dicomproxy.handlers import Handlers
from integrations.dicomproxy.operations import OperationRecorder
from integrations.dicomproxy.reactor import QuickAE
from integrations.dicomproxy.recording import Gate
from integrations.dicomproxy.sopclasses import QUERY_RETRIEVE
from integrations.dicomproxy.tls import server_context
from integrations.dicomproxy.transport import ASSOCIATE_SLACK, GuardedServer
from integrations.dicomproxy.upstream import Upstream

__all__ = ["DicomProxy", "serve"]

logger = logging.getLogger(__name__)


def _end(assoc: Association) -> None:
    """Abort an association; hang up on a connection that has not asked for one yet.

    PS3.8 defines no A-ABORT request before the A-ASSOCIATE-RQ (Sta2): pynetdicom's DUL
    raises ``InvalidEventError`` for it. Shutting the socket down lets the DUL read the
    end of the stream and end in Sta1 as if the peer had gone; a peer whose request
    arrives in between is aborted by the DUL (the transport closed under it)."""
    if assoc.dul.state_machine.current_state != "Sta2":
        assoc.abort()
        return
    raw = getattr(assoc.dul.socket, "socket", None)
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)


def _build_ae(config: ProxyConfig) -> AE:
    limits = config.limits
    ae = QuickAE(ae_title=config.listen.ae_title)
    ae.maximum_associations = limits.max_associations
    ae.maximum_pdu_size = limits.max_pdu_bytes
    ae.acse_timeout = limits.acse_timeout
    ae.dimse_timeout = limits.dimse_timeout
    ae.network_timeout = limits.network_timeout
    ae.connection_timeout = limits.connect_timeout
    ae.require_calling_aet = list(config.listen.allowed_calling_aets)
    ae.require_called_aet = True
    for uid in QUERY_RETRIEVE:
        ae.add_supported_context(uid)
    for cx in AllStoragePresentationContexts:
        # C-STORE from SCUs, and the SCP role a C-GET SCU asks for (role selection).
        ae.add_supported_context(
            str(cx.abstract_syntax), AllTransferSyntaxes, scu_role=False, scp_role=True
        )
    return ae


class DicomProxy:
    """The DICOM audit proxy, threaded: ``start()``, ``stop()``, ``address``."""

    def __init__(self, config: ProxyConfig, recorder: OperationRecorder) -> None:
        self.config = config
        self.gate = Gate(recorder, fail_closed=config.fail_closed)
        self._ae: AE | None = None
        self._server: GuardedServer | None = None
        self._upstream: Upstream | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when 0 was configured."""
        if self._server is None:
            raise DicomProxyError("the proxy is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def server(self) -> GuardedServer:
        if self._server is None:
            raise DicomProxyError("the proxy is not started")
        return self._server

    def start(self) -> None:
        if self._server is not None:
            return
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
        cfg, limits = self.config, self.config.limits
        tls = server_context(cfg.listen.tls) if cfg.listen.tls is not None else None
        ae = _build_ae(cfg)
        upstream = Upstream(ae, cfg)
        handlers = Handlers(cfg, upstream, self.gate)
        server = ae.make_server(  # returns a GuardedServer, typed as its base
            (cfg.listen.host, cfg.listen.port),
            evt_handlers=handlers.bindings(),
            server_class=GuardedServer,
            tls=tls,
            connection_cap=2 * limits.max_associations,
            pdu_read_limit=limits.max_pdu_bytes + ASSOCIATE_SLACK,
            handshake_timeout=limits.tls_handshake_timeout,
            read_timeout=limits.network_timeout,
            prepare=handlers.prepare,
        )
        assert isinstance(server, GuardedServer)  # narrowing for mypy, not validation
        ae._servers.append(server)  # as ae.start_server does; server.shutdown() removes it
        thread = threading.Thread(
            target=server.serve_forever, name="dicomproxy-accept", daemon=True
        )
        thread.start()
        self._ae, self._server, self._upstream, self._thread = ae, server, upstream, thread
        logger.info(
            "DICOM proxy %s listening on %s:%d (%s), upstream %s@%s:%d, fail-%s",
            cfg.listen.ae_title,
            *self.address,
            "TLS" if tls is not None else "plain TCP",
            cfg.upstream.ae_title,
            cfg.upstream.host,
            cfg.upstream.port,
            "closed" if cfg.fail_closed else "open",
        )

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        for assoc in list(server.active_associations):
            _end(assoc)
        if self._upstream is not None:
            self._upstream.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._ae = self._upstream = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    config: ProxyConfig, recorder: OperationRecorder, stop: threading.Event | None = None
) -> None:
    """Run the proxy until ``stop`` is set (or forever, until KeyboardInterrupt)."""
    stop = stop or threading.Event()
    with DicomProxy(config, recorder):
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            logger.info("DICOM proxy interrupted: stopping")
