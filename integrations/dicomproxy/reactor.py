"""Event-driven pynetdicom reactors: a relayed DIMSE message waits for a wake-up, not for
a polling tick.

pynetdicom 3.0 polls: each association's DUL thread checks its socket and its outgoing
queue, then sleeps 1 ms when there was nothing to do, and an acceptor's association
thread sleeps 1 ms before every look at its DIMSE queue. A C-FIND through the proxy
crosses five such loops (request in, handler, request out to the PACS, answers back,
answers out), and under load each tick stretches; that was most of the latency the proxy
added (docs/dicom-proxy.md, "Cost").

Invariants:

* A DUL that is ``quicken``ed blocks in ``select`` on its socket *and* a wake-up pipe
  (written whenever a primitive is queued for it) instead of sleeping, so it reacts to
  either at once; it still loops at least every ``TICK`` seconds for its timers and its
  stop flag, and neither blocks nor reads while its own event queue holds an event (it
  acts on what it read first: an unknown PDU is answered with an A-ABORT at once).
* A ``QuickAssociation`` (acceptor) waits on an event that the DIMSE message queue and
  the DUL's queue to the user set, instead of sleeping 1 ms; it re-checks release,
  abort, DUL liveness and the idle timer at least every ``TICK`` seconds, exactly as
  pynetdicom's loop does.
* Only classes and attributes are swapped (same layout, the methods below override);
  pyproject pins pynetdicom below 3.1 and the proxy's tests exercise every path.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import ssl
import struct
import threading
import time
import weakref
from typing import Any

from pynetdicom import AE, evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.association import Association
from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE, DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket

__all__ = [
    "TICK",
    "QuickAE",
    "QuickAssociation",
    "QuickDIMSE",
    "QuickDUL",
    "QuickSocket",
    "quicken",
    "quicken_dul",
]

#: pynetdicom's DEBUG logging of every PDU and DIMSE message: a tenth of the CPU of a
#: relayed C-FIND even with DEBUG off (it formats before it logs), and it would log AE
#: titles and command sets. The proxy logs what it needs itself.
_STANDARD_LOGGING = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)

#: The longest a quickened reactor waits before it looks at its timers and flags again.
TICK = 0.01


class _WakingQueue(queue.Queue[Any]):
    """A queue whose ``put`` writes one byte to a wake-up pipe."""

    _wake_fd: int

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        with contextlib.suppress(OSError):  # full pipe: a wake-up is pending anyway
            os.write(self._wake_fd, b"\0")


class _SignallingQueue(queue.Queue[Any]):
    """A queue whose ``put`` sets an event."""

    _signal: threading.Event

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._signal.set()


class QuickSocket(AssociationSocket):
    """An ``AssociationSocket`` whose ``ready`` waits (up to ``TICK``) for data or a
    wake-up instead of answering at once."""

    _wake_fd: int

    @property
    def ready(self) -> bool:
        dul = self.assoc.dul
        pending = not dul.event_queue.empty()
        if pending and dul.state_machine.current_state != "Sta13":
            # The DUL acts on what it has read before it reads more: pynetdicom would read
            # the next PDU header first, so after an unknown PDU type (Evt19) with bytes
            # behind it, it blocked in that read until the deadline instead of sending
            # the A-ABORT the state machine owes the peer (PS3.8 AA-1). In Sta13 (the
            # transport closing) "not ready" would close the socket: read as before.
            return False
        wait = 0.0 if pending else TICK
        sock = self.socket
        if sock is None or self._is_connected is False:
            self._wait_for_wake([], wait)
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        try:
            readable = self._wait_for_wake([sock], wait)
        except (OSError, ValueError):
            self.event_queue.put("Evt17")  # Evt17: transport connection closed
            return False
        return sock in readable

    _write_lock: threading.Lock

    def send(self, bytestream: bytes) -> None:
        """pynetdicom's send, serialised with ``QuickDIMSE``'s direct writes."""
        with self._write_lock:
            super().send(bytestream)

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` (fewer if the connection closes first) into one buffer with
        as few system calls as the kernel allows; pynetdicom reads 4 KiB per call, 128
        calls and copies for a 512 KiB instance."""
        sock = self.socket
        if sock is None:
            return bytearray()
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        got = 0
        while got < nr_bytes:
            n = sock.recv_into(view[got:], nr_bytes - got)
            if not n:
                del view
                del buffer[got:]
                return buffer
            got += n
        return buffer

    def _wait_for_wake(self, extra: list[Any], wait: float) -> list[Any]:
        readable, _, _ = select.select([self._wake_fd, *extra], [], [], wait)
        if self._wake_fd in readable:
            with contextlib.suppress(OSError):
                os.read(self._wake_fd, 4096)
        return readable


class QuickDUL(DULServiceProvider):
    """A DUL whose blocking ``receive_pdu`` stops waiting once the DUL thread has ended.

    pynetdicom's acceptor waits ``acse_timeout`` (30 s by default) for the A-ASSOCIATE-RQ
    even when the peer closed the connection at once: a TCP health check or a port scan
    held a connection slot of ``connection_cap`` that long, so a peer opening and closing
    connections could keep real clients out. The DUL thread ends when the transport
    closes before an association (pynetdicom's state machine has no Sta1 + Evt17)."""

    def receive_pdu(self, wait: bool = False, timeout: float | None = None) -> Any:
        if not wait:
            return super().receive_pdu(wait=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = _RECEIVE_STEP
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(queue.Empty):
                return self.to_user_queue.get(block=True, timeout=step)
            if self._started.is_set() and not self.is_alive():  # type: ignore[attr-defined]
                # The DUL is gone: nothing more can come, but what it queued as it ended
                # (an A-ABORT, say) is still the answer.
                return super().receive_pdu(wait=False)
            if deadline is not None and time.monotonic() >= deadline:
                return None


#: How often a blocked ``QuickDUL.receive_pdu`` checks that its DUL is still running.
_RECEIVE_STEP = 0.05


def quicken_dul(dul: Any, sock: AssociationSocket) -> None:
    """Make a DUL that has not started event-driven: a wake-up pipe, its outgoing queue
    writing to it, its socket (``sock``, the one it will use) waiting on it, no idle
    sleep, and no wait for a PDU once it has ended. The pipe closes with the DUL."""
    if isinstance(sock, QuickSocket):
        return
    if type(dul) is DULServiceProvider:
        dul.__class__ = QuickDUL
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    weakref.finalize(dul, _close_fds, read_fd, write_fd)
    outgoing = dul.to_provider_queue
    outgoing._wake_fd = write_fd
    outgoing.__class__ = _WakingQueue
    sock._wake_fd = read_fd  # type: ignore[attr-defined]
    sock._write_lock = threading.Lock()  # type: ignore[attr-defined]
    sock.__class__ = _quick_class(type(sock))
    dul._run_loop_delay = 0


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


_QUICK_CLASSES: dict[type[Any], type[Any]] = {AssociationSocket: QuickSocket}


def _quick_class(base: type[Any]) -> type[Any]:
    """``QuickSocket`` combined with a subclass of ``AssociationSocket`` (the proxy's
    bounded socket): the subclass's ``recv`` checks first, then reads the quick way."""
    quick = _QUICK_CLASSES.get(base)
    if quick is None:
        quick = type(f"Quick{base.__name__}", (base, QuickSocket), {})
        _QUICK_CLASSES[base] = quick
    return quick


class QuickDIMSE(DIMSEServiceProvider):
    """A DIMSE provider that writes its P-DATA-TF PDUs to a plain TCP socket itself, on
    the thread that sends the message, instead of queueing them for the DUL thread (a
    thread hand-off per message, each waiting for the GIL). Writes are serialised with
    the DUL's own (``QuickSocket.send``); TLS connections, and any state but an
    established association, take pynetdicom's path."""

    def send_msg(self, primitive: Any, context_id: int) -> None:
        sock = self.dul.socket
        raw = getattr(sock, "socket", None)
        lock = getattr(sock, "_write_lock", None)
        if (
            raw is None
            or lock is None
            or isinstance(raw, ssl.SSLSocket)
            or self.dul.state_machine.current_state != "Sta6"
        ):
            super().send_msg(primitive, context_id)
            return
        table = _RQ_TO_MESSAGE if primitive.MessageIDBeingRespondedTo is None else _RSP_TO_MESSAGE
        message = table[primitive.__class__]()
        message.primitive_to_message(primitive)
        message.context_id = context_id
        evt.trigger(self.assoc, evt.EVT_DIMSE_SENT, {"message": message})
        pdus = bytearray()
        for pdata in message.encode_msg(context_id, self.maximum_pdu_size):
            for cx_id, data in pdata.presentation_data_value_list:
                # P-DATA-TF (PS3.8 9.3.5): type 4, length; one PDV item: its length, the
                # context id, then the data (its message control header first).
                pdus += _PDATA_HEADER.pack(0x04, 0x00, len(data) + 5, len(data) + 1, cx_id)
                pdus += data
        try:
            with lock:
                raw.sendall(pdus)
        except OSError:
            self.dul.event_queue.put("Evt17")  # transport closed: as pynetdicom's send


_PDATA_HEADER = struct.Struct(">BBLLB")


class QuickAssociation(Association):
    """An ``Association`` whose reactor waits for a DIMSE message or a primitive instead
    of sleeping 1 ms per look. Its loop is pynetdicom 3.0's ``Association._run_reactor``
    with two changes: the sleep is that wait, and the reactor counts as paused while it
    waits, so a ``send_*`` call (which pauses the reactor and spins until it is) starts at
    once instead of after the reactor's next tick. It touches the queues only after
    seeing the checkpoint still set once it is no longer paused."""

    _wake: threading.Event

    def _run_reactor(self) -> None:
        while not self._kill:
            self._is_paused = True
            self._wake.wait(TICK)
            self._wake.clear()
            self._reactor_checkpoint.wait()
            self._is_paused = False
            if not self._reactor_checkpoint.is_set():
                continue  # a sender paused us between the two lines above
            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, context_id)  # type: ignore[arg-type]
                self._wake.set()  # another message may be waiting
            if self._ended():
                return

    def _ended(self) -> bool:
        """pynetdicom's checks after each message: release, abort, DUL gone, idle."""
        from pynetdicom import evt

        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return True
        return False


def quicken(assoc: Association, sock: AssociationSocket) -> None:
    """Make an association that has not started (acceptor or requestor) event-driven,
    its DUL and ``sock`` (the socket it will use) included."""
    wake = threading.Event()
    queues: tuple[Any, ...] = (assoc.dimse.msg_queue, assoc.dul.to_user_queue)
    for q in queues:
        q._signal = wake
        q.__class__ = _SignallingQueue
    assoc._wake = wake  # type: ignore[attr-defined]
    assoc.__class__ = QuickAssociation
    assoc.dimse.__class__ = QuickDIMSE
    quicken_dul(assoc.dul, sock)
    for event, handler in _STANDARD_LOGGING:
        assoc.unbind(event, handler)


class QuickAE(AE):
    """An ``AE`` whose requested associations are quickened (pynetdicom creates each
    one's socket through ``_create_socket`` before anything starts)."""

    def _create_socket(self, assoc: Association, address: Any, tls_args: Any) -> Any:
        sock = super()._create_socket(assoc, address, tls_args)
        quicken(assoc, sock)
        return sock
