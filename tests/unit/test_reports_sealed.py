"""Reports sealed with their checkpoints: the as_of references, the canonical content and
its digest, and the CSV and HTML that carry them."""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import json
from typing import Any

import pytest

from ledger.audit.reports import (
    BAD_CHECKPOINT,
    MAX_AS_OF,
    CheckpointRef,
    ReportCheckpoint,
    build_disclosures,
    build_investigation,
    build_relay_report,
    canonical_json,
    checkpoint_facts,
    digest,
    digest_of,
    parse_as_of,
    parse_as_of_notes,
    refs_from_report,
    seal,
    sealed_csv,
    sealed_html,
    sealed_json,
    to_json,
)
from ledger.errors import MalformedInputError
from ledger.log.checkpoint import Checkpoint, format_checkpoint
from ledger.log.note import Signer, sign_note
from ledger.log.types import RootHash
from tests.unit.test_reports import NOW, ORIGIN, PATIENT, T0, access, export, pos, scope

SIGNER = Signer.from_seed("test.ledger", bytes(range(32)))
OTHER = Signer.from_seed("test.ledger", bytes(range(1, 33)))


def signed(origin: str = ORIGIN, size: int = 5, *, log_id: int = 1) -> ReportCheckpoint:
    root = hashlib.sha256(f"{origin}{size}".encode()).digest()
    note = sign_note(
        format_checkpoint(Checkpoint(origin=origin, size=size, root_hash=RootHash(root))),
        [SIGNER, OTHER],
    )
    hex_root, key_ids = checkpoint_facts(note)
    return ReportCheckpoint(
        log_id=log_id, origin=origin, size=size, note=note, root_hash=hex_root, key_ids=key_ids
    )


# --------------------------------------------------------------------------- as_of


def test_as_of_references_parse_sorted_by_origin_and_keep_colons_in_origins() -> None:
    refs = parse_as_of(["b.ledger/t/1:7", "a:b.ledger/t/0:12"])
    assert refs == (
        CheckpointRef(origin="a:b.ledger/t/0", size=12),
        CheckpointRef(origin="b.ledger/t/1", size=7),
    )
    assert [str(r) for r in refs] == ["a:b.ledger/t/0:12", "b.ledger/t/1:7"]
    assert parse_as_of([]) == ()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["ledger/t/0"], "is not <origin>:<size>"),
        (["ledger/t/0:"], "is not <origin>:<size>"),
        ([":5"], "is not <origin>:<size>"),
        (["ledger/t/0:05"], "is not <origin>:<size>"),
        (["ledger/t/0:-1"], "is not <origin>:<size>"),
        (["ledger/t/0:1e3"], "is not <origin>:<size>"),
        (["ledger/t/0:0"], "between 1 and"),
        ([f"ledger/t/0:{2**63}"], "between 1 and"),
        (["ledger t/0:5"], "not a log origin"),
        (["ledger+t/0:5"], "not a log origin"),
        (["x" * 300 + ":5"], "not a log origin"),
        (["l/t/0:5", "l/t/0:6"], "two checkpoints named"),
        ([f"l/t/{i}:1" for i in range(MAX_AS_OF + 1)], f"at most {MAX_AS_OF}"),
    ],
)
def test_bad_as_of_references_are_refused_with_the_checkpoint_code(
    values: list[str], message: str
) -> None:
    with pytest.raises(MalformedInputError, match=message) as info:
        parse_as_of(values)
    assert info.value.code == BAD_CHECKPOINT


def test_checkpoint_facts_read_the_root_and_every_signers_key_id() -> None:
    cp = signed()
    assert cp.root_hash == hashlib.sha256(f"{ORIGIN}5".encode()).hexdigest()
    assert cp.key_ids == (
        f"test.ledger+{SIGNER.key_id.hex()}",
        f"test.ledger+{OTHER.key_id.hex()}",
    )
    with pytest.raises(MalformedInputError):
        checkpoint_facts(f"{ORIGIN}\n5\n")  # no signature block


# --------------------------------------------------------------------------- canonical


def test_canonical_json_sorts_keys_drops_whitespace_and_keeps_unicode() -> None:
    value: Any = {"b": [1, 2.5, None, True], "a": {"z": "é", "y": "<"}}
    assert canonical_json(value) == '{"a":{"y":"<","z":"é"},"b":[1,2.5,null,true]}'.encode()
    with pytest.raises(ValueError, match="Out of range"):
        canonical_json({"x": float("nan")})


def test_the_digest_is_sha256_of_the_canonical_content_without_log_ids() -> None:
    cp = signed()
    report = build_investigation(scope(), [access(position=pos(1))], checkpoints=[cp])
    sealed = seal(report, (cp,))
    body = json.loads(sealed_json(sealed))
    assert sealed_json(sealed) == canonical_json(body)  # served in canonical form
    content = {k: v for k, v in body.items() if k != "digest"}

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "log_id"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    expected = "sha256:" + hashlib.sha256(canonical_json(strip(content))).hexdigest()
    assert body["digest"] == digest(sealed) == digest_of(body) == digest_of(content) == expected
    assert body["as_of_checkpoints"] == [
        {
            "log_id": 1,
            "origin": ORIGIN,
            "size": 5,
            "root_hash": cp.root_hash,
            "key_ids": list(cp.key_ids),
            "note": cp.note,
        }
    ]
    assert body["unreadable_periods"] == []  # every period was readable
    seal_keys = ("digest", "as_of_checkpoints", "unreadable_periods")
    assert {k: v for k, v in body.items() if k not in seal_keys} == to_json(report)


def test_the_digest_ignores_the_databases_log_numbering_but_nothing_else() -> None:
    cp = signed()
    row = access(position=pos(1))
    base = seal(build_investigation(scope(), [row], checkpoints=[cp]), (cp,))
    renumbered_cp = dataclasses.replace(cp, log_id=9)
    renumbered = seal(
        build_investigation(
            scope(),
            [dataclasses.replace(row, position=pos(1, log_id=9))],
            checkpoints=[renumbered_cp],
        ),
        (renumbered_cp,),
    )
    assert sealed_json(renumbered) != sealed_json(base)
    assert digest(renumbered) == digest(base)
    # Another checkpoint, another size, another event, another scope: another digest.
    bigger = signed(size=6)
    assert digest(seal(base.report, (bigger,))) != digest(base)
    assert digest(seal(base.report, ())) != digest(base)
    other_row = seal(build_investigation(scope(), [row, access()], checkpoints=[cp]), (cp,))
    assert digest(other_row) != digest(base)
    widened = build_investigation(scope(users=("rad001", "rad002")), [row], checkpoints=[cp])
    assert digest(seal(widened, (cp,))) != digest(base)


def test_sealing_is_deterministic_and_orders_checkpoints_by_origin() -> None:
    a, b = signed("z.ledger/t/0", log_id=1), signed("a.ledger/t/0", log_id=2)
    report = build_relay_report([], start=NOW - (NOW - T0), end=NOW, now=NOW)
    one, two = seal(report, (a, b)), seal(report, (b, a))
    assert [c.origin for c in one.as_of] == ["a.ledger/t/0", "z.ledger/t/0"]
    assert sealed_json(one) == sealed_json(two)
    assert sealed_csv(one) == sealed_csv(two)
    with pytest.raises(MalformedInputError, match="two checkpoints"):
        seal(report, (a, a))


# --------------------------------------------------------------------------- exports


def test_csv_ends_with_one_padded_row_per_checkpoint_and_the_digest() -> None:
    cps = (signed("a.ledger/t/0"), signed("b.ledger/t/0", size=9))
    sealed = seal(build_disclosures(PATIENT, [export()], now=NOW), cps)
    rows = list(csv.reader(io.StringIO(sealed_csv(sealed))))
    width = len(rows[0])
    assert all(len(r) == width for r in rows)
    assert rows[-3][:5] == ["#as_of_checkpoint", "a.ledger/t/0", "5", cps[0].root_hash,
                            ";".join(cps[0].key_ids)]  # fmt: skip
    assert rows[-2][:3] == ["#as_of_checkpoint", "b.ledger/t/0", "9"]
    assert rows[-1][:2] == ["#digest", digest(sealed)]
    assert rows[1][0] != "#as_of_checkpoint"  # the table itself comes first


def test_the_printable_accounting_names_its_checkpoints_and_digest_escaped() -> None:
    cp = signed("a.ledger/<b>/0")
    sealed = seal(build_disclosures(PATIENT, [export()], now=NOW), (cp,))
    page = sealed_html(sealed)
    assert page.endswith("</body>\n</html>\n")
    assert "a.ledger/&lt;b&gt;/0 at size 5" in page
    assert f"Content digest: {digest(sealed)}" in page
    assert "<b>/0" not in page


def test_checkpoints_given_as_notes_join_those_named_and_keep_their_notes() -> None:
    cp = signed("b.ledger/t/0", size=7)
    given = parse_as_of_notes(
        [base64.b64encode(cp.note.encode()).decode()], parse_as_of(["a.ledger/t/0:3"])
    )
    assert given == (
        CheckpointRef(origin="a.ledger/t/0", size=3),
        CheckpointRef(origin="b.ledger/t/0", size=7, note=cp.note),
    )
    body = json.loads(sealed_json(seal(build_relay_report([], start=T0, end=NOW, now=NOW), (cp,))))
    assert refs_from_report(body) == (CheckpointRef(origin="b.ledger/t/0", size=7, note=cp.note),)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["not base64!"], "base64 of a signed checkpoint note"),
        ([base64.b64encode(b"\xff\xfe").decode()], "base64 of a signed checkpoint note"),
        ([base64.b64encode(b"b.ledger/t/0\n7\n").decode()], "no signature block"),
        ([base64.b64encode(b"x\ny\nz\n\n- k abc\n").decode()], "not a signed checkpoint"),
        (["A" * 9000], "base64 of a signed checkpoint note"),
    ],
)
def test_bad_checkpoint_notes_are_refused(values: list[str], message: str) -> None:
    with pytest.raises(MalformedInputError, match=message) as info:
        parse_as_of_notes(values)
    assert info.value.code == BAD_CHECKPOINT


def test_a_note_for_a_log_already_named_and_a_report_without_checkpoints_are_refused() -> None:
    cp = signed("b.ledger/t/0", size=7)
    note = base64.b64encode(cp.note.encode()).decode()
    with pytest.raises(MalformedInputError, match="two checkpoints"):
        parse_as_of_notes([note], parse_as_of(["b.ledger/t/0:7"]))
    with pytest.raises(MalformedInputError, match="two checkpoints"):
        parse_as_of_notes([note, note])
    for body in ({}, {"as_of_checkpoints": []}, {"as_of_checkpoints": [{"origin": "x"}]}):
        with pytest.raises(MalformedInputError) as info:
            refs_from_report(body)
        assert info.value.code == BAD_CHECKPOINT
