"""Plain TCP for ATNA senders that cannot do TLS (RFC 6587): framing detected per
connection (octet counting or LF), the [tcp] source policy, and senders that misbehave
(oversized, slow, mixed framing), over real sockets; and LF framing on TLS too."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest

from integrations.atna.dicom_audit import event_id_for
from integrations.atna.framing import LINE, OCTET_COUNTING, StreamDecoder
from integrations.atna.kept import read_kept
from integrations.atna.receiver import AtnaReceiverConfig
from integrations.atna.rfc5424 import Frame, FrameError, frame_octet_counted, parse_syslog
from integrations.atna.senders import IpNetwork, sender_event_id
from tests.atna_pki import Pki
from tests.unit.test_atna_receiver import (
    POLICY,
    FakeEmitter,
    _message,
    _open,
    _until,
    _variant,
    running,
    tls_files,  # noqa: F401 - the module-scoped fixture
)


def _net(text: str) -> IpNetwork:
    return ipaddress.ip_network(text)


TCP_POLICY = replace(POLICY, tcp={_net("127.0.0.1"): frozenset({"pacs01"})})


# --------------------------------------------------------------------------- framing


def _feed(decoder: StreamDecoder, stream: bytes, step: int) -> list[Frame | FrameError]:
    out: list[Frame | FrameError] = []
    for i in range(0, len(stream), step):
        out += decoder.feed(stream[i : i + step])
    return out


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_octet_counting_is_detected_from_the_first_digit(step: int) -> None:
    messages = [_variant(i) for i in range(3)]
    decoder = StreamDecoder(65536)
    out = _feed(decoder, b"".join(frame_octet_counted(m) for m in messages), step)
    assert decoder.mode == OCTET_COUNTING
    assert out == [Frame(m) for m in messages]
    assert decoder.finish() is None


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_lf_framing_is_detected_from_a_pri(step: int) -> None:
    messages = [_variant(i) for i in range(3)]
    stream = messages[0] + b"\n" + messages[1] + b"\r\n\n" + messages[2] + b"\n"
    decoder = StreamDecoder(65536)
    # Pretty-printed XML: its LFs are inside the AuditMessage, not ends of frames.
    assert all(m.count(b"\n") > 10 for m in messages)
    assert _feed(decoder, stream, step) == [Frame(m.rstrip(b"\n")) for m in messages]
    assert decoder.mode == LINE
    assert decoder.pending == 0


def test_an_unterminated_last_line_is_a_frame_only_when_the_sender_closed() -> None:
    decoder = StreamDecoder(1024)
    assert decoder.feed(b"<13>1 - - - - - - a\n<13>1 - - - - - - b") == [
        Frame(b"<13>1 - - - - - - a")
    ]
    assert decoder.finish(clean=True) == Frame(b"<13>1 - - - - - - b")
    cut = StreamDecoder(1024)
    cut.feed(b"<13>1 - - - - - - b")
    tail = cut.finish(clean=False)
    assert isinstance(tail, FrameError)
    assert (tail.reason, tail.data) == ("truncated", b"<13>1 - - - - - - b")


@pytest.mark.parametrize(
    ("stream", "reason", "detail"),
    [
        (b"hello\n", "bad_frame", "starts with a digit"),
        (b"0 <13>1 - - - - - -", "bad_frame", "starts with a digit"),
        (b"<13>1 - - - - - - a\n19 <13>1 - - - - - - b", "bad_frame", "mixed framing"),
        (b"19 <13>1 - - - - - - b<13>1 - - - - - - a\n", "bad_frame", "mixed framing"),
        (b"<13>1 - - - - - - " + b"x" * 200 + b"\n", "oversize", "exceeds the maximum"),
        (b"<13>1 - - - - - - " + b"x" * 200, "oversize", "more than 128"),
        (b"999 <13>1", "oversize", "exceeds the maximum"),
    ],
)
def test_bad_streams_break_the_decoder_and_keep_at_most_the_limit(
    stream: bytes, reason: str, detail: str
) -> None:
    decoder = StreamDecoder(128)
    out = decoder.feed(stream)
    error = out[-1]
    assert isinstance(error, FrameError)
    assert (error.reason, detail in error.detail) == (reason, True)
    assert len(error.data) <= 128 + 4
    assert decoder.broken
    assert decoder.feed(b"<13>1 - - - - - - more\n") == []
    assert decoder.finish() is None


# --------------------------------------------------------------------------- the listener


async def _tcp(receiver: object) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", receiver.tcp_port)  # type: ignore[attr-defined]


async def _closed_by_server(reader: asyncio.StreamReader) -> None:
    """Read until the receiver closes the connection (EOF, or a reset if unread data was
    left in its socket)."""
    async with asyncio.timeout(5):
        try:
            while await reader.read(65536):
                pass
        except ConnectionResetError:
            pass


async def test_tcp_is_off_unless_configured(tmp_path: Path, tls_files: Pki) -> None:  # noqa: F811
    async with running(tmp_path, tls_files, FakeEmitter()) as receiver:
        assert receiver.tcp_port is None


@pytest.mark.parametrize("framing", ["octet", "lf"])
async def test_tcp_messages_become_events_named_by_source_address(
    tmp_path: Path,
    tls_files: Pki,  # noqa: F811
    framing: str,
) -> None:
    emitter = FakeEmitter()
    messages = [_variant(i) for i in range(5)]
    if framing == "octet":
        stream = b"".join(frame_octet_counted(m) for m in messages)
    else:
        stream = b"".join(m + b"\n" for m in messages)
    async with running(tmp_path, tls_files, emitter, tcp_port=0, policy=TCP_POLICY) as receiver:
        _, writer = await _tcp(receiver)
        writer.write(stream)
        await writer.drain()
        await _until(lambda: receiver.stats().events == 5)
        writer.close()
        stats = receiver.stats()
        assert (stats.received_tcp, stats.received_tls, stats.kept_total) == (5, 0, 0)
    assert [e.event_id for e in emitter.events] == [
        sender_event_id("tcp:127.0.0.1", event_id_for(parse_syslog(m).msg)) for m in messages
    ]
    assert {e.details["atna_sender"] for e in emitter.events} == {"tcp:127.0.0.1"}


async def test_tcp_from_an_unlisted_address_is_refused_before_anything_is_read(
    tmp_path: Path,
    tls_files: Pki,  # noqa: F811
) -> None:
    emitter = FakeEmitter()
    policy = replace(POLICY, tcp={_net("192.0.2.0/24"): frozenset({"pacs01"})})
    async with running(tmp_path, tls_files, emitter, tcp_port=0, policy=policy) as receiver:
        reader, writer = await _tcp(receiver)
        writer.write(frame_octet_counted(_variant(1)))
        await _closed_by_server(reader)
        writer.close()
        await _until(lambda: receiver.stats().tcp_refused_sources == 1)
        stats = receiver.stats()
        assert (stats.received_tcp, stats.events, stats.kept_total) == (0, 0, 0)


async def test_a_tcp_sender_may_claim_only_its_network_s_sources(
    tmp_path: Path,
    tls_files: Pki,  # noqa: F811
) -> None:
    emitter = FakeEmitter()
    policy = replace(POLICY, tcp={_net("127.0.0.0/8"): frozenset({"somewhere-else"})})
    async with running(tmp_path, tls_files, emitter, tcp_port=0, policy=policy) as receiver:
        _, writer = await _tcp(receiver)
        writer.write(frame_octet_counted(_message()))
        await writer.drain()
        await _until(lambda: receiver.stats().kept_total == 1)
        writer.close()
        assert receiver.stats().refused_senders == 1
    (kept,) = read_kept(tmp_path / "kept")
    assert (kept.reason, kept.sender, kept.transport) == (
        "source_not_allowed",
        "tcp:127.0.0.1",
        "tcp",
    )


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"<13>1 - - - - - - " + b"x" * 5000 + b"\n", "oversize"),
        (b"<13>1 - - - - - - " + b"x" * 5000, "oversize"),
        (b"5000 " + b"y" * 100, "oversize"),
        (b"GET / HTTP/1.1\r\n\r\n", "bad_frame"),
    ],
    ids=["long-line", "no-lf", "long-count", "not-syslog"],
)
async def test_bad_tcp_streams_are_kept_and_the_connection_closed(
    tmp_path: Path,
    tls_files: Pki,  # noqa: F811
    stream: bytes,
    reason: str,
) -> None:
    emitter = FakeEmitter()
    async with running(
        tmp_path, tls_files, emitter, tcp_port=0, policy=TCP_POLICY, max_message_bytes=4096
    ) as receiver:
        reader, writer = await _tcp(receiver)
        writer.write(frame_octet_counted(_variant(2)) if stream[:1].isdigit() else b"")
        writer.write(stream)
        await writer.drain()
        await _closed_by_server(reader)
        writer.close()
        await _until(lambda: receiver.stats().kept_total == 1)
        # The receiver keeps serving: a new connection is read.
        _, again = await _tcp(receiver)
        again.write(_variant(3) + b"\n")
        await again.drain()
        await _until(lambda: receiver.stats().events >= 1 + (stream[:1].isdigit()))
        again.close()
    kept = list(read_kept(tmp_path / "kept"))
    assert [k.reason for k in kept] == [reason]
    assert len(kept[0].raw) <= 4096 + 5


@pytest.mark.parametrize("first", ["octet", "lf"])
async def test_mixed_framing_is_refused_and_what_came_before_is_kept(
    tmp_path: Path,
    tls_files: Pki,  # noqa: F811
    first: str,
) -> None:
    emitter = FakeEmitter()
    one, two = _variant(1), _variant(2)
    if first == "octet":
        stream = frame_octet_counted(one) + two + b"\n"
    else:
        stream = one + b"\n" + frame_octet_counted(two) + b"\n"
    async with running(tmp_path, tls_files, emitter, tcp_port=0, policy=TCP_POLICY) as receiver:
        reader, writer = await _tcp(receiver)
        writer.write(stream)
        await writer.drain()
        await _closed_by_server(reader)
        writer.close()
        await _until(lambda: receiver.stats().events == 1 and receiver.stats().kept_total == 1)
    (kept,) = read_kept(tmp_path / "kept")
    assert kept.reason == "bad_frame"
    assert "mixed framing" in kept.detail


async def test_a_slow_sender_is_cut_off_and_its_partial_frame_kept(
    tmp_path: Path,
    tls_files: Pki,  # noqa: F811
) -> None:
    """A sender trickling a frame (slowloris) loses its connection once the frame is older
    than frame_timeout_seconds, even though each byte came before the idle timeout."""
    emitter = FakeEmitter()
    async with running(
        tmp_path,
        tls_files,
        emitter,
        tcp_port=0,
        policy=TCP_POLICY,
        frame_timeout_seconds=0.3,
        idle_timeout_seconds=60.0,
    ) as receiver:
        reader, writer = await _tcp(receiver)
        closed = False
        for byte in b"<13>1 - - - - - - slow":
            writer.write(bytes([byte]))
            try:
                await writer.drain()
                async with asyncio.timeout(0.1):
                    if await reader.read(1) == b"":
                        closed = True
                        break
            except TimeoutError:
                continue
            except ConnectionError:
                closed = True
                break
        if not closed:
            await _closed_by_server(reader)
        writer.close()
        await _until(lambda: receiver.stats().kept_total == 1)
    (kept,) = read_kept(tmp_path / "kept")
    assert kept.reason == "truncated"
    assert "slow sender" in kept.detail
    assert kept.raw.startswith(b"<1")


async def test_tcp_connections_are_limited(
    tmp_path: Path,
    tls_files: Pki,  # noqa: F811
) -> None:
    emitter = FakeEmitter()
    async with running(
        tmp_path, tls_files, emitter, tcp_port=0, policy=TCP_POLICY, max_connections=1
    ) as receiver:
        _, first = await _tcp(receiver)
        first.write(b"<13>1")  # holds the one slot
        await first.drain()
        await _until(lambda: receiver.stats().connections == 1)
        reader, second = await _tcp(receiver)
        await _closed_by_server(reader)
        second.close()
        assert receiver.stats().connections_refused == 1
        first.close()


async def test_lf_framing_over_tls_as_rsyslog_sends_by_default(
    tmp_path: Path,
    tls_files: Pki,  # noqa: F811
) -> None:
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter) as receiver:
        _, writer = await _open(receiver, tls_files)
        writer.write(b"".join(_variant(i) + b"\n" for i in range(3)))
        await writer.drain()
        await _until(lambda: receiver.stats().events == 3)
        writer.close()
    assert receiver.stats().kept_total == 0


def test_config_needs_a_positive_frame_timeout() -> None:
    with pytest.raises(ValueError, match="frame_timeout_seconds"):
        AtnaReceiverConfig(kept_dir="x", tcp_port=0, frame_timeout_seconds=0)
    assert AtnaReceiverConfig(kept_dir="x", tcp_port=0).tls_port is None


async def test_tcp_binds_loopback_whatever_the_tls_host(
    tmp_path: Path,
    tls_files: Pki,  # noqa: F811
) -> None:
    async with running(
        tmp_path, tls_files, FakeEmitter(), host="0.0.0.0", tls_port=None, udp_port=None,
        tcp_port=0, policy=TCP_POLICY,
    ) as receiver:  # fmt: skip
        assert receiver._parts is not None
        assert receiver._parts.tcp is not None
        sockets = receiver._parts.tcp._server.sockets
        assert sockets
        assert {s.getsockname()[0] for s in sockets} == {"127.0.0.1"}
        assert receiver.stats().connections == 0
