"""Interoperability: Go's reference verifiers accept what the Python ledger produces.

Every checkpoint, signature and proof here is produced by ``ledger.log.merkle``, ``ledger.log.note``
and ``ledger.log.checkpoint`` only; ``go/main.go`` checks them with ``golang.org/x/mod/sumdb/note``
(``note.Open``) and ``golang.org/x/mod/sumdb/tlog`` (``CheckRecord``, ``CheckTree``,
``RecordHash``).  The negative tests show that Go's acceptance is not vacuous: each tampered
input is rejected, and the untampered control in the same batch is accepted.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
from typing import Any

import pytest

from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, format_checkpoint, format_tlog_proof, sign_checkpoint
from ledger.log.note import Signer, generate_signer, parse_signer_key, sign_note
from ledger.log.types import RootHash
from tests.interop.go_verifier import (
    build_go_verifier,
    go_available,
    go_verify,
    run_go_verifier,
)

ORIGIN = "example.com/phi-audit-ledger"
SIZES = (1, 2, 3, 7, 8, 255, 256, 257, 1000)
MAX_SIZE = max(SIZES)


@pytest.fixture(scope="module", autouse=True)
def _go_verifier() -> None:
    if not go_available():
        pytest.fail(
            "Go is required for tests/interop (the CI machine has it): install the `go` "
            "toolchain and put it on PATH; these tests must not be skipped",
            pytrace=False,
        )
    build_go_verifier()


# --------------------------------------------------------------------------------------------
# Data, produced by the Python ledger only
# --------------------------------------------------------------------------------------------


def _leaf(i: int) -> bytes:
    return f"audit-event {i}: study 1.2.840.{i} opened".encode()


@functools.cache
def _leaf_hashes() -> tuple[bytes, ...]:
    return tuple(merkle.leaf_hash(_leaf(i)) for i in range(MAX_SIZE))


@functools.cache
def _root(size: int) -> RootHash:
    return merkle.root_from_leaf_hashes(_leaf_hashes()[:size])


@functools.cache
def _key(label: str, name: str = ORIGIN) -> tuple[Signer, str]:
    """A (signer, verifier-key string) pair, one per label for the whole module."""
    skey, vkey = generate_signer(name)
    return parse_signer_key(skey), vkey


def _checkpoint(size: int) -> Checkpoint:
    return Checkpoint(origin=ORIGIN, size=size, root_hash=_root(size))


def _signed(size: int, *labels: str) -> str:
    return sign_checkpoint(_checkpoint(size), [_key(label)[0] for label in labels or ("log",)])


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _flip_bit(raw: bytes, byte: int = 0, bit: int = 0) -> bytes:
    out = bytearray(raw)
    out[byte] ^= 1 << bit
    return bytes(out)


def _inclusion_item(note_index: int, index: int, size: int) -> dict[str, Any]:
    proof = merkle.inclusion_proof_from_leaves(index, _leaf_hashes()[:size])
    assert (proof.index, proof.size) == (index, size)
    return {
        "note_index": note_index,
        "leaf_b64": _b64(_leaf(index)),
        "index": index,
        "proof": [_b64(h) for h in proof.hashes],
    }


def _consistency_hashes(size1: int, size2: int) -> list[str]:
    proof = merkle.consistency_proof_from_leaves(size1, _leaf_hashes()[:size2])
    assert (proof.size1, proof.size2) == (size1, size2)
    return [_b64(h) for h in proof.hashes]


def _oks(results: list[dict[str, Any]]) -> list[bool]:
    return [r["ok"] for r in results]


def _explain(items: list[Any], results: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{item!r}: {r.get('error', 'ok')}" for item, r in zip(items, results, strict=True)
    )


# --------------------------------------------------------------------------------------------
# Go accepts what Python produces
# --------------------------------------------------------------------------------------------


def test_checkpoints_signed_by_one_key_are_accepted() -> None:
    sizes = (0, *SIZES)
    _, vkey = _key("log")
    result = go_verify(
        {"verifier_keys": [vkey], "checkpoints": [{"note": _signed(n)} for n in sizes]}
    )
    cps = result["checkpoints"]
    assert _oks(cps) == [True] * len(sizes), _explain(list(sizes), cps)
    for n, cp in zip(sizes, cps, strict=True):
        assert (cp["origin"], cp["size"], cp["root"]) == (ORIGIN, n, _b64(_root(n)))


def test_checkpoint_with_extension_lines_is_accepted() -> None:
    cp = Checkpoint(
        origin=ORIGIN, size=7, root_hash=_root(7), extensions=("timestamp 1732780000", "x y z")
    )
    signed = sign_checkpoint(cp, [_key("log")[0]])
    result = go_verify({"verifier_keys": [_key("log")[1]], "checkpoints": [{"note": signed}]})
    assert result["checkpoints"] == [
        {"ok": True, "origin": ORIGIN, "size": 7, "root": _b64(_root(7))}
    ]


@pytest.mark.parametrize(
    "trusted",
    [("old",), ("new",), ("old", "new"), ("new", "old")],
    ids=lambda t: "+".join(t),
)
def test_rotation_checkpoint_signed_by_two_keys_verifies_with_either_key(
    trusted: tuple[str, ...],
) -> None:
    notes = [_signed(n, "old", "new") for n in SIZES]
    assert all(n.count("\n\u2014 ") == 2 for n in notes)  # two signature lines
    result = go_verify(
        {
            "verifier_keys": [_key(label)[1] for label in trusted],
            "checkpoints": [{"note": n} for n in notes],
        }
    )
    cps = result["checkpoints"]
    assert _oks(cps) == [True] * len(SIZES), _explain(list(SIZES), cps)
    assert [cp["size"] for cp in cps] == list(SIZES)


def _inclusion_cases() -> list[tuple[int, int]]:
    cases: set[tuple[int, int]] = set()
    for size in SIZES:
        for index in (0, 1, size // 2, size - 2, size - 1):
            if 0 <= index < size:
                cases.add((index, size))
    cases |= {(127, 255), (128, 256), (254, 255), (255, 256), (256, 257), (511, 1000)}
    cases |= {(512, 1000), (767, 1000), (998, 1000), (5, 7), (6, 8)}
    return sorted(cases, key=lambda c: (c[1], c[0]))


def test_inclusion_proofs_are_accepted() -> None:
    cases = _inclusion_cases()
    note_of = {size: i for i, size in enumerate(SIZES)}
    result = go_verify(
        {
            "verifier_keys": [_key("log")[1]],
            "checkpoints": [{"note": _signed(n)} for n in SIZES],
            "inclusion": [_inclusion_item(note_of[size], index, size) for index, size in cases],
        }
    )
    assert _oks(result["checkpoints"]) == [True] * len(SIZES)
    assert _oks(result["inclusion"]) == [True] * len(cases), _explain(cases, result["inclusion"])


def test_consistency_proofs_are_accepted() -> None:
    pairs = list(itertools.combinations_with_replacement(SIZES, 2))  # includes size1 == size2
    note_of = {size: i for i, size in enumerate(SIZES)}
    result = go_verify(
        {
            "verifier_keys": [_key("log")[1]],
            "checkpoints": [{"note": _signed(n)} for n in SIZES],
            "consistency": [
                {"old": note_of[a], "new": note_of[b], "proof": _consistency_hashes(a, b)}
                for a, b in pairs
            ],
        }
    )
    assert _oks(result["checkpoints"]) == [True] * len(SIZES)
    assert _oks(result["consistency"]) == [True] * len(pairs), _explain(
        pairs, result["consistency"]
    )


@pytest.mark.parametrize(
    ("index", "size", "extra"),
    [(0, 1, None), (0, 2, None), (5, 7, b"ingest batch 42"), (300, 1000, None), (999, 1000, b"")],
)
def test_tlog_proof_is_accepted(index: int, size: int, extra: bytes | None) -> None:
    proof = merkle.inclusion_proof_from_leaves(index, _leaf_hashes()[:size])
    text = format_tlog_proof(index, proof.hashes, _signed(size, "old", "new"), extra=extra)
    result = go_verify(
        {
            "verifier_keys": [_key("new")[1]],
            "tlog_proofs": [{"text": text, "leaf_b64": _b64(_leaf(index))}],
        }
    )
    assert result["tlog_proofs"] == [
        {"ok": True, "origin": ORIGIN, "size": size, "index": index}
    ], text


# --------------------------------------------------------------------------------------------
# Go rejects tampered data (with an untampered control in the same batch)
# --------------------------------------------------------------------------------------------


def _tamper_body(note: str, line: int, column: int) -> str:
    """Flip the low bit of one byte of the checkpoint body, keeping the note well formed."""
    body_end = note.index("\n\n") + 1
    lines = note[:body_end].split("\n")
    target = lines[line]
    flipped = chr(ord(target[column]) ^ 1)
    lines[line] = target[:column] + flipped + target[column + 1 :]
    tampered = "\n".join(lines) + note[body_end:]
    assert tampered != note
    assert len(tampered) == len(note)
    return tampered


def test_checkpoint_with_a_flipped_body_byte_is_rejected() -> None:
    good = _signed(257)
    # origin, size ("257" -> "357"), root hash (first and last base64 character before "=").
    root_b64 = _b64(_root(257))
    tampered = [
        _tamper_body(good, 0, 0),
        _tamper_body(good, 1, 0),
        _tamper_body(good, 2, 0),
        _tamper_body(good, 2, len(root_b64) - 2),
    ]
    result = go_verify(
        {
            "verifier_keys": [_key("log")[1]],
            "checkpoints": [{"note": good}] + [{"note": t} for t in tampered],
        }
    )
    cps = result["checkpoints"]
    assert _oks(cps) == [True, False, False, False, False], _explain([good, *tampered], cps)
    for cp in cps[1:]:
        assert "invalid signature" in cp["error"], cp


def test_checkpoint_signed_with_an_unknown_key_is_rejected() -> None:
    result = go_verify(
        {
            "verifier_keys": [_key("log")[1]],
            "checkpoints": [
                {"note": _signed(8, "log")},
                {"note": _signed(8, "stranger")},
                {"note": _signed(8, "old", "new")},
            ],
        }
    )
    cps = result["checkpoints"]
    assert _oks(cps) == [True, False, False]
    for cp in cps[1:]:
        assert "no verifiable signatures" in cp["error"], cp


def test_checkpoint_signed_by_a_same_named_key_with_another_id_is_rejected() -> None:
    # Same key name as the trusted key, different key: Go must not fall back on the name.
    impostor, _ = _key("impostor")
    _, trusted_vkey = _key("log")
    assert impostor.name == ORIGIN
    note = sign_checkpoint(_checkpoint(3), [impostor])
    result = go_verify({"verifier_keys": [trusted_vkey], "checkpoints": [{"note": note}]})
    assert _oks(result["checkpoints"]) == [False]


def test_tampered_inclusion_proofs_are_rejected() -> None:
    size, index = 1000, 123
    good = _inclusion_item(0, index, size)
    hashes = [base64.b64decode(h) for h in good["proof"]]
    assert len(hashes) == 10
    flipped = [
        dict(
            good,
            proof=[
                _b64(_flip_bit(h, byte=i % 32, bit=i % 8)) if i == pos else _b64(h)
                for i, h in enumerate(hashes)
            ],
        )
        for pos in range(len(hashes))
    ]
    wrong_leaf = dict(good, leaf_b64=_b64(_leaf(index + 1)))
    wrong_index_up = dict(good, index=index + 1)
    wrong_index_down = dict(good, index=index - 1)
    # The right leaf hash at the wrong place: the proof of leaf 124 used for leaf 123.
    other_proof = dict(good, proof=_inclusion_item(0, index + 1, size)["proof"])
    items = [good, *flipped, wrong_leaf, wrong_index_up, wrong_index_down, other_proof]
    result = go_verify(
        {
            "verifier_keys": [_key("log")[1]],
            "checkpoints": [{"note": _signed(size)}],
            "inclusion": items,
        }
    )
    assert _oks(result["checkpoints"]) == [True]
    expected = [True] + [False] * (len(items) - 1)
    assert _oks(result["inclusion"]) == expected, _explain(items, result["inclusion"])


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (1, 2), (2, 3), (255, 256)])
def test_wrong_leaf_and_wrong_index_are_rejected_for_small_and_edge_trees(
    index: int, size: int
) -> None:
    good = _inclusion_item(0, index, size)
    other = (index + 1) % max(size, 2)
    items = [good, dict(good, leaf_b64=_b64(_leaf(other))), dict(good, index=other)]
    result = go_verify(
        {
            "verifier_keys": [_key("log")[1]],
            "checkpoints": [{"note": _signed(size)}],
            "inclusion": items,
        }
    )
    assert _oks(result["inclusion"]) == [True, False, False], _explain(items, result["inclusion"])


@pytest.mark.parametrize(("size1", "size2"), [(7, 257), (255, 1000), (3, 8), (1, 2)])
def test_consistency_proof_with_a_flipped_hash_is_rejected(size1: int, size2: int) -> None:
    good = _consistency_hashes(size1, size2)
    raw = [base64.b64decode(h) for h in good]
    assert raw, "this size pair needs a non-empty proof"
    flipped = [
        [
            _b64(_flip_bit(h, byte=31 - pos % 32, bit=7)) if i == pos else _b64(h)
            for i, h in enumerate(raw)
        ]
        for pos in range(len(raw))
    ]
    proofs = [good, *flipped]
    result = go_verify(
        {
            "verifier_keys": [_key("log")[1]],
            "checkpoints": [{"note": _signed(size1)}, {"note": _signed(size2)}],
            "consistency": [{"old": 0, "new": 1, "proof": p} for p in proofs],
        }
    )
    assert _oks(result["checkpoints"]) == [True, True]
    expected = [True] + [False] * len(flipped)
    assert _oks(result["consistency"]) == expected, _explain(proofs, result["consistency"])


def test_consistency_against_a_forked_checkpoint_is_rejected() -> None:
    # A validly signed size-8 checkpoint whose tree differs in leaf 2: the honest proof
    # from size 3 must not link it to the honest size-3 checkpoint.
    forked_hashes = list(_leaf_hashes()[:8])
    forked_hashes[2] = merkle.leaf_hash(b"rewritten history")
    forked = Checkpoint(
        origin=ORIGIN, size=8, root_hash=merkle.root_from_leaf_hashes(forked_hashes)
    )
    result = go_verify(
        {
            "verifier_keys": [_key("log")[1]],
            "checkpoints": [
                {"note": _signed(3)},
                {"note": _signed(8)},
                {"note": sign_checkpoint(forked, [_key("log")[0]])},
            ],
            "consistency": [
                {"old": 0, "new": 1, "proof": _consistency_hashes(3, 8)},
                {"old": 0, "new": 2, "proof": _consistency_hashes(3, 8)},
            ],
        }
    )
    assert _oks(result["checkpoints"]) == [True, True, True]
    assert _oks(result["consistency"]) == [True, False]


def test_tlog_proof_with_an_altered_checkpoint_is_rejected() -> None:
    size, index = 257, 200
    proof = merkle.inclusion_proof_from_leaves(index, _leaf_hashes()[:size])
    note = _signed(size)
    good = format_tlog_proof(index, proof.hashes, note)
    # 1. a byte of the checkpoint body flipped (its signature no longer verifies);
    body_flipped = format_tlog_proof(index, proof.hashes, _tamper_body(note, 2, 5))
    # 2. the checkpoint swapped for a validly signed one of another tree (the proof fails);
    other = format_tlog_proof(index, proof.hashes, _signed(256))
    # 3. the checkpoint re-signed by a key nobody trusts.
    unknown = format_tlog_proof(index, proof.hashes, _signed(size, "stranger"))
    texts = [good, body_flipped, other, unknown]
    leaf = _b64(_leaf(index))
    result = go_verify(
        {
            "verifier_keys": [_key("log")[1]],
            "tlog_proofs": [{"text": t, "leaf_b64": leaf} for t in texts],
        }
    )
    proofs = result["tlog_proofs"]
    assert _oks(proofs) == [True, False, False, False], _explain(texts, proofs)
    assert "invalid signature" in proofs[1]["error"]
    assert proofs[2]["size"] == 256
    assert "invalid transparency proof" in proofs[2]["error"]
    assert "no verifiable signatures" in proofs[3]["error"]


def test_tlog_proof_with_a_flipped_path_hash_or_wrong_leaf_is_rejected() -> None:
    size, index = 1000, 640
    proof = merkle.inclusion_proof_from_leaves(index, _leaf_hashes()[:size])
    note = _signed(size)
    good = format_tlog_proof(index, proof.hashes, note)
    bad_hash = format_tlog_proof(index, (_flip_bit(proof.hashes[0], 7, 3), *proof.hashes[1:]), note)
    bad_index = format_tlog_proof(index + 1, proof.hashes, note)
    items = [
        {"text": good, "leaf_b64": _b64(_leaf(index))},
        {"text": bad_hash, "leaf_b64": _b64(_leaf(index))},
        {"text": bad_index, "leaf_b64": _b64(_leaf(index))},
        {"text": good, "leaf_b64": _b64(_leaf(index + 1))},
    ]
    result = go_verify({"verifier_keys": [_key("log")[1]], "tlog_proofs": items})
    assert _oks(result["tlog_proofs"]) == [True, False, False, False]


# --------------------------------------------------------------------------------------------
# The harness itself
# --------------------------------------------------------------------------------------------


def test_go_verifier_checks_the_checkpoint_body_format_itself() -> None:
    # A note that Go's note.Open accepts but whose text is not a checkpoint body: the Go
    # harness must reject it, so the acceptance above really covers the checkpoint format.
    signer, vkey = _key("log")
    not_a_checkpoint = sign_note(f"{ORIGIN}\n0007\n{_b64(_root(7))}\n", [signer])
    ok_text = format_checkpoint(_checkpoint(7))
    assert not_a_checkpoint.startswith(ORIGIN)
    result = go_verify(
        {
            "verifier_keys": [vkey],
            "checkpoints": [{"note": sign_note(ok_text, [signer])}, {"note": not_a_checkpoint}],
        }
    )
    assert _oks(result["checkpoints"]) == [True, False]
    assert "size" in result["checkpoints"][1]["error"]


def test_unusable_input_exits_non_zero() -> None:
    bad = [
        "not json",
        json.dumps({"verifier_keys": ["not a key"]}),
        json.dumps({"verifier_keys": [_key("log")[1]], "unexpected": 1}),
        json.dumps(
            {
                "verifier_keys": [_key("log")[1]],
                "inclusion": [{"note_index": 3, "leaf_b64": "", "index": 0, "proof": []}],
            }
        ),
    ]
    for raw in bad:
        proc = run_go_verifier(raw)
        assert proc.returncode == 2, (raw, proc.stdout, proc.stderr)
        assert proc.stdout == ""
        assert "ledger-interop-verify:" in proc.stderr
