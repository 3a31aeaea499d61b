"""The listening side, hardened: pynetdicom's threaded association server with the TLS
handshake, a connection cap and a PDU size limit of our own.

Invariants (each keeps one peer from starving the others):

* The TLS handshake runs on the connection's own thread with a deadline
  (``tls_handshake_timeout``), never on the accepting thread (pynetdicom's
  ``get_request`` would handshake there, so one silent client would stop all accepts).
* At most ``connection_cap`` connections are open (handshaking or associated, each
  counted once: the hand-over from one to the other is one step under the server's
  lock); beyond it a connection is closed at once. Below it, pynetdicom itself rejects
  an association past ``max_associations`` with A-ASSOCIATE-RJ (local limit exceeded).
* A PDU whose header announces more than ``pdu_read_limit`` bytes is refused with an
  A-ABORT (invalid PDU parameter value) before any of it is read, and the connection
  closes: pynetdicom would otherwise buffer whatever length a peer announces.
* Every accepted socket has a read deadline (``network_timeout``): a peer that stops in
  the middle of a PDU is disconnected, not waited on forever. Nagle's algorithm is off
  on both sides (``no_delay``).

This leans on pynetdicom 3.0 internals (``RequestHandler._create_association``,
``Association.dul.socket``, ``ApplicationEntity._servers``); pyproject pins pynetdicom
below 3.1 and tests/integration/test_dicom_proxy.py exercises each guard.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from integrations.dicomproxy.reactor import quicken

__all__ = ["GuardedServer", "no_delay"]

logger = logging.getLogger(__name__)

#: A-ABORT PDU: type 07, length 4, source 2 (service provider), reason 6 (invalid PDU
#: parameter value), PS3.8 9.3.8.
_A_ABORT_INVALID_PARAMETER = bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 6])
#: Room for an A-ASSOCIATE-RQ (up to 128 presentation contexts) above the P-DATA limit.
ASSOCIATE_SLACK = 64 * 1024


def no_delay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off: DIMSE is request/response with small PDUs (a C-FIND
    response, a C-STORE-RSP), which Nagle and delayed ACKs hold back ~40 ms each."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _BoundedSocket(AssociationSocket):
    """An ``AssociationSocket`` that refuses to read a PDU longer than its limit."""

    _pdu_limit: int

    def recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self._pdu_limit:
            logger.warning(
                "refusing a %d-byte PDU from %s (limit %d): A-ABORT",
                nr_bytes,
                self.assoc.requestor.address,
                self._pdu_limit,
            )
            raw = self.socket
            if raw is not None:
                with contextlib.suppress(OSError):
                    raw.sendall(_A_ABORT_INVALID_PARAMETER)
            # Shorter than announced: pynetdicom ends the connection (FSM Evt17).
            return bytearray()
        return super().recv(nr_bytes)


class _GuardedHandler(RequestHandler):
    server: GuardedServer

    def handle(self) -> None:
        """pynetdicom's ``handle``, with the connection's slot handed from "handshaking"
        to "associated" under the server's lock: counted once at every moment."""
        assoc = self._create_association()
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        self.server.hand_over(assoc.start)

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        sock = assoc.dul.socket
        if isinstance(sock, AssociationSocket):
            sock.__class__ = _BoundedSocket  # same layout, one method more strict
            cast(_BoundedSocket, sock)._pdu_limit = self.server.pdu_read_limit
            quicken(assoc, sock)
        if self.server.prepare is not None:
            self.server.prepare(assoc)
        return assoc


#: Per connection thread: whether ``hand_over`` has moved its slot to the associations.
_handed = threading.local()


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the guards above; build it with
    ``ae.make_server(..., server_class=GuardedServer, ssl_context=None, tls=ctx, ...)``."""

    daemon_threads = True

    def __init__(
        self,
        *args: Any,
        tls: ssl.SSLContext | None,
        connection_cap: int,
        pdu_read_limit: int,
        handshake_timeout: float,
        read_timeout: float,
        prepare: Callable[[Any], None] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs["request_handler"] = _GuardedHandler
        super().__init__(*args, **kwargs)
        self.tls = tls
        self.connection_cap = connection_cap
        self.pdu_read_limit = pdu_read_limit
        #: Called with each new inbound association before it starts.
        self.prepare = prepare
        self._handshake_timeout = handshake_timeout
        self._read_timeout = read_timeout
        self._lock = threading.Lock()
        self._handshaking = 0
        self.refused_connections = 0
        self.failed_handshakes = 0

    @property
    def open_connections(self) -> int:
        """Connections holding a slot of ``connection_cap``: handshaking or associated."""
        with self._lock:
            return self._open()

    def _open(self) -> int:
        """``open_connections`` for a caller that holds the lock."""
        return self._handshaking + len(self.active_associations)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._lock:
            if self._open() >= self.connection_cap:
                self.refused_connections += 1
                logger.warning("connection cap reached: closing %s at once", client_address)
                return False
            self._handshaking += 1
        return True

    def hand_over(self, start: Callable[[], None]) -> None:
        """Start a connection's association thread (``start``) and stop counting the
        connection as handshaking, as one step under the lock: ``verify_request`` never
        sees it twice (once in each count) and refuses a connection below the cap."""
        with self._lock:
            start()
            self._handshaking -= 1
            _handed.done = True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        _handed.done = False
        try:
            sock = self._secure(request, client_address)
            if sock is None:
                return
            sock.settimeout(self._read_timeout)
            no_delay(sock)
            super().process_request_thread(sock, client_address)
        finally:
            if not _handed.done:  # refused, failed or never associated
                with self._lock:
                    self._handshaking -= 1

    def _secure(self, request: socket.socket, client_address: Any) -> socket.socket | None:
        if self.tls is None:
            return request
        try:
            request.settimeout(self._handshake_timeout)
            return self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            with self._lock:
                self.failed_handshakes += 1
            logger.warning("TLS handshake with %s failed: %s", client_address, exc)
            self.shutdown_request(request)
            return None
