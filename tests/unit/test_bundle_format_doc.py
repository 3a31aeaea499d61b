"""docs/bundle-format.md is enough to write a checker: one written from it alone.

The checker below uses only the standard library, fastavro (Avro) and PyNaCl (Ed25519),
none of the ledger's code, and follows the doc step by step.  It must accept a clean
export and catch a flipped leaf byte, a rewritten index row and a forged checkpoint.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import struct
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import nacl.signing
from fastavro.schema import fingerprint, to_parsing_canonical_form

from consumers.projection import event_index
from ledger.verify import build_full_tiles, verify_bundle
from ledger.verify.disclosures import disclosure_check
from producers.codec import Codec
from producers.events import event_key
from tests.unit.test_verify import (
    EVERY_KIND,
    KEY,
    Log,
    _hash,
    _leaf,
    _note,
    export,
    flip,
    make_log,
)


def _leaves(path: Path) -> Iterator[tuple[int, bytes]]:
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        index, length = struct.unpack_from(">QH", data, pos)
        yield index, data[pos + 10 : pos + 10 + length]
        pos += 10 + length


def _mth(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def _open_note(note: str, vkey: str) -> list[str] | None:
    """The checkpoint lines if a signature by ``vkey`` verifies, else None."""
    name, key_id, key_b64 = vkey.split("+", 2)
    public = base64.b64decode(key_b64)[1:]
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        who, _, b64 = line.removeprefix("\u2014 ").partition(" ")
        raw = base64.b64decode(b64)
        if who == name and raw[:4].hex() == key_id:
            try:
                nacl.signing.VerifyKey(public).verify(text.encode(), raw[4:])
            except nacl.exceptions.BadSignatureError:
                return None
            return text.splitlines()
    return None


def _split_leaf(leaf: bytes) -> tuple[str, int, int, bytes]:
    (t,) = struct.unpack_from(">H", leaf, 1)
    topic = leaf[3 : 3 + t].decode()
    partition, offset = struct.unpack_from(">IQ", leaf, 3 + t)
    pos = 3 + t + 4 + 8 + 8 + 1
    if leaf[pos] == 1:
        (k,) = struct.unpack_from(">H", leaf, pos + 1)
        pos += 3 + k
    else:
        pos += 1
    return topic, partition, offset, leaf[pos:]


def _row(name: str, e: dict[str, Any]) -> dict[str, Any]:
    """The doc's table: which index columns an event determines (None: not compared)."""
    kind = name.rsplit(".", 1)[1]
    who: dict[str, Any] = e["sender"] if kind == "CriticalResultRelay" else e["actor"]
    patient, study = e.get("patient") or {}, e.get("study") or {}
    row = {
        "event_id": str(e["event_id"]),
        "event_time": e["event_time"],
        "producer_id": e["producer_id"],
        "producer_seq": e["producer_seq"],
        "facility_id": e["facility"]["id"],
        "patient_id": patient.get("id"),
        "patient_issuer": patient.get("issuer"),
        "patient_state": patient.get("state"),
        "user_id": who["user_id"],
        "user_name": who["name"],
        "user_role": who["role"],
        "user_org": who["organization"],
        "study_uid": study.get("uid"),
        "accession": study.get("accession"),
    }
    by_kind = {
        "PhiAccessEvent": ("phi_access", e.get("dicom_event_id"), e.get("action")),
        "CriticalResultRelay": ("critical_result_relay", None, None),
        "AuditLogUsed": ("audit_log_used", "110101", "R"),
        "SecurityEvent": ("security_event", e.get("dicom_event_id"), e.get("action")),
    }
    row["kind"], row["dicom_event_id"], row["action"] = by_kind[kind]
    relay = kind == "CriticalResultRelay"
    row["outcome"] = None if relay else e.get("outcome")
    row["network_address"] = None if relay else e.get("network_address")
    row["purpose_of_use"] = (
        None if kind in ("CriticalResultRelay", "AuditLogUsed") else (e.get("purpose_of_use"))
    )
    if kind in ("AuditLogUsed", "SecurityEvent"):
        row["study_uid"] = row["accession"] = None
    ranges = (e.get("disclosed") or []) if kind == "AuditLogUsed" else []
    row["disclosed"] = sorted([d["log"], r["start"], r["end"]] for d in ranges for r in d["ranges"])
    listed = (e.get("disclosed") or []) if kind == "PhiAccessEvent" else []
    row["patients"] = [[p["issuer"], p["id"], p["state"], p["studies"]] for p in listed]
    return row


def independent_check(bundle: Path, vkey: str) -> list[str]:
    """Every problem found, as text; [] means the bundle checks out."""
    problems: list[str] = []
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format"] == "phi-ledger-export/v1"
    schemas = {}
    for s in json.loads((bundle / "schemas.json").read_text()):
        parsed = fastavro.parse_schema(json.loads(s["schema_json"]))
        fp = fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")
        if fp != s["fingerprint"]:
            problems.append(f"schema {s['full_name']} fingerprint")
            continue
        schemas[bytes.fromhex(fp)] = (s["full_name"], parsed)
    for log in manifest["logs"]:
        here = bundle / "logs" / str(log["log_id"])
        leaves = list(_leaves(here / "entries.bin"))
        if [i for i, _ in leaves] != list(range(len(leaves))):
            problems.append("leaf indexes are not 0..n-1")
        hashes = [hashlib.sha256(b"\x00" + leaf).digest() for _, leaf in leaves]
        for line in (here / "checkpoints.jsonl").read_text().splitlines():
            lines = _open_note(json.loads(line)["note"], vkey)
            if lines is None or lines[0] != log["origin"]:
                problems.append(f"checkpoint not signed for {log['origin']}: {line[:20]}")
                continue
            size, root = int(lines[1]), base64.b64decode(lines[2])
            if size > len(hashes) or _mth(hashes[:size]) != root:
                problems.append(f"checkpoint {size}: root")
        tiles = (here / "tiles.bin").read_bytes()
        for pos in range(0, len(tiles), 9 + 8192):
            level, index = struct.unpack_from(">BQ", tiles, pos)
            span = 256**level
            want = b"".join(
                _mth(hashes[(256 * index + j) * span : (256 * index + j + 1) * span])
                for j in range(256)
            )
            if tiles[pos + 9 : pos + 9 + 8192] != want:
                problems.append(f"tile {level}/{index}")
        rows = [json.loads(r) for r in (here / "index.jsonl").read_text().splitlines()]
        for (index, leaf), row in zip(leaves, rows, strict=True):
            value = _split_leaf(leaf)[3]
            name, parsed = schemas[value[2:10]]
            try:
                event = fastavro.schemaless_reader(io.BytesIO(value[10:]), parsed, None)
            except EOFError:  # a flipped byte can make the body undecodable
                problems.append(f"leaf {index}: undecodable")
                continue
            assert isinstance(event, dict)
            for column, want in _row(name, event).items():
                got = row.get(column, []) if column in ("disclosed", "patients") else row[column]
                if column == "event_time":
                    got = datetime.fromisoformat(got)
                if want is not None and got != want:
                    problems.append(f"leaf {index}: index column {column}")
    return problems


def _every_kind() -> Log:
    """A log holding every event kind the index knows (the doc's table, row by row)."""
    codec = Codec()
    events = [e.stamped(producer_id="t", producer_seq=i) for i, e in enumerate(EVERY_KIND)]
    leaves = [_leaf(i, codec.encode(e), event_key(e).encode()) for i, e in enumerate(events)]
    rows = [{**dataclasses.asdict(event_index(e)), "leaf_index": i} for i, e in enumerate(events)]
    return Log(
        leaves=leaves,
        entries=list(enumerate(leaves)),
        tiles=list(build_full_tiles(map(_hash, leaves))),
        checkpoints=[(len(leaves), _note(leaves, len(leaves)))],
        rows=rows,
        size=len(leaves),
    )


def test_an_independent_checker_from_the_doc_accepts_a_cleanexport(tmp_path: Path) -> None:
    assert independent_check(export(make_log(600, (100, 256, 512, 600)), tmp_path / "b"),
                             KEY.verifier.key) == []  # fmt: skip
    every = _every_kind()
    assert {r["kind"] for r in every.rows} == {
        "phi_access", "critical_result_relay", "audit_log_used", "security_event",
    }  # fmt: skip
    assert independent_check(export(every, tmp_path / "kinds"), KEY.verifier.key) == []
    assert any(r["disclosed"] for r in every.rows), "a read with disclosed ranges is covered"
    assert any(r["patients"] for r in every.rows), "a query with disclosed patients is covered"


def test_the_independent_checker_catches_what_ours_catches(tmp_path: Path) -> None:
    log = make_log(600, (100, 256, 512, 600))
    log.entries[300] = (300, flip(log.leaves[300], len(log.leaves[300]) - 3))
    log.rows[42]["user_id"] = "innocent.bystander"
    log.rows[43]["disclosed"] = [["test.ledger/phi-access/0", 0, 1]]  # a read pinned on
    log.rows[44]["patients"] = [["h", "MRN1", None, []]]  # a patient pinned on an access
    size, note = log.checkpoints[1]
    log.checkpoints[1] = (size, note.replace(note.splitlines()[2], "A" * 43 + "=", 1))
    problems = independent_check(export(log, tmp_path / "b"), KEY.verifier.key)
    assert "checkpoint 512: root" in problems
    assert "checkpoint 600: root" in problems
    assert "leaf 42: index column user_id" in problems
    assert "leaf 43: index column disclosed" in problems
    assert "leaf 44: index column patients" in problems
    [ours] = verify_bundle(tmp_path / "b", [KEY.verifier], checks=[disclosure_check])
    assert [f.leaf_index for f in ours.findings if f.kind == "disclosure_mismatch"] == [43]
    assert any(p.startswith("checkpoint not signed") for p in problems)  # the forged one
    assert "checkpoint 100: root" not in problems
