"""Pure parts of the API's request boundary: sealed cursors, strict JSON bodies, the
declared-parameter table, the public base URL."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.audit.cursors import CursorKey
from ledger.audit.query import Cursor, Snapshot
from ledger.errors import MalformedInputError
from ledger.http.body import MAX_DEPTH, parse_json
from ledger.http.boundary import _undecodable, declared_parameters
from ledger.http.common import public_base
from ledger.http.openapi import document
from ledger.http.server import bind_url

CURSOR = Cursor(
    event_time=datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
    event_id=uuid.UUID(int=7),
    snapshot=Snapshot(sizes=(3, 0, 12)),
)


def _code(exc: pytest.ExceptionInfo[MalformedInputError]) -> str:
    return exc.value.code


def test_a_sealed_cursor_opens_for_its_listing_only() -> None:
    key = CursorKey.generate()
    token = key.seal(CURSOR, context="history|patient A")
    assert key.open(token, context="history|patient A") == CURSOR
    for bad_context in ("history|patient B", "fhir|patient A", ""):
        with pytest.raises(MalformedInputError) as exc:
            key.open(token, context=bad_context)
        assert _code(exc) == "invalid_cursor"


@pytest.mark.parametrize("position", [0, 10, 50, -3])
def test_a_tampered_cursor_is_refused(position: int) -> None:
    key = CursorKey.generate()
    raw = bytearray(base64.urlsafe_b64decode(key.seal(CURSOR, context="c") + "=="))
    raw[position] ^= 0x01
    token = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(MalformedInputError) as exc:
        key.open(token, context="c")
    assert _code(exc) == "invalid_cursor"


def test_foreign_forged_and_garbage_cursors_are_refused() -> None:
    key, other = CursorKey.generate(), CursorKey.generate()
    forged_sizes = Cursor(
        event_time=CURSOR.event_time, event_id=CURSOR.event_id, snapshot=Snapshot(sizes=(2**40,))
    )
    for token in (
        other.seal(CURSOR, context="c"),  # another server's key
        CURSOR.encode(),  # the old unsigned format
        forged_sizes.encode(),
        "",
        "!!!",
        "A" * 20_000,
    ):
        with pytest.raises(MalformedInputError) as exc:
            key.open(token, context="c")
        assert _code(exc) == "invalid_cursor"


def test_a_cursor_key_comes_from_a_file_of_at_least_32_bytes(tmp_path: Path) -> None:
    good, short = tmp_path / "key", tmp_path / "short"
    good.write_text("k" * 40 + "\n")
    short.write_text("k" * 31)
    sealed = CursorKey.from_file(good).seal(CURSOR, context="c")
    assert CursorKey.from_file(good).open(sealed, context="c") == CURSOR  # survives restart
    with pytest.raises(MalformedInputError):
        CursorKey.from_file(short)
    with pytest.raises(MalformedInputError):
        CursorKey.from_file(tmp_path / "missing")
    assert "k" * 10 not in repr(CursorKey.from_file(good))


@pytest.mark.parametrize(
    ("body", "charset", "code"),
    [
        (b"[" * 30_000 + b"]" * 30_000, None, "too_deep"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), None, "too_deep"),
        (b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), None, "too_deep"),
        (b"{}", "x-no-such-charset", "unsupported_charset"),
        (b"{}", "latin-1", "unsupported_charset"),
        (b'["\\ud800"]', None, "lone_surrogate"),
        (b'{"\\udfff": 1}', None, "lone_surrogate"),
        (b'["\xed\xa0\x80"]', None, "invalid_utf8"),
        (b'["\xff"]', None, "invalid_utf8"),
        (b"{", None, "invalid_json"),
        (b"\xef\xbb\xbf{}", None, "invalid_json"),
    ],
)
def test_hostile_json_bodies_are_refused_with_a_stable_code(
    body: bytes, charset: str | None, code: str
) -> None:
    with pytest.raises(MalformedInputError) as exc:
        parse_json(body, charset)
    assert _code(exc) == code


def test_ordinary_json_bodies_parse() -> None:
    deep_enough = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert parse_json(deep_enough, None) is not None
    assert parse_json(b'{"a": ["\\ud83d\\ude00", "\xc3\xa9"]}', "UTF-8") == {
        "a": ["\U0001f600", "é"]
    }
    assert parse_json(json.dumps({"x": 1}).encode(), "utf8") == {"x": 1}


def test_every_documented_operation_declares_its_query_parameters() -> None:
    table = declared_parameters(document())
    assert table[("GET", "/v1/patients/{patient_id}/accesses")] >= {"since", "cursor", "issuer"}
    assert "format" not in table[("GET", "/v1/patients/{patient_id}/accesses")]
    assert table[("POST", "/v1/investigations")] == {"format", "as_of", "as_of_note"}
    assert table[("GET", "/fhir/AuditEvent")] >= {"patient", "date", "_cursor", "_count"}
    assert table[("GET", "/healthz")] == frozenset()


def test_query_text_must_be_utf8() -> None:
    assert _undecodable("a=1&b=%C3%A9&c") is None
    assert _undecodable("facility=%ED%A0%80") == "%ED%A0%80"
    assert _undecodable("%FF=1") == "%FF"
    assert _undecodable("", "/v1/patients/%C3%A9/accesses") is None
    assert _undecodable("", "/v1/patients/%ED%A0%80/accesses") == "%ED%A0%80"


def test_the_public_base_url_is_validated_and_defaults_to_the_bind_address() -> None:
    assert public_base("https://ledger.example.org/audit/") == "https://ledger.example.org/audit"
    for bad in ("ledger.example.org", "ftp://x", "https://x/?a=1", "https://x/#f", "/fhir"):
        with pytest.raises(MalformedInputError):
            public_base(bad)
    assert bind_url("127.0.0.1", 18080, tls=False) == "http://127.0.0.1:18080"
    assert bind_url("::1", 443, tls=True) == "https://[::1]:443"
    assert not bind_url("0.0.0.0", 80, tls=False).startswith("http://0.0.0.0")
