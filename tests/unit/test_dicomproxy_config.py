"""The DICOM proxy's TOML configuration: what it accepts and a clear error, naming the
key, for every bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from integrations.dicomproxy import DicomProxyConfigError, load_config, parse_config

GOOD = """
[listen]
host = "0.0.0.0"
port = 11112
ae_title = "LEDGERPROXY"
allowed_calling_aets = ["FINDSCU", "CT01"]

[upstream]
host = "pacs.example"
port = 4242
ae_title = "ORTHANC"

[destinations.WS01]
host = "10.0.0.9"
port = 104

[limits]
max_associations = 20
dimse_timeout = 5

[recording]
fail_closed = false
"""


def _base() -> dict[str, Any]:
    return {
        "listen": {"allowed_calling_aets": ["FINDSCU"]},
        "upstream": {"host": "127.0.0.1", "port": 4242, "ae_title": "ORTHANC"},
    }


def test_a_full_file_parses(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.listen.host == "0.0.0.0"
    assert cfg.listen.ae_title == "LEDGERPROXY"
    assert cfg.listen.allowed_calling_aets == ("FINDSCU", "CT01")
    assert (cfg.upstream.host, cfg.upstream.port, cfg.upstream.ae_title) == (
        "pacs.example", 4242, "ORTHANC",
    )  # fmt: skip
    assert cfg.destinations["WS01"].port == 104
    assert cfg.limits.max_associations == 20
    assert cfg.limits.dimse_timeout == 5.0
    assert cfg.limits.max_pdu_bytes == 65536
    assert cfg.fail_closed is False
    with pytest.raises(TypeError):
        cfg.destinations["X"] = cfg.destinations["WS01"]  # type: ignore[index]


def test_defaults_are_fail_closed_and_plain_tcp() -> None:
    cfg = parse_config(_base())
    assert cfg.fail_closed is True
    assert cfg.listen.tls is None
    assert cfg.upstream.tls is None
    assert cfg.listen.port == 11112
    assert dict(cfg.destinations) == {}


def _set(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *path, last = dotted.split(".")
    table = doc
    for name in path:
        table = table.setdefault(name, {})
    table[last] = value
    return doc


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("listen.port", 70000, "integer from 0 to 65535"),
        ("listen.port", "11112", "integer"),
        ("listen.port", True, "integer"),
        ("listen.ae_title", "A" * 17, "1 to 16"),
        ("listen.ae_title", "   ", "1 to 16"),
        ("listen.ae_title", "BAD\\AE", "no backslash"),
        ("listen.ae_title", "CAFÉ", "printable ASCII"),
        ("listen.allowed_calling_aets", [], "non-empty list"),
        ("listen.allowed_calling_aets[0]", None, "must be a string"),
        ("listen.bogus", 1, "unknown key"),
        ("upstream.port", 0, "integer from 1 to 65535"),
        ("upstream.host", "", "non-empty string"),
        ("limits.max_associations", 0, "integer from 1 to 1000"),
        ("limits.max_pdu_bytes", 100, "integer from 4096"),
        ("limits.dimse_timeout", 0, "more than 0"),
        ("limits.network_timeout", "soon", "number of seconds"),
        ("limits.nonsense", 1, "unknown key"),
        ("recording.fail_closed", "yes", "true or false"),
        ("destinations.WS01", "10.0.0.9:104", "must be a table"),
        ("destinations.WS01.port", 0, "integer from 1 to 65535"),
        ("listen.tls.cert_file", "/nonexistent/cert.pem", "no such file"),
    ],
)
def test_every_bad_value_names_its_key(key: str, value: Any, message: str) -> None:
    doc = _base()
    if key == "listen.allowed_calling_aets[0]":
        doc["listen"]["allowed_calling_aets"] = [None]
    elif key.startswith("destinations.WS01.port"):
        doc["destinations"] = {"WS01": {"host": "h", "port": value}}
    else:
        _set(doc, key, value)
    with pytest.raises(DicomProxyConfigError, match=message) as info:
        parse_config(doc)
    assert info.value.key == key


def test_missing_upstream_and_tls_pairs(tmp_path: Path) -> None:
    doc = _base()
    del doc["upstream"]["ae_title"]
    with pytest.raises(DicomProxyConfigError, match="required") as info:
        parse_config(doc)
    assert info.value.key == "upstream.ae_title"
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    doc = _set(_base(), "listen.tls.cert_file", "c.pem")
    with pytest.raises(DicomProxyConfigError, match="go together"):
        parse_config(doc, base=tmp_path)
    doc = _set(_base(), "upstream.tls.cert_file", str(cert))
    doc["upstream"]["tls"]["key_file"] = str(cert)
    with pytest.raises(DicomProxyConfigError, match="needs ca_file"):
        parse_config(doc)


def test_unreadable_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(DicomProxyConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[listen\n")
    with pytest.raises(DicomProxyConfigError, match="not valid TOML"):
        load_config(bad)
